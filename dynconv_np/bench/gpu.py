"""GPU section of the layer benchmark: the ``cuda`` backend against PyTorch on the GPU.

Suite: the CPU section's layers (``layers.SUITE``) and L1-L4 again at N = 128 (L5 is L1 at
N = 1). Per layer:

* the convolution kernels alone, on device arrays: the straightforward forward kernel
  (one thread per output element) and the shared-memory tiled one, and naive / tiled;
* the whole ``DynamicConv2d(backend="cuda").to_device()`` (kernels, biases and their
  gradients in GPU memory, x and dy copied to the device once; the attention branch runs on
  the host): forward, and forward + backward, with GFLOP/s as in the CPU section;
* PyTorch on the GPU when torch with CUDA is importable: the twin of ``layers`` (cuDNN with
  ``cudnn.benchmark``), and cuda / torch ratios.

Times are medians over ``repeats`` calls after one warm-up call (the first call compiles the
kernels; its wall time is reported apart), measured on the device with CUDA events. Under
Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) there is no device clock: times are the
wall clock of a Python simulation, which shows that the section works and nothing about
speed; repeats are capped at 2 there, and ``tiny`` runs two small layers.
numba-cuda is optional: without it (or without a GPU) the section says so and returns.
"""
import dataclasses
import statistics
import time

import numpy as np

from . import layers

# --tiny: two small layers (a dense and a depthwise one) that the simulator runs in seconds.
TINY_SUITE = (layers.LayerSpec("L1", 2, 4, 4, 3, 1, 1, 1, 6),
              layers.LayerSpec("L3", 2, 4, 4, 3, 1, 1, 4, 6))
SIMULATOR_MAX_REPEATS = 2
BATCHED_N = 128


def gpu_suite():
    """The CPU suite, then L1-L4 at N = 128 (named L1@128, ...)."""
    batched = tuple(dataclasses.replace(spec, name=f"{spec.name}@{BATCHED_N}", n=BATCHED_N)
                    for spec in layers.SUITE if spec.n != 1)
    return tuple(layers.SUITE) + batched


def simulated():
    """Whether Numba runs CUDA kernels in its simulator (no device clock)."""
    import numba
    return bool(numba.config.ENABLE_CUDASIM)


def median_ms(fn, repeats):
    """(median ms over ``repeats`` calls, wall seconds of the first call): CUDA events on a
    GPU, the host clock under the simulator."""
    from numba import cuda
    start = time.perf_counter()
    fn()
    cuda.synchronize()
    first_s = time.perf_counter() - start
    times, on_simulator = [], simulated()
    for _ in range(repeats):
        if on_simulator:
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


def device_layer(spec):
    """Our layer on the cuda backend with its kernels moved by ``to_device()``."""
    return layers.make_layer(spec, "cuda").to_device()


def time_kernels(backend, spec, repeats):
    """Median ms of the naive and the tiled forward kernel on device arrays."""
    layer = device_layer(spec)
    x, _ = layers.make_inputs(spec)
    pi = np.full((spec.n, layers.NUM_KERNELS), 1.0 / layers.NUM_KERNELS, dtype=layers.DTYPE)
    w_n, b_n = backend.aggregate_forward(pi, layer.params["weight"], layer.params["bias"])
    x_d = backend.to_device(x)
    geometry = ((spec.stride,) * 2, (spec.padding,) * 2, (1, 1), spec.groups)
    naive, _ = median_ms(lambda: backend.conv2d_forward_naive(x_d, w_n, b_n, *geometry), repeats)
    tiled, _ = median_ms(lambda: backend.conv2d_forward(x_d, w_n, b_n, *geometry), repeats)
    return naive, tiled


def time_layer(backend, spec, repeats):
    """(fwd ms, fwd+bwd ms, first call s) of the whole layer, everything on the device."""
    layer = device_layer(spec)
    x, dy = (backend.to_device(a) for a in layers.make_inputs(spec))

    def fwd_bwd():
        layer.forward(x)
        layer.backward(dy)

    fwd_bwd_ms, first_s = median_ms(fwd_bwd, repeats)
    layer.eval()  # forwards only: a training-mode forward keeps its cache for a backward
    fwd_ms, _ = median_ms(lambda: layer.forward(x), repeats)
    return fwd_ms, fwd_bwd_ms, first_s


def torch_on_gpu():
    """The torch module if it is importable and sees a CUDA GPU, else None."""
    torch = layers.import_torch()
    return torch if torch is not None and torch.cuda.is_available() else None


def time_torch(spec, repeats, device="cuda"):
    """(fwd ms, fwd+bwd ms) of the PyTorch twin on ``device``."""
    fwd, fwd_bwd = layers.torch_layer_calls(spec, device)
    return median_ms(fwd, repeats)[0], median_ms(fwd_bwd, repeats)[0]


def _device_name():
    if simulated():
        return "Numba CUDA simulator (CPU; times are Python simulation, not GPU speed)"
    from numba import cuda
    name = cuda.get_current_device().name
    return name.decode() if isinstance(name, bytes) else str(name)


def cuda_backend():
    """(the cuda backend module, None), or (None, why it is unavailable)."""
    from ..backends import get_backend
    try:
        return get_backend("cuda"), None
    except (RuntimeError, ImportError) as error:   # CudaUnavailableError is a RuntimeError
        return None, str(error)


def run(tiny=False, repeats=30):
    """Measure the suite (or the two tiny layers) and print one table."""
    backend, why = cuda_backend()
    if backend is None:
        print(f"GPU section unavailable: {why}")
        return
    if simulated():
        repeats = min(repeats, SIMULATOR_MAX_REPEATS)
    torch = torch_on_gpu()
    if torch is not None:
        torch.backends.cudnn.benchmark = True
    suite = TINY_SUITE if tiny else gpu_suite()
    clock = "wall clock" if simulated() else "CUDA events"
    print(f"GPU section: {_device_name()}; float32, K={layers.NUM_KERNELS}, "
          f"tau={layers.TEMPERATURE}, median of {repeats} ({clock}) after a warm-up call"
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
        naive_ms, tiled_ms = time_kernels(backend, spec, repeats)
        fwd_ms, fwd_bwd_ms, first_s = time_layer(backend, spec, repeats)
        line = (f"{spec.name:7} {spec.n:4} | {naive_ms:9.3f} {tiled_ms:9.3f} "
                f"{naive_ms / tiled_ms:11.2f} | {fwd_ms:9.3f} "
                f"{spec.conv_flops / fwd_ms / 1e6:8.1f} {fwd_bwd_ms:9.3f} "
                f"{3 * spec.conv_flops / fwd_bwd_ms / 1e6:8.1f} {first_s:6.2f}")
        if torch is not None:
            torch_fwd, torch_fwd_bwd = time_torch(spec, repeats)
            line += (f" | {torch_fwd:9.3f} {torch_fwd_bwd:9.3f} {fwd_ms / torch_fwd:9.2f} "
                     f"{fwd_bwd_ms / torch_fwd_bwd:9.2f}")
        print(line, flush=True)
