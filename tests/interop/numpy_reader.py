"""A port's first test, with nothing but NumPy: read golden fixtures and reproduce y.

    python numpy_reader.py FIXTURE_DIR [CASE.DTYPE ...]

Reads index.json and each fixture's .npz, recomputes pooled -> logits -> pi -> w_n -> y from
the stored inputs and parameters in the fixture's dtype with plain NumPy (a direct loop over
kernel taps for the convolution), and checks each against the stored array within the stored
tolerance. Prints one line per fixture and exits 1 on any mismatch. It imports nothing from
dynconv_np (it asserts so at the end): it stands for an implementation in another language.
"""
import json
import os
import sys

import numpy as np


def conv2d(x, w, b, stride, padding, dilation, groups):
    n, c_in, height, width = x.shape
    c_out, cg, kh, kw = w.shape[1:]
    h_out = (height + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    w_out = (width + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    xp = np.pad(x, ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2))
    y = np.zeros((n, c_out, h_out, w_out), dtype=x.dtype)
    cog = c_out // groups
    for o in range(c_out):
        g = o // cog
        for i in range(kh):
            for j in range(kw):
                rows = slice(i * dilation[0], i * dilation[0] + stride[0] * (h_out - 1) + 1,
                             stride[0])
                cols = slice(j * dilation[1], j * dilation[1] + stride[1] * (w_out - 1) + 1,
                             stride[1])
                patch = xp[:, g * cg:(g + 1) * cg, rows, cols]          # (n, cg, h_out, w_out)
                y[:, o] += np.einsum("nc,nchw->nhw", w[:, o, :, i, j], patch)
    if b is not None:
        y += b[:, :, None, None]
    return y


def reproduce(f, config):
    tau = np.asarray(config["tau"], dtype=f["x"].dtype)
    x = f["x"]
    pooled = x.mean(axis=(2, 3))
    pre = pooled @ f["fc1_weight"].T + (f["fc1_bias"] if "fc1_bias" in f.files else 0)
    logits = np.maximum(pre, 0) @ f["fc2_weight"].T + f["fc2_bias"]
    s = (logits - logits.max(axis=1, keepdims=True)) / tau
    pi = np.exp(s) / np.exp(s).sum(axis=1, keepdims=True)
    k = pi.shape[1]
    w_n = (pi @ f["weight"].reshape(k, -1)).reshape((len(x),) + f["weight"].shape[1:])
    b_n = pi @ f["bias"] if "bias" in f.files else None
    y = conv2d(x, w_n, b_n, config["stride"], config["padding"], config["dilation"],
               config["groups"])
    return {"pooled": pooled, "logits": logits, "pi": pi, "w_n": w_n, "y": y}


def main(argv):
    directory, chosen = argv[0], set(argv[1:])
    with open(os.path.join(directory, "index.json")) as fh:
        index = json.load(fh)
    failures = 0
    for case in index["cases"]:
        if chosen and case["name"] not in chosen:
            continue
        with np.load(os.path.join(directory, case["file"]), allow_pickle=False) as f:
            meta = json.loads(str(f["meta"]))
            ours = reproduce(f, meta["config"])
            worst = []
            for name, value in ours.items():
                assert value.dtype == f[name].dtype, (name, value.dtype)
                err = float(np.abs(value.astype(np.float64) - f[name]).max())
                atol = meta["tolerance"][name]
                assert atol == case["arrays"][name]["atol"]
                worst.append((err / atol, name, err, atol))
            ratio, name, err, atol = max(worst)
            status = "ok" if ratio <= 1 else "MISMATCH"
            failures += ratio > 1
            print(f"{case['name']}: {status} (worst {name}: {err:.2e} <= atol {atol:.2e})")
    assert not any(m == "dynconv_np" or m.startswith("dynconv_np.") for m in sys.modules)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
