# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 4. From loops to Numba
#
# The convolution is where a dynamic convolution spends its time. This notebook writes it as
# plain loops, the most obviously correct form, and then runs the *same* loops four ways:
#
# 1. interpreted by Python;
# 2. compiled by Numba's `@njit` (one thread);
# 3. compiled with `@njit(parallel=True)` and `prange`, so that threads share the batch;
# 4. as a CUDA kernel, one GPU thread per output element (on a machine without a GPU, Numba's
#    CUDA *simulator* runs the kernel in Python: it checks the indexing, not the speed).
#
# We check every version against the NumPy reference backend and time them.
#
# The CUDA target is chosen before Numba is imported: `NUMBA_ENABLE_CUDASIM=1` switches on the
# simulator, so we set it when no NVIDIA driver is present.

# %%
import os
import shutil
import subprocess


def nvidia_gpu_present():
    """True when nvidia-smi exists and lists at least one GPU."""
    if shutil.which("nvidia-smi") is None:
        return False
    result = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
    return result.returncode == 0 and "GPU" in result.stdout


GPU = nvidia_gpu_present()
if not GPU:
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"      # must happen before numba is imported

import time  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import numba  # noqa: E402
import numpy as np  # noqa: E402
from numba import cuda, njit, prange  # noqa: E402

from dynconv_np.functional import per_sample_conv2d_forward  # noqa: E402

FAST = os.environ.get("DYNCONV_TUTORIAL_FAST", "0") == "1"
rng = np.random.default_rng(0)
print(f"numba {numba.__version__}, {numba.get_num_threads()} threads; CUDA: "
      f"{'a GPU' if GPU else 'the simulator (no GPU here)'}")

# %% [markdown]
# ## The indexing
#
# The layout is NCHW and the convolution is a cross-correlation, as in PyTorch. Sample $n$ has its
# own kernel $W_n$ (the aggregated kernel of a dynamic convolution). With stride $s$, padding $p$,
# dilation $d$ and $G$ groups ($C_g = C_{in}/G$ input and $O_g = C_{out}/G$ output channels per
# group), output element $(n, o, r', c')$ is
#
# $$y_{n,o,r',c'} = b_{n,o} + \sum_{c=0}^{C_g-1} \sum_{i=0}^{k_h-1} \sum_{j=0}^{k_w-1}
#    W_{n,o,c,i,j}\; x_{n,\; gC_g + c,\; r' s - p + i d,\; c' s - p + j d},
#    \qquad g = \lfloor o / O_g \rfloor ,$$
#
# where input positions outside $[0, H) \times [0, W)$ read zero (that is the padding: we skip
# them instead of building a padded copy). The output size per axis is
# $H' = \lfloor (H + 2p - d(k_h - 1) - 1)/s \rfloor + 1$.
#
# Below, for stride 2, padding 1 and dilation 2, the input pixels read by two output pixels:

# %%
H_demo, k_demo, s_demo, p_demo, d_demo = 9, 3, 2, 1, 2
out_demo = (H_demo + 2 * p_demo - d_demo * (k_demo - 1) - 1) // s_demo + 1
fig, axes = plt.subplots(1, 2, figsize=(9, 4.2))
for ax, (r_out, c_out) in zip(axes, ((0, 0), (2, 3))):
    grid = np.zeros((H_demo + 2 * p_demo, H_demo + 2 * p_demo))
    grid[p_demo:-p_demo, p_demo:-p_demo] = 1                      # the real input
    for i in range(k_demo):
        for j in range(k_demo):
            r, c = r_out * s_demo - p_demo + i * d_demo, c_out * s_demo - p_demo + j * d_demo
            grid[r + p_demo, c + p_demo] = 3 if (0 <= r < H_demo and 0 <= c < H_demo) else 2
    ax.imshow(grid, cmap="viridis", vmin=0, vmax=3)
    ax.set_xticks(range(H_demo + 2 * p_demo), range(-p_demo, H_demo + p_demo), fontsize=7)
    ax.set_yticks(range(H_demo + 2 * p_demo), range(-p_demo, H_demo + p_demo), fontsize=7)
    ax.set_title(f"output ({r_out}, {c_out}) of {out_demo}x{out_demo}: yellow = read, "
                 "teal = padding tap", fontsize=8)
fig.suptitle(f"{H_demo}x{H_demo} input, {k_demo}x{k_demo} kernel, stride {s_demo}, "
             f"padding {p_demo}, dilation {d_demo} (purple: padding)")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## One output element, written once
#
# The function below computes one $y_{n,o,r',c'}$ exactly as the formula says. Everything that
# follows only decides *who* runs the loops over $(n, o, r', c')$ around it. The innermost loop
# runs over $j$, which walks along a row of $x$ (contiguous in memory for stride and dilation 1).

# %%
def output_element(x, w, b, n, o, r_out, c_out, stride, padding, dilation, groups):
    """y[n, o, r_out, c_out] of the per-sample convolution (formula above)."""
    height, width = x.shape[2], x.shape[3]
    c_group, kh, kw = w.shape[2], w.shape[3], w.shape[4]
    g = o // (w.shape[1] // groups)
    acc = b[n, o]
    for c in range(c_group):
        for i in range(kh):
            r = r_out * stride - padding + i * dilation
            if r < 0 or r >= height:
                continue
            for j in range(kw):
                col = c_out * stride - padding + j * dilation
                if 0 <= col < width:
                    acc += w[n, o, c, i, j] * x[n, g * c_group + c, r, col]
    return acc


def make_loops(element):
    """The loops over every output element around ``element``, batch loop as ``prange``.

    Outside Numba ``prange`` is plain ``range``; ``@njit`` treats it as ``range`` too; only
    ``@njit(parallel=True)`` splits it over threads. Each iteration writes y[n] only, so no two
    threads ever write the same element.
    """
    def conv_loops(x, w, b, y, stride, padding, dilation, groups):
        n_out, c_out, h_out, w_out = y.shape
        for n in prange(n_out):
            for o in range(c_out):
                for r in range(h_out):
                    for c in range(w_out):
                        y[n, o, r, c] = element(x, w, b, n, o, r, c, stride, padding,
                                                dilation, groups)
    return conv_loops


conv_python = make_loops(output_element)
element_cpu = njit(output_element)
conv_njit = njit(make_loops(element_cpu))
conv_prange = njit(parallel=True)(make_loops(element_cpu))

# %% [markdown]
# ## The CUDA kernel
#
# On the GPU there is no loop over outputs: we launch one thread per output element. Thread
# number $t = $ `cuda.grid(1)` (block index $\times$ block size $+$ thread index) is unflattened
# into $(n, o, r', c')$ by row-major division, the inverse of
# $t = ((n C_{out} + o) H' + r') W' + c'$:
#
# $$c' = t \bmod W',\quad r' = \lfloor t/W' \rfloor \bmod H',\quad
#   o = \lfloor t/(W'H') \rfloor \bmod C_{out},\quad n = \lfloor t/(W'H'C_{out}) \rfloor .$$
#
# Neighbouring threads get neighbouring $c'$, so they read neighbouring input columns and write
# neighbouring outputs (coalesced memory access). The per-element arithmetic is the same
# `output_element`, compiled as a device function.

# %%
element_gpu = cuda.jit(device=True)(output_element)
THREADS_PER_BLOCK = 128


@cuda.jit
def conv_kernel(x, w, b, y, stride, padding, dilation, groups):
    t = cuda.grid(1)
    n_out, c_out, h_out, w_out = y.shape
    if t >= n_out * c_out * h_out * w_out:
        return                      # the last block may have more threads than outputs
    c = t % w_out
    r = (t // w_out) % h_out
    o = (t // (w_out * h_out)) % c_out
    n = t // (w_out * h_out * c_out)
    y[n, o, r, c] = element_gpu(x, w, b, n, o, r, c, stride, padding, dilation, groups)


def conv_cuda(x, w, b, y, stride, padding, dilation, groups, on_device=None):
    """Launch ``conv_kernel`` with enough blocks to cover y; copies to/from the device."""
    blocks = (y.size + THREADS_PER_BLOCK - 1) // THREADS_PER_BLOCK
    d_x, d_w, d_b = (cuda.to_device(a) for a in (x, w, b)) if on_device is None else on_device
    d_y = cuda.device_array_like(y)
    conv_kernel[blocks, THREADS_PER_BLOCK](d_x, d_w, d_b, d_y, stride, padding, dilation, groups)
    cuda.synchronize()
    y[...] = d_y.copy_to_host()


# %% [markdown]
# ## Every version agrees with the reference
#
# A grouped, strided, padded, dilated case (the CUDA simulator runs Python threads, so the problem
# is small). The judge is the NumPy reference backend of `dynconv_np`.

# %%
def problem(n, c_in, c_out, size, k, groups, dtype=np.float64, seed=0):
    r = np.random.default_rng(seed)
    x = r.standard_normal((n, c_in, size, size)).astype(dtype)
    w = r.standard_normal((n, c_out, c_in // groups, k, k)).astype(dtype)
    b = r.standard_normal((n, c_out)).astype(dtype)
    return x, w, b


def output_shape(x, w, stride, padding, dilation):
    k = w.shape[3]
    size = (x.shape[2] + 2 * padding - dilation * (k - 1) - 1) // stride + 1
    return (x.shape[0], w.shape[1], size, size)


x, w, b = problem(n=2, c_in=4, c_out=6, size=7, k=3, groups=2)
geometry = dict(stride=2, padding=1, dilation=2, groups=2)
reference = per_sample_conv2d_forward(x, w, b, backend="numpy", **geometry)[0]
implementations = {"python loops": conv_python, "@njit": conv_njit,
                   "@njit(parallel) + prange": conv_prange, "CUDA kernel": conv_cuda}
for name, conv in implementations.items():
    y = np.zeros(output_shape(x, w, 2, 1, 2))
    conv(x, w, b, y, *geometry.values())
    print(f"{name:<26} max |y - reference| = {np.abs(y - reference).max():.2e}")

# %% [markdown]
# ## Timings
#
# A dense 3x3 convolution, padding 1, batch 8, $C_{in} = C_{out} = 16$, over the feature map
# size. Each time is the best of a few runs after a first call that compiles. Interpreted Python
# runs only on the smallest size (it takes seconds there already). `dynconv_np`'s own backends are
# timed too: `numpy` (im2col and matrix products) and `numba` (its production CPU backend: im2col
# and BLAS in per-thread blocks, not these naive loops). With a GPU the CUDA times cover the
# kernel only (inputs already on the device); the simulator is timed on the smallest size only and
# is *not* a speed measurement.
#
# The times are from one run on whatever machine executed the notebook. On a busy machine, threads
# compete with other processes, and the multi-threaded versions (`prange`, the `numba` backend)
# vary most from run to run.

# %%
def best_time(run, repeats, warm_up=True):
    if warm_up:
        run()                                    # compile / warm up
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


sizes = [6, 12] if FAST else [8, 16, 32, 64]
batch, channels = (2, 4) if FAST else (8, 16)
repeats = 1 if FAST else 5
timings = {name: {} for name in ("python loops", "@njit", "@njit(parallel) + prange",
                                 "CUDA kernel" + ("" if GPU else " (simulator)"),
                                 "dynconv_np numpy", "dynconv_np numba")}
for size in sizes:
    x, w, b = problem(batch, channels, channels, size, 3, 1, dtype=np.float32)
    y = np.zeros(output_shape(x, w, 1, 1, 1), dtype=np.float32)
    args = (x, w, b, y, 1, 1, 1, 1)
    runs = {"@njit": lambda: conv_njit(*args),
            "@njit(parallel) + prange": lambda: conv_prange(*args),
            "dynconv_np numpy": lambda: per_sample_conv2d_forward(x, w, b, padding=1,
                                                                  backend="numpy"),
            "dynconv_np numba": lambda: per_sample_conv2d_forward(x, w, b, padding=1,
                                                                  backend="numba")}
    if size == sizes[0]:
        runs["python loops"] = lambda: conv_python(*args)
    if GPU:
        on_device = tuple(cuda.to_device(a) for a in (x, w, b))
        d_y = cuda.device_array_like(y)
        blocks = (y.size + THREADS_PER_BLOCK - 1) // THREADS_PER_BLOCK

        def kernel_only():
            conv_kernel[blocks, THREADS_PER_BLOCK](*on_device, d_y, 1, 1, 1, 1)
            cuda.synchronize()
        runs["CUDA kernel"] = kernel_only
    elif size == sizes[0]:
        runs["CUDA kernel (simulator)"] = lambda: conv_cuda(*args)
    for name, run in runs.items():
        interpreted = name in ("python loops", "CUDA kernel (simulator)")   # nothing to compile
        timings[name][size] = best_time(run, 1 if interpreted else repeats, warm_up=not interpreted)

madds = {size: batch * channels * size * size * channels * 9 for size in sizes}
print(f"{'implementation':<28}" + "".join(f"{f'{s}x{s}':>12}" for s in sizes) + "   (ms)")
for name, row in timings.items():
    print(f"{name:<28}" + "".join(f"{1e3 * row[s]:>12.3f}" if s in row else f"{'-':>12}"
                                  for s in sizes))

# %%
fig, axes = plt.subplots(1, 2, figsize=(13, 4.2))
width = 0.8 / len(timings)
for index, (name, row) in enumerate(timings.items()):
    positions = [sizes.index(s) + (index - len(timings) / 2 + 0.5) * width for s in row]
    axes[0].bar(positions, [1e3 * t for t in row.values()], width=width, label=name)
    if row and "python" not in name and "simulator" not in name:
        axes[1].loglog(list(row), [madds[s] / row[s] / 1e9 for s in row], marker="o",
                       label=name)
axes[0].set_yscale("log")
axes[0].set_xticks(range(len(sizes)), [f"{s}x{s}" for s in sizes])
axes[0].set(xlabel="feature map (batch %d, %d -> %d channels, 3x3)" % (batch, channels, channels),
            ylabel="time (ms, log scale)", title="measured time per forward pass")
axes[0].legend(fontsize=7)
axes[1].minorticks_off()
axes[1].set_xticks(sizes, [str(s) for s in sizes])
axes[1].set(xlabel="feature map size", ylabel="GMAdd/s", title="throughput")
axes[1].legend(fontsize=7)
fig.tight_layout()
plt.show()

first = sizes[0]
speedup = timings["python loops"][first] / timings["@njit"][first]
print(f"at {first}x{first}: @njit is {speedup:.0f}x "
      f"faster than interpreted Python")
last = sizes[-1]
print(f"at {last}x{last}: speed-up of prange over {numba.get_num_threads()} threads vs one "
      f"thread: {timings['@njit'][last] / timings['@njit(parallel) + prange'][last]:.1f}x; "
      f"dynconv_np numba backend vs the naive prange loops: "
      f"{timings['@njit(parallel) + prange'][last] / timings['dynconv_np numba'][last]:.1f}x")

# %% [markdown]
# ## What the numbers say
#
# * Compiling the loops (`@njit`) removes the interpreter's per-operation cost: two to three orders
#   of magnitude on the same code.
# * `prange` splits the batch over threads; the speed-up is bounded by the number of cores.
# * The naive loops do one multiply-add per memory read of $x$ and $W$. The `numba` backend of
#   `dynconv_np` rearranges the same arithmetic as im2col and a matrix multiply in cache-sized
#   blocks, which reuses each value loaded; that, not a different formula, is where its extra
#   speed comes from. It is checked against the same NumPy reference as the loops above.
# * A GPU runs thousands of the per-element threads at once; the simulator runs them one by one in
#   Python, which is why its time is only a correctness check.
