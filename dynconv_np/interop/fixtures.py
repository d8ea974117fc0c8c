"""Golden fixtures for other implementations: ``python -m dynconv_np fixtures --out DIR``.

Writes one ``.npz`` per case and dtype (``CASES`` below, each in float64 and float32) holding
the configuration, the inputs, the parameters, the upstream gradient, every intermediate and
every gradient of ``stages.run_reference``, with the tolerance to grade each array by, plus
``index.json`` (every case, file, array, shape, role and tolerance) and ``README.md`` (the
format). The bytes are the same on every run: fixed seeds, and the zip is written here with a
fixed date (np.savez stamps the current time), uncompressed (a C reader such as cnpy reads the
members directly), members in sorted order.

Reference values: the float64 files are computed in float64; the float32 files hold float32
inputs and parameters and the float64 result of exactly those values, rounded to float32.
Tolerance per array: atol = max over its elements of 2 bound + eps |value|
(``stages.error_bounds`` with the file's dtype's eps): what a correct implementation in that
dtype may differ by. Grade with ``python -m dynconv_np check-fixtures DIR RESULTS``.
"""
import argparse
import io
import json
import os
import re
import sys
import zipfile

import numpy as np

from .stages import FORWARD, error_bounds, run_reference, tolerances

FORMAT_VERSION = 1
DATE_TIME = (1980, 1, 1, 0, 0, 0)
DTYPES = ("float64", "float32")

_BASE = dict(n=2, c_in=4, c_out=6, size=(7, 7), kernel=(3, 3), stride=(1, 1), padding=(1, 1),
             dilation=(1, 1), groups=1, num_kernels=4, hidden=4, tau=30.0, bias=True,
             attention_bias=True)
CASES = {
    "dense": {},
    "grouped": dict(c_in=6, c_out=4, groups=2),
    "depthwise": dict(c_in=4, c_out=4, groups=4),
    "depthwise_multiplier": dict(c_in=3, c_out=6, groups=3),
    "stride_padding_dilation": dict(size=(9, 8), kernel=(3, 2), stride=(2, 1), padding=(2, 0),
                                    dilation=(2, 3)),
    "batch_1": dict(n=1),
    "no_bias": dict(bias=False),
    "no_attention_bias": dict(attention_bias=False, hidden=2),
    "one_kernel": dict(num_kernels=1),
    "tau_1": dict(tau=1.0),
    "tau_0.25": dict(tau=0.25),
    "pointwise": dict(kernel=(1, 1), padding=(0, 0), n=3, c_in=8, c_out=5),
}
ROLES = {"x": "input", "dy": "upstream gradient"}


def case_config(name):
    """The full configuration of case ``name`` (``CASES`` over the defaults)."""
    config = dict(_BASE)
    config.update(CASES[name])
    return {key: list(value) if isinstance(value, tuple) else value
            for key, value in config.items()}


def case_problem(name, config):
    """x, params, dy of a case, in float64, from a seed fixed by the case's name."""
    seed = sum((i + 1) * ord(c) for i, c in enumerate(name))
    rng = np.random.default_rng(seed)
    c = config
    kh, kw = c["kernel"]
    cg = c["c_in"] // c["groups"]
    k, hidden = c["num_kernels"], c["hidden"]
    x = rng.standard_normal((c["n"], c["c_in"], *c["size"])) + 0.5
    params = {"weight": rng.standard_normal((k, c["c_out"], cg, kh, kw)) / np.sqrt(cg * kh * kw)}
    if c["bias"]:
        params["bias"] = rng.standard_normal((k, c["c_out"])) * 0.5
    params["fc1_weight"] = rng.standard_normal((hidden, c["c_in"])) / np.sqrt(c["c_in"])
    if c["attention_bias"]:
        params["fc1_bias"] = rng.standard_normal(hidden) * 0.5 + 0.5
    # every attention unit live for some sample (else its gradients are all zero)
    pre = x.mean(axis=(2, 3)) @ params["fc1_weight"].T + params.get("fc1_bias", 0)
    dead = (pre <= 0).all(axis=0)
    params["fc1_weight"][dead] *= -1
    if "fc1_bias" in params:
        params["fc1_bias"][dead] *= -1
    # logits of a few units so that pi is far from uniform at tau = 1
    params["fc2_weight"] = rng.standard_normal((k, hidden)) * 2.0
    params["fc2_bias"] = rng.standard_normal(k)
    h_out = (c["size"][0] + 2 * c["padding"][0] - c["dilation"][0] * (kh - 1) - 1) \
        // c["stride"][0] + 1
    w_out = (c["size"][1] + 2 * c["padding"][1] - c["dilation"][1] * (kw - 1) - 1) \
        // c["stride"][1] + 1
    dy = rng.standard_normal((c["n"], c["c_out"], h_out, w_out))
    return x, params, dy


def _role(name):
    if name in ROLES:
        return ROLES[name]
    if name in ("weight", "bias", "fc1_weight", "fc1_bias", "fc2_weight", "fc2_bias"):
        return "parameter"
    return "intermediate" if name in FORWARD else "gradient"


def build_case(name, dtype):
    """{array name: array} and metadata {"config", "tolerance", "roles"} of one fixture."""
    config = case_config(name)
    x, params, dy = case_problem(name, config)
    dtype = np.dtype(dtype)
    # the file's inputs are exactly representable in its dtype; the reference is float64
    x, dy = x.astype(dtype).astype(np.float64), dy.astype(dtype).astype(np.float64)
    params = {k: v.astype(dtype).astype(np.float64) for k, v in params.items()}
    geometry = (config["stride"], config["padding"], config["dilation"], config["groups"])
    values = run_reference(x, params, config["tau"], geometry, dy)
    eps = float(np.finfo(dtype).eps)
    bounds = error_bounds(x, params, config["tau"], geometry, values, dy, eps)
    arrays = {"x": x, "dy": dy, **params, **values}
    tolerance = {key: float(f"{float(tol.max()):.3e}")
                 for key, tol in tolerances(bounds, values, eps, floor=0.0).items()}
    arrays = {key: np.ascontiguousarray(value.astype(dtype)) for key, value in arrays.items()}
    meta = {"case": name, "dtype": dtype.name, "config": config, "tolerance": tolerance,
            "roles": {key: _role(key) for key in arrays}, "format_version": FORMAT_VERSION}
    return arrays, meta


def write_npz(path, arrays):
    """np.savez's format, byte-stable: sorted members, fixed date, stored (uncompressed)."""
    with open(path, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as archive:
        for key in sorted(arrays):
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.asarray(arrays[key]), version=(1, 0),
                                      allow_pickle=False)
            info = zipfile.ZipInfo(key + ".npy", date_time=DATE_TIME)
            info.compress_type = zipfile.ZIP_STORED
            info.create_system = 3
            info.external_attr = 0o644 << 16
            archive.writestr(info, buffer.getvalue())


def write_fixtures(out, cases=None):
    """Write the fixture set into directory ``out`` -> the index (also ``out/index.json``)."""
    os.makedirs(out, exist_ok=True)
    chosen = list(CASES) if cases is None else list(cases)
    unknown = [name for name in chosen if name not in CASES]
    if unknown:
        raise ValueError(f"unknown fixture cases {unknown}; known: {list(CASES)}")
    index = {"format_version": FORMAT_VERSION, "generator": "python -m dynconv_np fixtures",
             "cases": []}
    for name in chosen:
        for dtype in DTYPES:
            arrays, meta = build_case(name, dtype)
            arrays["meta"] = np.array(json.dumps(meta, sort_keys=True))
            file = f"{name}.{dtype}.npz"
            write_npz(os.path.join(out, file), arrays)
            index["cases"].append({
                "name": f"{name}.{dtype}", "file": file, "dtype": dtype,
                "config": meta["config"],
                "arrays": {key: {"shape": list(value.shape), "role": meta["roles"][key],
                                 **({"atol": meta["tolerance"][key]}
                                    if key in meta["tolerance"] else {})}
                           for key, value in sorted(arrays.items()) if key != "meta"}})
    text = json.dumps(index, indent=1, sort_keys=True)
    # lists of numbers (shapes, pairs) on one line
    text = re.sub(r"\[\s+([-0-9.e, \n]*?)\s+\]",
                  lambda m: "[" + " ".join(m.group(1).split()) + "]", text)
    with open(os.path.join(out, "index.json"), "w", encoding="utf-8", newline="\n") as f:
        f.write(text + "\n")
    with open(os.path.join(out, "README.md"), "w", encoding="utf-8", newline="\n") as f:
        f.write(README)
    return index


README = """\
# Dynamic convolution golden fixtures

Written by `python -m dynconv_np fixtures --out DIR` (dynconv_np, the reference implementation
of Dynamic Convolution, Chen et al. CVPR 2020). The same command writes the same bytes.

## What is computed

For x (N, C_in, H, W), K kernels `weight` (K, C_out, C_in/groups, kh, kw), `bias` (K, C_out):

    pooled = mean_{h,w} x                                   (N, C_in)
    hidden = relu(pooled fc1_weight^T + fc1_bias)           (N, hidden)   fc1_bias may be absent
    logits = hidden fc2_weight^T + fc2_bias                 (N, K)
    pi     = softmax(logits / tau) over K                   (N, K)
    w_n    = sum_k pi[n, k] weight[k]                       (N, C_out, C_in/groups, kh, kw)
    b_n    = sum_k pi[n, k] bias[k]                         (N, C_out)    absent without bias
    y[n]   = conv2d(x[n], w_n[n], b_n[n]; stride, padding, dilation, groups)
             (cross-correlation, zero padding, PyTorch's conv2d)

and the backward pass for the upstream gradient `dy` (same shape as y): `dw_n`, `db_n` (per
sample), `dweight`, `dbias`, `dpi`, `dlogits`, `dfc2_weight`, `dfc2_bias`, `dpooled`,
`dfc1_weight`, `dfc1_bias`, and `dx` (convolution path plus the pooling path).

## Files

* `index.json`: every fixture: `name`, `file`, `dtype`, `config` (n, c_in, c_out, size [H, W],
  kernel [kh, kw], stride, padding, dilation [pairs], groups, num_kernels K, hidden, tau,
  bias, attention_bias) and, per array, `shape`, `role` (input, parameter, upstream gradient,
  intermediate, gradient) and, for intermediates and gradients, `atol`.
* `CASE.DTYPE.npz`: a NumPy .npz (a zip of .npy files, uncompressed, so that readers such as
  cnpy can map them) with the arrays named above, in DTYPE (float64 or float32), and `meta`,
  a 0-d string array holding the same configuration and tolerances as JSON
  (`json.loads(str(np.load(f)["meta"]))`; no pickles anywhere).

float64 fixtures are computed in float64. float32 fixtures hold float32 inputs and parameters
and the float64 result for exactly those values, rounded to float32.

## Grading

Pass an array when max |result - expected| <= atol, elementwise. atol comes from forward
error analysis of each stage in the fixture's dtype (a sum of m terms carries at most
m u sum|terms| with u = eps/2, errors from earlier stages propagated through |coefficients|,
twice that for two independent implementations): a correct implementation meets it, whatever
order it sums in. Put your outputs in a directory as `CASE.DTYPE.npz` with any of the
intermediate or gradient names above, and run

    python -m dynconv_np check-fixtures DIR RESULTS

which prints pass/fail per array and exits 1 on any failure.

## Reading one with plain NumPy

    import json, numpy as np
    f = np.load("dense.float64.npz")
    meta = json.loads(str(f["meta"]))
    x, w, tol = f["x"], f["weight"], meta["tolerance"]["y"]
"""


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m dynconv_np fixtures",
                                     description="Write the golden fixture set (see its README).")
    parser.add_argument("--out", required=True, help="directory to write into")
    parser.add_argument("--cases", default=None,
                        help=f"comma-separated subset of {','.join(CASES)}")
    args = parser.parse_args(argv)
    cases = args.cases.split(",") if args.cases else None
    index = write_fixtures(args.out, cases)
    size = sum(os.path.getsize(os.path.join(args.out, c["file"])) for c in index["cases"])
    print(f"wrote {len(index['cases'])} fixtures ({size / 1024:.0f} KiB), index.json and "
          f"README.md to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
