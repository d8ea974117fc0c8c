"""CPU section of the layer benchmark: our CPU backends against PyTorch on the CPU.

Prints, in this order: the float32 matrix-multiply peak of NumPy's BLAS (the yardstick of the
%peak columns); the timing table and the ratio table of the suite (``layers.SUITE``, timed
with ``timing.time_in_rounds``); the share of the forward spent in attention + aggregation
(L1, L4); the peak memory of forward + backward on L4; and, except with ``tiny``, the import
time and the time a new process needs to its first result with a cold and a warm Numba cache.
The first backend of ``backends`` is the subject of the ratios, the attention share and the
memory figure.
"""
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc

import numpy as np

from . import layers, timing

DEFAULT_BACKENDS = ("numba", "numpy")
ATTENTION_SHARE_LAYERS = ("L1", "L4")
MEMORY_LAYER = "L4"


def matmul_peak_gflops(size=2048, repeats=5):
    """float32 GFLOP/s of NumPy's BLAS on a size^3 matrix product (best of repeats)."""
    a = np.random.default_rng(0).standard_normal((size, size)).astype(np.float32)
    a @ a
    return 2 * size ** 3 / min(timing.time_calls(lambda: a @ a, repeats)) / 1e9


def libraries(backends, torch):
    """{library name: calls(spec)} for ``timing.time_in_rounds``: each backend, then torch."""
    found = {name: (lambda spec, name=name: layers.layer_calls(spec, name)) for name in backends}
    if torch is not None:
        found["torch"] = layers.torch_layer_calls
    return found


def attention_share(spec, backend, repeats):
    """Median seconds of the attention + aggregation stage and of the whole forward.

    The stage is timed as the layer runs it: one call of
    ``functional.dynamic_conv._dynamic_kernels`` (pooling, the backend's attention branch,
    aggregation) with the layer's parameters, temperature and backend module. Stage and
    whole forward alternate, so the stage finds the caches as a forward leaves them.
    """
    from ..backends import get_backend
    from ..functional.dynamic_conv import _dynamic_kernels
    layer = layers.make_layer(spec, backend).eval()  # forwards only: keep no caches
    x, _ = layers.make_inputs(spec)
    module = get_backend(layer.backend)

    def stage():
        _dynamic_kernels(x, layer.params, layer.temperature, module)

    stage_times, forward_times = timing.time_alternating((stage, lambda: layer.forward(x)),
                                                         repeats)
    return statistics.median(stage_times), statistics.median(forward_times)


def peak_memory(spec, backend):
    """(peak NumPy bytes allocated during forward+backward, bytes of x, y, W_n and dW_n)."""
    layer = layers.make_layer(spec, backend)
    x, dy = layers.make_inputs(spec)
    layer.forward(x)
    layer.backward(dy)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        layer.forward(x)
        layer.backward(dy)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    essential = x.nbytes + dy.nbytes + 2 * spec.kernel_elements * np.dtype(layers.DTYPE).itemsize
    return peak, essential


_FIRST_RESULT = """\
import time
start = time.perf_counter()
import numpy as np
import dynconv_np
layer = dynconv_np.DynamicConv2d(32, 32, 3, padding=1, temperature=1.0, rng=0)
x = np.random.default_rng(0).standard_normal((16, 32, 32, 32)).astype(np.float32)
y = layer.forward(x)
layer.backward(np.ones_like(y))
print(time.perf_counter() - start)
"""


def _run_python(code, env=None):
    """Wall time of a new Python process running ``code``, and what it printed."""
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True, env=env).stdout
    return time.perf_counter() - start, out.strip()


def startup_times():
    """(import s, cold s, warm s): import time, and wall time to the first forward+backward
    of L1 (default backend) in a new process with an empty and with a filled Numba cache."""
    _, import_s = _run_python(
        "import time; s = time.perf_counter(); import dynconv_np; "
        "print(time.perf_counter() - s)")
    with tempfile.TemporaryDirectory() as cache_dir:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
        cold_wall, _ = _run_python(_FIRST_RESULT, env)
        warm_wall, _ = _run_python(_FIRST_RESULT, env)
    return float(import_s), cold_wall, warm_wall


def print_table(suite, results, peak, peak_size):
    """One row per layer and library: medians, minima, GFLOP/s and %peak, first call."""
    ms = timing.ms
    print(f"\nfloat32 matmul peak (NumPy BLAS, {peak_size}^3, all cores): {peak:.1f} GFLOP/s\n")
    header = (f"{'layer':5} {'library':7} | {'fwd med ms':>10} {'fwd min ms':>10} "
              f"{'GFLOP/s':>8} {'%peak':>6} | {'f+b med ms':>10} {'f+b min ms':>10} "
              f"{'GFLOP/s':>8} {'%peak':>6} | {'1st call s':>10}")
    print(header)
    print("-" * len(header))
    for spec in suite:
        for library, per_layer in results.items():
            t = per_layer[spec.name]
            fwd, fb = t.median("fwd"), t.median("fwd_bwd")
            gf_fwd, gf_fb = spec.conv_flops / fwd / 1e9, 3 * spec.conv_flops / fb / 1e9
            print(f"{spec.name:5} {library:7} | {ms(fwd):>10} {ms(t.minimum('fwd')):>10} "
                  f"{gf_fwd:8.1f} {100 * gf_fwd / peak:5.0f}% | {ms(fb):>10} "
                  f"{ms(t.minimum('fwd_bwd')):>10} {gf_fb:8.1f} {100 * gf_fb / peak:5.0f}% | "
                  f"{t.first_call_s:10.3f}")


def ratio_columns(subject, results):
    """[(title, other library, statistic)]: the subject against torch (medians and minima),
    then against each other library (medians)."""
    columns = []
    if "torch" in results:
        columns += [(f"{subject} / torch, medians", "torch", "median"),
                    (f"{subject} / torch, minima", "torch", "min")]
    columns += [(f"{subject} / {other}, medians", other, "median")
                for other in results if other not in (subject, "torch")]
    return columns


def print_ratios(suite, results, subject):
    """Ratios of the subject's times to the others' (below 1: the subject is faster)."""
    columns = ratio_columns(subject, results)
    if subject not in results or not columns:
        return
    width = 23
    print("\n" + f"{'':5} | " + " | ".join(f"{title:^{width}}" for title, _, _ in columns))
    print(f"{'layer':5} | " + " | ".join(f"{'fwd':>11} {'f+b':>11}" for _ in columns))
    for spec in suite:
        mine = results[subject][spec.name]
        cells = []
        for _, other, statistic in columns:
            theirs = results[other][spec.name]
            of = timing.STATISTICS[statistic]
            cells.append(" ".join(f"{of(mine, part) / of(theirs, part):11.3f}"
                                  for part in ("fwd", "fwd_bwd")))
        print(f"{spec.name:5} | " + " | ".join(cells))


def run(tiny=False, repeats=30, rounds=5, backends=DEFAULT_BACKENDS):
    """Measure the suite (or its tiny version) on ``backends`` and torch; print the tables."""
    suite = layers.TINY_SUITE if tiny else layers.SUITE
    subject = backends[0]
    torch = layers.import_torch()
    if torch is None:
        print("torch is not importable: PyTorch rows left out (pip install 'dynconv_np[bench]')")
    else:
        torch.set_num_threads(os.cpu_count() or 1)
    print(f"CPU section: {os.cpu_count()} cores, {repeats} timed calls per measurement in "
          f"{rounds} rounds, float32, K={layers.NUM_KERNELS}, tau={layers.TEMPERATURE}, "
          f"backends {', '.join(backends)}" + (", tiny suite" if tiny else ""))
    timing.report_load("before")
    peak_size = 256 if tiny else 2048
    peak = matmul_peak_gflops(peak_size)
    before = timing.cpu_times()
    results = timing.time_in_rounds(libraries(backends, torch), suite, repeats, rounds)
    timing.report_steal(before)
    print_table(suite, results, peak, peak_size)
    print_ratios(suite, results, subject)

    time.sleep(timing.PHASE_PAUSE_S)
    print()
    for name in ATTENTION_SHARE_LAYERS:
        spec = layers.find_spec(suite, name)
        stage, whole = attention_share(spec, subject, repeats)
        print(f"{name}: attention + aggregation {timing.ms(stage).strip()} ms of a "
              f"{timing.ms(whole).strip()} ms forward = {100 * stage / whole:.1f}% ({subject})")
    spec = layers.find_spec(suite, MEMORY_LAYER)
    used, essential = peak_memory(spec, subject)
    print(f"{MEMORY_LAYER} forward+backward peak memory ({subject}, NumPy allocations): "
          f"{used / 2**20:.1f} MiB = {used / essential:.2f} x the {essential / 2**20:.1f} MiB "
          f"of x, y, W_n and dW_n")
    if not tiny:
        import_s, cold, warm = startup_times()
        print(f"import dynconv_np: {import_s:.3f} s; new process to first L1 forward+backward"
              f" (wall, incl. interpreter start): cold Numba cache {cold:.1f} s (JIT compile),"
              f" warm cache {warm:.2f} s")
    timing.report_load("after")
