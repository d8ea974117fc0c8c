"""``python -m dynconv_np warmup``: compile every Numba kernel ahead of first use.

Numba compiles each kernel the first time it runs for a dtype and keeps the machine code in its
disk cache; this command runs every path of the static and the dynamic convolution once on tiny
inputs (dense, grouped and depthwise; with and without bias; forward and backward; aggregation,
pooling and the attention branch) on the Numba backends, so that later processes only load it
(e.g. for a classroom, before a lesson).
"""
import argparse
import sys
import time

import numpy as np

from .nn import Conv2d, DynamicConv2d

DTYPES = {"float32": np.float32, "float64": np.float64}


def warmup(backends=("numba", "loops"), dtypes=("float32", "float64"), out=None):
    """Run every kernel path of ``backends`` once per dtype; print the time each took."""
    out = sys.stdout if out is None else out
    for backend in backends:
        for name in dtypes:
            dtype, start = DTYPES[name], time.perf_counter()
            rng = np.random.default_rng(0)
            for groups, bias in ((1, True), (2, False), (4, True), (4, False)):
                for layer in (DynamicConv2d(4, 8, 3, padding=1, groups=groups, bias=bias,
                                            backend=backend, dtype=dtype, rng=0),
                              Conv2d(4, 8, 3, padding=1, groups=groups, bias=bias,
                                     backend=backend, dtype=dtype, rng=0)):
                    x = rng.standard_normal((2, 4, 5, 5)).astype(dtype)
                    layer.backward(np.ones_like(layer(x)))
            print(f"{backend:6} {name}: ready in {time.perf_counter() - start:.1f} s", file=out,
                  flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m dynconv_np warmup", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", nargs="+", default=["numba", "loops"],
                        choices=["numba", "loops"], help="default: %(default)s")
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"],
                        choices=sorted(DTYPES), help="default: %(default)s")
    args = parser.parse_args(argv)
    warmup(args.backends, args.dtypes)
    return 0
