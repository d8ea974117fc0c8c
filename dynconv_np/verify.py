"""``python -m dynconv_np verify``: gradient-check every op on every available backend.

For each op and backend, ``gradcheck`` (central differences, float64, random upstream gradient)
compares the analytical gradients of every input with numerical ones on a few configurations
(dense, strided/dilated/grouped, depthwise with a channel multiplier); a second column compares
the backend's forward output with the NumPy reference. Each backend's rows end with the dynamic
convolution family's layers (CondConv2d, ODConv2d, DCDConv2d and FDYConv2d, train and eval
modes: ``verify_family``). Prints one table and exits non-zero if any row fails.
"""
import argparse
import itertools
import os
import time

import numpy as np

from .backends import available_backends
from .functional import (aggregate_kernels_backward, aggregate_kernels_forward,
                         attention_backward, attention_forward, conv2d_backward, conv2d_forward,
                         per_sample_conv2d_backward, per_sample_conv2d_forward, softmax_backward,
                         softmax_forward)
from .gradcheck import gradcheck
from .nn import DynamicConv2d, DynamicLinear
from .verify_family import family_rows

# (name, C_in, C_out, kernel, stride, padding, dilation, groups, H, W)
CONV_CONFIGS = [
    ("dense 3x3 p1", 3, 4, (3, 3), 1, 1, 1, 1, 5, 5),
    ("grouped s2 d2 p(1,2)", 4, 6, (3, 2), 2, (1, 2), 2, 2, 7, 6),
    ("depthwise x2 3x1", 3, 6, (3, 1), (1, 2), 1, 1, 3, 5, 4),
]


def _conv_case(config, rng, per_sample, bias=True):
    _, c_in, c_out, kernel, stride, padding, dilation, groups, h, w = config
    n = 2
    lead = (n,) if per_sample else ()
    inputs = {"x": rng.standard_normal((n, c_in, h, w)),
              "weight": rng.standard_normal(lead + (c_out, c_in // groups) + kernel)}
    if bias:
        inputs["bias"] = rng.standard_normal(lead + (c_out,))
    geometry = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    return inputs, geometry


def _named(backward_fn, names):
    def backward(dout, cache):
        return dict(zip(names, backward_fn(dout, cache)))
    return backward


def _rows_for_backend(backend, rng):
    """Yield (op, config, report, forward difference vs numpy) for one backend."""
    for per_sample, op in ((True, "per-sample conv2d"), (False, "conv2d (shared kernel)")):
        forward_fn, backward_fn = ((per_sample_conv2d_forward, per_sample_conv2d_backward)
                                   if per_sample else (conv2d_forward, conv2d_backward))
        for config in CONV_CONFIGS:
            inputs, geometry = _conv_case(config, rng, per_sample)
            report = gradcheck(lambda **a: forward_fn(**a, **geometry, backend=backend), inputs,
                               backward=_named(backward_fn, ("x", "weight", "bias")),
                               raise_exception=False)
            mine = forward_fn(**inputs, **geometry, backend=backend)[0]
            judge = forward_fn(**inputs, **geometry, backend="numpy")[0]
            yield op, config[0], report, _max_difference(mine, judge)

    inputs = {"pi": rng.random((3, 4)), "weight": rng.standard_normal((4, 5, 2, 3, 3)),
              "bias": rng.standard_normal((4, 5))}

    def aggregate(pi, weight, bias):
        (w_n, b_n), cache = aggregate_kernels_forward(pi, weight, bias, backend)
        return np.concatenate([_host(w_n).reshape(3, -1), _host(b_n)], axis=1), cache

    def aggregate_backward(dout, cache):
        return aggregate_kernels_backward(dout[:, :90].reshape(3, 5, 2, 3, 3), dout[:, 90:],
                                          cache)

    report = gradcheck(aggregate, inputs, backward=_named(aggregate_backward,
                                                          ("pi", "weight", "bias")),
                       raise_exception=False)
    yield "kernel aggregation", "K=4, 5x2x3x3", report, _max_difference(
        aggregate(**inputs)[0], np.concatenate(
            [x.reshape(3, -1) for x in aggregate_kernels_forward(**inputs)[0]], axis=1))

    for config in CONV_CONFIGS:
        _, c_in, c_out, kernel, stride, padding, dilation, groups, h, w = config
        make = lambda b: DynamicConv2d(c_in, c_out, kernel, stride, padding, dilation, groups,  # noqa: E731
                                       num_kernels=3, temperature=0.7, backend=b,
                                       dtype=np.float64, rng=1)
        layer = make(backend)
        layer.params["fc2_weight"] *= 5  # sharpen the attention so its gradient is not tiny
        x = rng.standard_normal((2, c_in, h, w))
        report = gradcheck(layer, x, raise_exception=False)
        judge = make("numpy")
        judge.params["fc2_weight"] *= 5
        yield "DynamicConv2d layer", config[0], report, _max_difference(layer(x), judge(x))


def _host_rows(rng):
    """Ops that always run on the host (the attention branch is tiny)."""
    z = rng.standard_normal((3, 5)) * 3
    for tau in (0.5, 30.0):
        yield "softmax / tau", f"tau={tau}", gradcheck(
            lambda z: softmax_forward(z, tau), {"z": z}, backward=softmax_backward,
            raise_exception=False), None
    names = ("pooled", "fc1_weight", "fc1_bias", "fc2_weight", "fc2_bias")
    shapes = ((3, 8), (4, 8), (4,), (4, 4), (4,))
    inputs = {name: rng.standard_normal(shape) for name, shape in zip(names, shapes)}

    def attention_backward_named(dpi, cache):
        dpooled, grads = attention_backward(dpi, cache)
        return {"pooled": dpooled, **grads}

    yield "attention branch", "C=8 hidden=4 K=4", gradcheck(
        lambda **p: attention_forward(*(p[n] for n in names), 2.0), inputs,
        backward=attention_backward_named, raise_exception=False), None
    layer = DynamicLinear(6, 5, num_kernels=4, temperature=1.0, dtype=np.float64, rng=2)
    yield "DynamicLinear layer", "6 -> 5, K=4", gradcheck(
        layer, rng.standard_normal((3, 6)), raise_exception=False), None


def _host(a):
    return a if isinstance(a, np.ndarray) else a.copy_to_host()


def _max_difference(a, b):
    return float(np.max(np.abs(_host(a) - _host(b))))


def _default_backends():
    """The host backends, plus cuda when a real GPU is usable (the simulator runs one Python
    thread per CUDA thread: ask for it explicitly with --backends cuda)."""
    backends = ["numpy", "loops", "numba"]
    try:
        from numba import cuda
        if cuda.is_available() and not getattr(cuda, "simulator_enabled", False) \
                and os.environ.get("NUMBA_ENABLE_CUDASIM", "0") == "0":
            backends.append("cuda")
        else:
            print("cuda backend: no GPU (or only the simulator); pass --backends cuda to "
                  "include it")
    except ImportError:
        print("cuda backend: numba-cuda is not installed (pip install dynconv_np[cuda])")
    return backends


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m dynconv_np verify", description=__doc__)
    parser.add_argument("--backends", nargs="+", default=None, choices=available_backends(),
                        help="backends to check (default: numpy, loops, numba, and cuda when "
                             "usable)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    backends = args.backends or _default_backends()
    rng = np.random.default_rng(args.seed)
    header = (f"{'op':<24}{'backend':<9}{'configuration':<22}{'max abs err':>12}"
              f"{'max rel err':>12}{'|y - y_numpy|':>15}  result")
    print("Gradient check: central differences (eps=1e-6), float64, random upstream gradient;\n"
          "an element passes when |num - ana| <= 1e-7 + 1e-5 |num|.\n")
    print(header)
    print("-" * len(header))
    failures, count, start = 0, 0, time.perf_counter()
    rows = itertools.chain((("host", row) for row in _host_rows(rng)),
                           ((b, row) for b in backends for row in itertools.chain(
                               _rows_for_backend(b, rng), family_rows(b, rng))))
    for backend, (op, config, report, difference) in rows:  # printed as each row finishes
        failures += not report.passed
        count += 1
        diff = "-" if difference is None else f"{difference:.2e}"
        print(f"{op:<24}{backend:<9}{config:<22}{report.max_abs_error():>12.2e}"
              f"{max(r.max_rel_error for r in report.results):>12.2e}{diff:>15}  "
              f"{'ok' if report.passed else 'FAILED'}", flush=True)
        if not report.passed:
            print(report)
    print(f"\n{count - failures} passed, {failures} failed "
          f"({time.perf_counter() - start:.1f} s, backends: {', '.join(backends)})")
    return 1 if failures else 0
