"""Benchmarks: DynamicConv2d on our backends against the same layer in PyTorch.

    python -m dynconv_np bench [--section cpu|gpu|all] [--tiny] [--repeats R] [--rounds K]
                               [--backends numba,numpy]
    python -m dynconv_np bench --networks [--tiny] [--repeats R] [--rounds K] [--backends ...]
    NUMBA_ENABLE_CUDASIM=1 python -m dynconv_np bench --section gpu --tiny   # no GPU needed

The layer suite (``layers.py``): five float32 DynamicConv2d shapes L1-L5 (K = 4, tau = 1,
bias on), built once as our layer and once as its PyTorch twin with the same parameters
(the grouped-convolution trick; its forward runs under no_grad).

CPU section (``cpu.py``), per layer and library (each backend of ``--backends``, then torch):
median and min time of the whole layer's forward and of forward + backward (dx and every
parameter gradient); GFLOP/s = 2 * conv multiply-adds / median time (forward + backward
counts three convolutions' worth: y, dx, dW) and its share of this machine's float32
matrix-multiply peak (NumPy's BLAS, all cores, measured in the same run); ratios of the first
backend's medians and minima to PyTorch's (and of its medians to the other backends'). Each
library is timed in its own phase, the phases repeat in ``--rounds`` rounds (``timing.py``),
and the hypervisor's steal time during the rounds and the load average are printed; the first
call of each layer (JIT compile or cache load, first touch of memory) is reported apart.
Then: the share of the forward spent in attention + aggregation (L1, L4: the layer's own
``_dynamic_kernels`` call, alternating with whole forwards), the peak memory of
forward + backward on L4 (NumPy allocations, tracemalloc) against the bytes of x, y, the
per-sample kernels and their gradients, the import time, and the time a new process needs to
its first result with a cold and with a warm Numba cache (not with ``--tiny``).

GPU section (``gpu.py``): the cuda backend's forward kernels alone (naive and tiled), the
whole layer after ``to_device()``, and PyTorch on the GPU, timed with CUDA events.

Network suite (``networks.py``, ``--networks``, instead of the layer suite; CPU only): a training
step (forward, cross-entropy, backward, SGD update) and an eval-mode inference of whole DY
networks (the demo's digits CNN, DY-ResNet-10 x0.25 and DY-MobileNetV2 x0.35 on 32 x 32
images, DY-MobileNetV3-Small inference at 224 x 224) against the same networks in PyTorch
(translated module by module with the same parameters, checked equal in float64 first, timed
with oneDNN on and off), medians and minima in alternating rounds, and the peak memory of a
training step.

torch is optional (its rows and columns are left out without it), and so is numba-cuda
(the GPU section then says it is unavailable). ``--tiny`` runs scaled-down shapes in seconds.
Column by column, and numbers measured on this project's machines: ``dynconv_np/bench/README.md``
in the source tree.
"""
import argparse

from ..backends import available_backends

SECTIONS = ("cpu", "gpu", "all")
DEFAULT_ROUNDS = 5
CPU_BACKENDS = tuple(name for name in available_backends() if name != "cuda")


def _backend_list(text):
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in CPU_BACKENDS]
    if not names or unknown or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(
            f"expected distinct names from {', '.join(CPU_BACKENDS)}, separated by commas; "
            f"received {text!r}")
    return names


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m dynconv_np bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--section", choices=SECTIONS, default="cpu")
    parser.add_argument("--networks", action="store_true",
                        help="time whole networks (training step, inference) on the CPU "
                             "instead of the layer suite")
    parser.add_argument("--tiny", action="store_true", help="small shapes, a quick smoke run")
    parser.add_argument("--repeats", type=int, default=30, help="timed calls per measurement")
    parser.add_argument("--rounds", type=int, default=None,
                        help="rounds of one timing phase per library, the repeats split over "
                             f"them (CPU section; default: {DEFAULT_ROUNDS}, or --repeats "
                             "when that is fewer)")
    parser.add_argument("--backends", type=_backend_list, default=("numba", "numpy"),
                        metavar="NAME[,NAME...]",
                        help="CPU backends to time, the first one against the others and "
                             f"torch (default: numba,numpy; from {', '.join(CPU_BACKENDS)})")
    args = parser.parse_args(argv)
    if args.networks and args.section != "cpu":
        parser.error(f"--networks runs on the CPU only; received --section {args.section}")
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1; received {args.repeats}")
    if args.rounds is None:
        args.rounds = min(DEFAULT_ROUNDS, args.repeats)
    if not 1 <= args.rounds <= args.repeats:
        parser.error(f"--rounds must be between 1 and --repeats ({args.repeats}); received "
                     f"{args.rounds}")
    return args


def main(argv=None):
    """The ``bench`` command: parse ``argv`` and run the sections it asks for."""
    args = parse_args(argv)
    if args.networks:
        from . import network_report
        network_report.run(args.tiny, args.repeats, args.rounds, args.backends)
        return 0
    if args.section in ("cpu", "all"):
        from . import cpu
        cpu.run(args.tiny, args.repeats, args.rounds, args.backends)
    if args.section in ("gpu", "all"):
        from . import gpu
        gpu.run(args.tiny, args.repeats)
    return 0
