"""Layer benchmark: DynamicConv2d on the numba and numpy backends against PyTorch (issue 3).

    python benchmarks/bench_layers.py [--section cpu|gpu|all] [--tiny] [--repeats R] [--rounds K]
    python -m dynconv_np bench ...

Suite (float32, K = 4, tau = 1, hidden = C_in / 4, bias on, dilation 1):

    name  N  C_in -> C_out  kernel stride pad groups  H x W
    L1   16     32 -> 32      3x3     1     1     1   32x32
    L2   16     64 -> 128     1x1     1     0     1   16x16
    L3   16    128 -> 128     3x3     1     1   128   16x16   (depthwise)
    L4   16     64 -> 128     3x3     2     1     1   32x32
    L5    1     32 -> 32      3x3     1     1     1   32x32

Per layer and library: median and min time of the whole layer's forward and of
forward + backward (dx and every parameter gradient); GFLOP/s = 2 * conv multiply-adds /
median time (forward + backward counts three convolutions' worth: y, dx, dW); the percentage
of this machine's float32 matrix-multiply peak (NumPy's BLAS, all cores, measured in the same
run); and numba / PyTorch ratios of the medians and of the minima (the minimum is the run least
disturbed by other work on the machine). PyTorch runs the same layer with the
grouped-convolution trick (x as (1, N*C_in, H, W), per-sample kernels as
(N*C_out, C_in/groups, kh, kw), groups = N*groups); its forward runs under no_grad.

Each library is timed in its own phase (its thread pool would otherwise spin against the
others on a small machine), and the phases repeat in rounds (``--rounds``, default 5) so that
a busy spell of a shared machine falls on every library alike; the share of CPU time the
hypervisor took ("steal") during the rounds is printed. The first call of each layer (JIT
compile or cache load, memory first touch) is reported separately and excluded from the
statistics. Further: the share of
the forward spent in attention + aggregation (L1, L4), the peak memory of forward+backward on
L4 (NumPy allocations, tracemalloc) against the bytes of x, y, the per-sample kernels and
their gradients, the import time, and the time a new process needs to its first result with
a cold and with a warm Numba cache. torch is optional: without it the PyTorch rows are left out.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LayerSpec:
    name: str
    n: int
    c_in: int
    c_out: int
    kernel: int
    stride: int
    padding: int
    groups: int
    size: int

    @property
    def out_size(self):
        return (self.size + 2 * self.padding - self.kernel) // self.stride + 1

    @property
    def conv_flops(self):
        """2 x multiply-adds of one convolution (forward) over the batch."""
        return (2 * self.n * self.c_out * (self.c_in // self.groups) * self.kernel ** 2
                * self.out_size ** 2)


SUITE = (LayerSpec("L1", 16, 32, 32, 3, 1, 1, 1, 32),
         LayerSpec("L2", 16, 64, 128, 1, 1, 0, 1, 16),
         LayerSpec("L3", 16, 128, 128, 3, 1, 1, 128, 16),
         LayerSpec("L4", 16, 64, 128, 3, 2, 1, 1, 32),
         LayerSpec("L5", 1, 32, 32, 3, 1, 1, 1, 32))

# --tiny: the same five shapes scaled down, for a quick check that everything runs.
TINY_SUITE = (LayerSpec("L1", 2, 8, 8, 3, 1, 1, 1, 8),
              LayerSpec("L2", 2, 8, 16, 1, 1, 0, 1, 8),
              LayerSpec("L3", 2, 16, 16, 3, 1, 1, 16, 8),
              LayerSpec("L4", 2, 8, 16, 3, 2, 1, 1, 8),
              LayerSpec("L5", 1, 8, 8, 3, 1, 1, 1, 8))

DTYPE = np.float32
NUM_KERNELS = 4
TEMPERATURE = 1.0
PHASE_PAUSE_S = 0.3  # lets the previous library's spinning threads fall asleep


@dataclass
class Timing:
    fwd: list
    fwd_bwd: list
    first_call_s: float


def _time_calls(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def _inputs(spec, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((spec.n, spec.c_in, spec.size, spec.size)).astype(DTYPE)
    dy = rng.standard_normal((spec.n, spec.c_out, spec.out_size, spec.out_size)).astype(DTYPE)
    return x, dy


def _make_layer(spec, backend):
    from dynconv_np.nn import DynamicConv2d
    return DynamicConv2d(spec.c_in, spec.c_out, spec.kernel, stride=spec.stride,
                         padding=spec.padding, groups=spec.groups, bias=True,
                         num_kernels=NUM_KERNELS, reduction=4, temperature=TEMPERATURE,
                         backend=backend, dtype=DTYPE, rng=0)


def dynconv_layer_calls(spec, backend):
    """(fwd, fwd_bwd): closures running DynamicConv2d on a dynconv_np backend, on the
    benchmark's fixed input and upstream gradient."""
    layer = _make_layer(spec, backend)
    x, dy = _inputs(spec)

    def fwd_bwd():
        layer.forward(x)
        layer.backward(dy)

    return (lambda: layer.forward(x)), fwd_bwd


def _torch_dynconv(spec, params):
    """The same dynamic convolution in PyTorch, with the grouped-convolution trick."""
    import torch
    import torch.nn.functional as F

    p = {name: torch.tensor(value, requires_grad=True) for name, value in params.items()}

    def forward(x):
        n = x.shape[0]
        pooled = x.mean(dim=(2, 3))
        hidden = F.relu(pooled @ p["fc1_weight"].T + p["fc1_bias"])
        pi = torch.softmax((hidden @ p["fc2_weight"].T + p["fc2_bias"]) / TEMPERATURE, dim=1)
        w_n = (pi @ p["weight"].reshape(NUM_KERNELS, -1)).reshape(
            n * spec.c_out, spec.c_in // spec.groups, spec.kernel, spec.kernel)
        b_n = (pi @ p["bias"]).reshape(-1)
        y = F.conv2d(x.reshape(1, n * spec.c_in, spec.size, spec.size), w_n, b_n,
                     stride=spec.stride, padding=spec.padding, groups=n * spec.groups)
        return y.reshape(n, spec.c_out, spec.out_size, spec.out_size)

    return forward, list(p.values())


def torch_layer_calls(spec, device="cpu"):
    """(fwd, fwd_bwd): closures running the same layer in PyTorch on ``device`` (the
    grouped-convolution trick), on the benchmark's fixed input and upstream gradient."""
    import torch
    with torch.device(device):   # the parameters _torch_dynconv creates land there
        forward, params = _torch_dynconv(spec, _make_layer(spec, "numpy").params)
    x_np, dy_np = _inputs(spec)
    x = torch.tensor(x_np, device=device, requires_grad=True)
    dy = torch.tensor(dy_np, device=device)

    def fwd():
        with torch.no_grad():
            forward(x)

    def fwd_bwd():
        for tensor in params + [x]:
            tensor.grad = None
        forward(x).backward(dy)

    return fwd, fwd_bwd


def time_in_rounds(libraries, suite, repeats, rounds):
    """{library: {layer name: Timing}}, timed in ``rounds`` rounds of one phase per library.

    ``libraries`` maps a name to ``calls(spec) -> (fwd, fwd_bwd)``. Each phase times one
    library alone (repeats // rounds calls of each closure per layer, at least one), so thread
    pools never interleave; repeating the phases in rounds spreads the load that other
    tenants of a shared machine put on it over every library alike, instead of letting one
    library's phase land in a busy minute. The first call of each layer (JIT compile or
    cache load, first touch of memory) is timed apart and left out of the statistics.
    """
    calls, results = {}, {}
    for library, make_calls in libraries.items():
        time.sleep(PHASE_PAUSE_S)
        for spec in suite:
            fwd, fwd_bwd = make_calls(spec)
            start = time.perf_counter()
            fwd_bwd()
            calls[library, spec.name] = (fwd, fwd_bwd)
            results.setdefault(library, {})[spec.name] = Timing([], [], time.perf_counter() - start)
    per_round = max(1, repeats // rounds)
    for _ in range(rounds):
        for library in libraries:
            time.sleep(PHASE_PAUSE_S)
            for spec in suite:
                fwd, fwd_bwd = calls[library, spec.name]
                timing = results[library][spec.name]
                timing.fwd += _time_calls(fwd, per_round)
                timing.fwd_bwd += _time_calls(fwd_bwd, per_round)
    return results


def _cpu_times():
    """(steal, total) jiffies of all CPUs from /proc/stat (Linux), or None elsewhere."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    return fields[7], sum(fields)


def _report_steal(before):
    """On a virtual machine the hypervisor can take CPU time from it ("steal"): say how much."""
    after = _cpu_times()
    if before is None or after is None or after[1] == before[1]:
        return
    share = (after[0] - before[0]) / (after[1] - before[1])
    print(f"CPU time taken by the hypervisor (steal) during the timed rounds: {100 * share:.0f}%")


def matmul_peak_gflops(size=2048, repeats=5):
    """float32 GFLOP/s of NumPy's BLAS on a size^3 matrix product (best of repeats)."""
    a = np.random.default_rng(0).standard_normal((size, size)).astype(np.float32)
    a @ a
    return 2 * size ** 3 / min(_time_calls(lambda: a @ a, repeats)) / 1e9


def attention_share(spec, repeats):
    """Median times of pooling + attention + aggregation, and of the whole forward (numba).

    The branch runs its stages as the layer does (parameters checked once by the layer,
    stages unchecked); branch and forward calls alternate, so a busy spell of the machine
    weighs on both alike.
    """
    from dynconv_np.functional.aggregation import aggregate_kernels_forward
    from dynconv_np.functional.attention import ATTENTION_PARAMS, attention_forward
    from dynconv_np.functional.pooling import global_avg_pool_forward
    layer = _make_layer(spec, "numba")
    x, _ = _inputs(spec)
    params = layer.params

    def branch():
        pooled, _ = global_avg_pool_forward(x, "numba")
        pi, _ = attention_forward(pooled, *(params[name] for name in ATTENTION_PARAMS),
                                  TEMPERATURE, check=False)
        aggregate_kernels_forward(pi, params["weight"], params["bias"], "numba", check=False)

    layer.forward(x)
    branch()
    branch_times, forward_times = [], []
    for _ in range(repeats):
        branch_times += _time_calls(branch, 1)
        forward_times += _time_calls(lambda: layer.forward(x), 1)
    return statistics.median(branch_times), statistics.median(forward_times)


def peak_memory(spec):
    """(peak NumPy bytes allocated during forward+backward, bytes of x, y, W_n and dW_n)."""
    layer = _make_layer(spec, "numba")
    x, dy = _inputs(spec)
    layer.forward(x)
    layer.backward(dy)
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    layer.forward(x)
    layer.backward(dy)
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    kernels = spec.n * spec.c_out * (spec.c_in // spec.groups) * spec.kernel ** 2
    essential = x.nbytes + dy.nbytes + 2 * kernels * np.dtype(DTYPE).itemsize
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
    """Import time, and wall time to the first forward+backward of L1 in a new process."""
    import_wall, import_s = _run_python(
        "import time; s = time.perf_counter(); import dynconv_np; "
        "print(time.perf_counter() - s)")
    with tempfile.TemporaryDirectory() as cache_dir:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
        cold_wall, _ = _run_python(_FIRST_RESULT, env)
        warm_wall, _ = _run_python(_FIRST_RESULT, env)
    return float(import_s), cold_wall, warm_wall


def _ms(seconds):
    return f"{seconds * 1e3:9.2f}"


def print_table(suite, results, peak, peak_size):
    libraries = [lib for lib in ("numba", "numpy", "torch") if lib in results]
    print(f"\nfloat32 matmul peak (NumPy BLAS, {peak_size}^3, all cores): {peak:.1f} GFLOP/s\n")
    header = (f"{'layer':5} {'library':7} | {'fwd med ms':>10} {'fwd min ms':>10} "
              f"{'GFLOP/s':>8} {'%peak':>6} | {'f+b med ms':>10} {'f+b min ms':>10} "
              f"{'GFLOP/s':>8} {'%peak':>6} | {'1st call s':>10}")
    print(header)
    print("-" * len(header))
    for spec in suite:
        for lib in libraries:
            t = results[lib][spec.name]
            fwd, fb = statistics.median(t.fwd), statistics.median(t.fwd_bwd)
            gf_fwd, gf_fb = spec.conv_flops / fwd / 1e9, 3 * spec.conv_flops / fb / 1e9
            print(f"{spec.name:5} {lib:7} | {_ms(fwd):>10} {_ms(min(t.fwd)):>10} "
                  f"{gf_fwd:8.1f} {100 * gf_fwd / peak:5.0f}% | {_ms(fb):>10} "
                  f"{_ms(min(t.fwd_bwd)):>10} {gf_fb:8.1f} {100 * gf_fb / peak:5.0f}% | "
                  f"{t.first_call_s:10.3f}")
    if "torch" in results:
        print(f"\n{'':5} | {'numba / torch, medians':^23} | {'numba / torch, minima':^23} | "
              f"{'numba / numpy, medians':^23}")
        print(f"{'layer':5} | {'fwd':>11} {'f+b':>11} | {'fwd':>11} {'f+b':>11} | "
              f"{'fwd':>11} {'f+b':>11}")
        for spec in suite:
            nb, th, npy = (results[lib][spec.name] for lib in ("numba", "torch", "numpy"))

            def ratio(a, b, part, statistic):
                return statistic(getattr(a, part)) / statistic(getattr(b, part))
            print(f"{spec.name:5} | {ratio(nb, th, 'fwd', statistics.median):11.2f} "
                  f"{ratio(nb, th, 'fwd_bwd', statistics.median):11.2f} | "
                  f"{ratio(nb, th, 'fwd', min):11.2f} {ratio(nb, th, 'fwd_bwd', min):11.2f} | "
                  f"{ratio(nb, npy, 'fwd', statistics.median):11.3f} "
                  f"{ratio(nb, npy, 'fwd_bwd', statistics.median):11.3f}")


def _report_load(when):
    """Other processes make multi-threaded timings meaningless: say how busy the machine was."""
    load = os.getloadavg()[0]
    note = "" if load < 0.5 else " (the machine is busy: parallel timings are unreliable)"
    print(f"1-minute load average {when} the run: {load:.2f}{note}")


def run_cpu(tiny=False, repeats=30, rounds=5):
    suite = TINY_SUITE if tiny else SUITE
    try:
        import torch
        torch.set_num_threads(os.cpu_count() or 1)
    except ImportError:
        torch = None
        print("torch is not importable: PyTorch rows left out (pip install 'dynconv_np[bench]')")
    print(f"CPU section: {os.cpu_count()} cores, {repeats} timed calls per measurement in "
          f"{rounds} rounds, float32, K={NUM_KERNELS}, "
          f"tau={TEMPERATURE}" + (", tiny suite" if tiny else ""))
    _report_load("before")
    peak_size = 256 if tiny else 2048
    peak = matmul_peak_gflops(peak_size)
    libraries = {"numba": lambda spec: dynconv_layer_calls(spec, "numba"),
                 "numpy": lambda spec: dynconv_layer_calls(spec, "numpy")}
    if torch is not None:
        libraries["torch"] = lambda spec: torch_layer_calls(spec)
    before = _cpu_times()
    results = time_in_rounds(libraries, suite, repeats, rounds)
    _report_steal(before)
    print_table(suite, results, peak, peak_size)

    time.sleep(PHASE_PAUSE_S)
    print()
    for spec in suite:
        if spec.name in ("L1", "L4"):
            branch, whole = attention_share(spec, repeats)
            print(f"{spec.name}: attention + aggregation {_ms(branch).strip()} ms of a "
                  f"{_ms(whole).strip()} ms forward = {100 * branch / whole:.1f}% (numba)")
    l4 = next(spec for spec in suite if spec.name == "L4")
    used, essential = peak_memory(l4)
    print(f"L4 forward+backward peak memory (numba, NumPy allocations): {used / 2**20:.1f} MiB"
          f" = {used / essential:.2f} x the {essential / 2**20:.1f} MiB of x, y, W_n and dW_n")
    if not tiny:
        import_s, cold, warm = startup_times()
        print(f"import dynconv_np: {import_s:.3f} s; new process to first L1 forward+backward"
              f" (wall, incl. interpreter start): cold Numba cache {cold:.1f} s (JIT compile),"
              f" warm cache {warm:.2f} s")
    _report_load("after")


def run_gpu(tiny=False, repeats=30):
    try:
        from dynconv_np import bench_gpu
    except ImportError as error:
        print(f"GPU section unavailable: dynconv_np.bench_gpu could not be imported ({error})")
        return
    bench_gpu.run(tiny=tiny, repeats=repeats)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--section", choices=("cpu", "gpu", "all"), default="cpu")
    parser.add_argument("--tiny", action="store_true", help="small shapes, a quick smoke run")
    parser.add_argument("--repeats", type=int, default=30, help="timed calls per measurement")
    parser.add_argument("--rounds", type=int, default=5,
                        help="rounds of one timing phase per library (the repeats are split "
                             "over them)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1; received {args.repeats}")
    if not 1 <= args.rounds <= args.repeats:
        parser.error(f"--rounds must be between 1 and --repeats ({args.repeats}); received "
                     f"{args.rounds}")
    if args.section in ("cpu", "all"):
        run_cpu(args.tiny, args.repeats, args.rounds)
    if args.section in ("gpu", "all"):
        run_gpu(args.tiny, args.repeats)
    return 0
