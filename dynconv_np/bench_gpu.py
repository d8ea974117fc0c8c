"""GPU section of the layer benchmark (issue 4): the ``cuda`` backend against PyTorch on the GPU.

    python benchmarks/bench_layers.py --section gpu [--tiny] [--repeats R]
    NUMBA_ENABLE_CUDASIM=1 python benchmarks/bench_layers.py --section gpu --tiny

Suite: the CPU section's layers (``bench.SUITE``: float32, K = 4, tau = 1, bias on) and the
same layers L1-L4 at N = 128 (L5 is L1 at N = 1). Per layer:

* the convolution kernels alone, on device arrays: the straightforward forward kernel
  (one thread per output element) and the shared-memory tiled one, and naive / tiled
  (target: >= 5 on L1 and L4 at N = 128);
* the whole ``DynamicConv2d(backend="cuda")`` with x, dy, kernels and biases on the device
  (the attention branch runs on the host): forward, and forward + backward (dx and every
  parameter gradient), with GFLOP/s = 2 x conv multiply-adds / time (forward + backward
  counts three convolutions: y, dx, dW);
* PyTorch on the GPU when torch with CUDA is importable: the same layer with the
  grouped-convolution trick (``bench._torch_dynconv``, cuDNN with ``cudnn.benchmark``),
  and cuda / torch ratios of the medians (target: forward <= 2 on L1, L2, L4).

Times are medians over ``repeats`` calls after one warm-up call (the first call compiles the
kernels; its wall time is reported apart), measured on the device with CUDA events. Under the
CUDA simulator there is no device clock: times are the wall clock of a Python simulation (one
Python thread per CUDA thread), which shows that the script works and nothing about speed;
``--tiny`` then runs two small layers with at most 2 repeats.
"""
import dataclasses
import statistics
import time

import numpy as np

from . import bench
from .backends import cuda as cuda_backend

# --tiny: two small layers (a dense and a depthwise one) that the simulator runs in seconds.
TINY_SUITE = (bench.LayerSpec("L1", 2, 4, 4, 3, 1, 1, 1, 6),
              bench.LayerSpec("L3", 2, 4, 4, 3, 1, 1, 4, 6))
SIMULATOR_MAX_REPEATS = 2


def gpu_suite():
    """The CPU suite, then L1-L4 at N = 128 (named L1@128, ...)."""
    batched = tuple(dataclasses.replace(spec, name=f"{spec.name}@128", n=128)
                    for spec in bench.SUITE if spec.n != 1)
    return tuple(bench.SUITE) + batched


def median_ms(fn, repeats):
    """(median ms over ``repeats`` calls, wall seconds of the first call): CUDA events on a GPU."""
    cuda = cuda_backend.cuda
    start = time.perf_counter()
    fn()
    cuda.synchronize()
    first_s = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        if cuda_backend.SIMULATOR:
            start = time.perf_counter()
            fn()
            times.append((time.perf_counter() - start) * 1e3)
        else:
            begin, end = cuda.event(), cuda.event()
            begin.record()
            fn()
            end.record()
            end.synchronize()
            times.append(begin.elapsed_time(end))
    return statistics.median(times), first_s


def _geometry(spec):
    return ((spec.stride,) * 2, (spec.padding,) * 2, (1, 1), spec.groups)


def time_kernels(spec, repeats):
    """Median ms of the naive and the tiled forward kernel on device arrays."""
    layer = bench._make_layer(spec, "cuda")
    x, _ = bench._inputs(spec)
    pi = np.full((spec.n, bench.NUM_KERNELS), 1.0 / bench.NUM_KERNELS, dtype=bench.DTYPE)
    w_n, b_n = cuda_backend.aggregate_forward(pi, cuda_backend.to_device(layer.params["weight"]),
                                              cuda_backend.to_device(layer.params["bias"]))
    x_d, geometry = cuda_backend.to_device(x), _geometry(spec)
    naive = median_ms(lambda: cuda_backend.conv2d_forward_naive(x_d, w_n, b_n, *geometry), repeats)
    tiled = median_ms(lambda: cuda_backend.conv2d_forward(x_d, w_n, b_n, *geometry), repeats)
    return naive[0], tiled[0]


def time_layer(spec, repeats):
    """(fwd ms, fwd+bwd ms, first call s) of DynamicConv2d(backend="cuda"), all on the device."""
    layer = bench._make_layer(spec, "cuda")
    for name in ("weight", "bias"):
        layer.params[name] = cuda_backend.to_device(layer.params[name])
        layer.grads[name] = cuda_backend.to_device(layer.grads[name])
    x, dy = (cuda_backend.to_device(a) for a in bench._inputs(spec))

    def fwd_bwd():
        layer.forward(x)
        layer.backward(dy)

    fwd_bwd_ms, first_s = median_ms(fwd_bwd, repeats)
    fwd_ms, _ = median_ms(lambda: layer.forward(x), repeats)
    return fwd_ms, fwd_bwd_ms, first_s


def torch_on_gpu():
    """The torch module if it is importable and sees a CUDA GPU, else None."""
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def time_torch(torch, spec, repeats, device="cuda"):
    """(fwd ms, fwd+bwd ms) of the same layer in PyTorch on ``device`` (grouped-convolution trick)."""
    fwd, fwd_bwd = bench.torch_layer_calls(spec, device)
    return median_ms(fwd, repeats)[0], median_ms(fwd_bwd, repeats)[0]


def _device_name():
    if cuda_backend.SIMULATOR:
        return "Numba CUDA simulator (CPU; times are Python simulation, not GPU speed)"
    name = cuda_backend.cuda.get_current_device().name
    return name.decode() if isinstance(name, bytes) else str(name)


def run(tiny=False, repeats=30):
    """Measure the suite (or the two tiny layers) and print one table."""
    try:
        cuda_backend.ensure_available()
    except cuda_backend.CudaUnavailableError as error:
        print(f"GPU section unavailable: {error}")
        return
    if cuda_backend.SIMULATOR:
        repeats = min(repeats, SIMULATOR_MAX_REPEATS)
    torch = torch_on_gpu()
    if torch is not None:
        torch.backends.cudnn.benchmark = True
    suite = TINY_SUITE if tiny else gpu_suite()
    clock = "wall clock" if cuda_backend.SIMULATOR else "CUDA events"
    print(f"GPU section: {_device_name()}; float32, K={bench.NUM_KERNELS}, "
          f"tau={bench.TEMPERATURE}, median of {repeats} ({clock}) after a warm-up call"
          + (", tiny suite" if tiny else ""))
    if torch is None:
        print("PyTorch on the GPU: not available (torch missing or without CUDA); "
              "its columns are left out")

    header = (f"{'layer':7} {'N':>4} | {'naive ms':>9} {'tiled ms':>9} {'naive/tiled':>11} | "
              f"{'fwd ms':>9} {'GFLOP/s':>8} {'f+b ms':>9} {'GFLOP/s':>8} {'1st s':>6}")
    if torch is not None:
        header += f" | {'torch fwd':>9} {'torch f+b':>9} {'fwd/torch':>9} {'f+b/torch':>9}"
    print(header)
    print("-" * len(header))
    for spec in suite:
        naive_ms, tiled_ms = time_kernels(spec, repeats)
        fwd_ms, fwd_bwd_ms, first_s = time_layer(spec, repeats)
        line = (f"{spec.name:7} {spec.n:4} | {naive_ms:9.3f} {tiled_ms:9.3f} "
                f"{naive_ms / tiled_ms:11.2f} | {fwd_ms:9.3f} "
                f"{spec.conv_flops / fwd_ms / 1e6:8.1f} {fwd_bwd_ms:9.3f} "
                f"{3 * spec.conv_flops / fwd_bwd_ms / 1e6:8.1f} {first_s:6.2f}")
        if torch is not None:
            torch_fwd, torch_fwd_bwd = time_torch(torch, spec, repeats)
            line += (f" | {torch_fwd:9.3f} {torch_fwd_bwd:9.3f} {fwd_ms / torch_fwd:9.2f} "
                     f"{fwd_bwd_ms / torch_fwd_bwd:9.2f}")
        print(line, flush=True)
