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
# The convolution is where a dynamic convolution spends its time. Its most obviously correct form
# is plain loops: one iteration per output element, which sums what the formula says and writes
# the element once. `dynconv_np` ships exactly that as a backend, `backend="loops"`
# (`dynconv_np/backends/loops.py`). This notebook reads its forward loop and runs the *same* source
# four ways:
#
# 1. interpreted by Python;
# 2. compiled by Numba's `@njit` (one thread);
# 3. compiled with `@njit(parallel=True)`, so that `prange` shares the iterations among threads
#    (this is how the `loops` backend compiles it);
# 4. as the CUDA kernel of the `cuda` backend, one GPU thread per output element (on a machine
#    without a GPU, Numba's CUDA *simulator* runs the kernel in Python: it checks the indexing,
#    not the speed).
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

import ast  # noqa: E402
import difflib  # noqa: E402
import inspect  # noqa: E402
import textwrap  # noqa: E402
import time  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import numba  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from numba import cuda, njit  # noqa: E402

from dynconv_np.backends import cuda_kernels, loops  # noqa: E402
from dynconv_np.backends.geometry import conv_output_shape  # noqa: E402
from dynconv_np.functional import per_sample_conv2d_forward  # noqa: E402

FAST = os.environ.get("DYNCONV_TUTORIAL_FAST", "0") == "1"
rng = np.random.default_rng(0)
print(f"numba {numba.__version__}, {numba.get_num_threads()} threads; CUDA: "
      f"{'a GPU' if GPU else 'the simulator (no GPU here)'}")

# %% [markdown]
# ## The indexing
#
# The layout is NCHW and the convolution is a cross-correlation, as in PyTorch. Sample $n$ has its
# own kernel $w_n$ (the aggregated kernel of a dynamic convolution; $nw = n$), or all samples share
# one ($nw = 0$). With stride $(s_0, s_1)$, padding $(p_0, p_1)$, dilation $(d_0, d_1)$ and $G$
# groups ($C_g = C_{in}/G$ input and $C_{og} = C_{out}/G$ output channels per group), output
# element $(n, co, oh, ow)$ is
#
# $$y[n, co, oh, ow] = b[nw, co] + \sum_{c=0}^{C_g-1} \sum_{i=0}^{k_h-1} \sum_{j=0}^{k_w-1}
#    x[n,\; g C_g + c,\; oh\, s_0 - p_0 + i\, d_0,\; ow\, s_1 - p_1 + j\, d_1]
#    \; w[nw, co, c, i, j], \qquad g = \lfloor co / C_{og} \rfloor ,$$
#
# where input positions outside $[0, H) \times [0, W)$ read zero (that is the padding: the loops
# skip them instead of building a padded copy). The output size per axis is
# $H_{out} = \lfloor (H + 2p_0 - d_0(k_h - 1) - 1)/s_0 \rfloor + 1$ (`geometry.conv_output_shape`).
#
# Below, for stride 2, padding 1 and dilation 2, the input pixels read by two output pixels:

# %%
H_demo, k_demo, s_demo, p_demo, d_demo = 9, 3, 2, 1, 2
out_demo = (H_demo + 2 * p_demo - d_demo * (k_demo - 1) - 1) // s_demo + 1
# one colour per kind of cell: the colour map and the legend are both built from this table
PADDING, INPUT, PADDING_TAP, INPUT_TAP = range(4)
kinds = {PADDING: ("padding (reads zero)", "#d9d9d9"), INPUT: ("input", "#9ecae1"),
         PADDING_TAP: ("tap on the padding", "#fdae6b"), INPUT_TAP: ("tap read", "#d62728")}
colours = ListedColormap([colour for _, colour in kinds.values()])
fig, axes = plt.subplots(1, 2, figsize=(9, 4.6))
for ax, (r_out, c_out) in zip(axes, ((0, 0), (2, 3))):
    grid = np.full((H_demo + 2 * p_demo, H_demo + 2 * p_demo), PADDING)
    grid[p_demo:-p_demo, p_demo:-p_demo] = INPUT
    for i in range(k_demo):
        for j in range(k_demo):
            r, c = r_out * s_demo - p_demo + i * d_demo, c_out * s_demo - p_demo + j * d_demo
            inside = 0 <= r < H_demo and 0 <= c < H_demo
            grid[r + p_demo, c + p_demo] = INPUT_TAP if inside else PADDING_TAP
    ax.imshow(grid, cmap=colours, vmin=-0.5, vmax=len(kinds) - 0.5)
    ax.set_xticks(range(H_demo + 2 * p_demo), range(-p_demo, H_demo + p_demo), fontsize=7)
    ax.set_yticks(range(H_demo + 2 * p_demo), range(-p_demo, H_demo + p_demo), fontsize=7)
    ax.set_title(f"output ({r_out}, {c_out}) of {out_demo}x{out_demo}", fontsize=9)
fig.legend(handles=[Patch(color=colour, label=label) for label, colour in kinds.values()],
           loc="lower center", ncol=len(kinds), fontsize=8)
fig.suptitle(f"{H_demo}x{H_demo} input, {k_demo}x{k_demo} kernel, stride {s_demo}, "
             f"padding {p_demo}, dilation {d_demo}")
fig.tight_layout(rect=(0, 0.07, 1, 1))
plt.show()

# %% [markdown]
# ## One output element per iteration, written once
#
# Here is the forward loop of the `loops` backend, as the package defines it. The loop runs over
# $t$, the row-major (flattened) index of the output element; the first lines unflatten $t$ into
# $(n, co, oh, ow)$ by row-major division, the inverse of $t = ((n C_{out} + co) H_{out} + oh)
# W_{out} + ow$:
#
# $$ow = t \bmod W_{out},\quad oh = \lfloor t/W_{out} \rfloor \bmod H_{out},\quad
#   co = \lfloor t/(W_{out}H_{out}) \rfloor \bmod C_{out},\quad
#   n = \lfloor t/(W_{out}H_{out}C_{out}) \rfloor .$$
#
# The rest is the formula above. The innermost loop runs over $j$, which walks along a row of
# $x$ (contiguous in memory for stride and dilation 1). Each iteration writes $y[n, co, oh, ow]$
# and nothing else, so no two iterations ever write the same element: that is what makes it safe
# to hand the iterations of `prange` to different threads. The accumulator starts as a zero of
# y's dtype, so float32 arrays are summed in float32 (as on the GPU).

# %%
print(inspect.getsource(loops.forward))

# %% [markdown]
# `loops.forward` is that source compiled with `@njit(cache=True, parallel=True)`. Numba keeps the
# Python function it compiled as `py_func`, so the same source gives all three CPU versions.
# Outside Numba, `prange` is plain `range`; `@njit` without `parallel=True` treats it as `range`
# too; only `parallel=True` splits its iterations over threads.

# %%
conv_python = loops.forward.py_func        # the source, run by the interpreter
conv_njit = njit(loops.forward.py_func)    # compiled, one thread (prange read as range)
conv_prange = loops.forward                # compiled with parallel=True: the loops backend

# %% [markdown]
# ## The CUDA kernel
#
# On the GPU there is no loop over outputs: we launch one thread per output element, and each
# thread computes its $t$ = `cuda.grid(1)` (block index $\times$ block size $+$ thread index).
# The `cuda` backend's straightforward forward kernel (`cuda_kernels.naive_kernels`) is the loop
# body above, nearly line for line. Below, its source, and then every line in which the two
# differ (indentation ignored): the decorator, where $t$ comes from (a launch instead of a loop,
# with a bounds test because the last block may have more threads than outputs), and how the
# zero accumulator gets its dtype (`naive_kernels(dtype)` builds the CUDA kernels for one dtype
# and closes over its Numba scalar type `real`, which `cuda_kernels.py` also needs as a
# compile-time constant for its shared-memory arrays).
#
# Neighbouring threads get neighbouring $ow$, so they read neighbouring input columns and write
# neighbouring outputs (coalesced memory access).

# %%
def nested_source(factory, name):
    """Source (decorator included) of the function ``name`` defined inside ``factory``."""
    source = textwrap.dedent(inspect.getsource(factory))
    node = next(node for node in ast.walk(ast.parse(source))
                if isinstance(node, ast.FunctionDef) and node.name == name)
    lines = source.splitlines()[node.decorator_list[0].lineno - 1:node.end_lineno]
    return textwrap.dedent("\n".join(lines))


def statements(source):
    return [line.strip() for line in source.splitlines() if line.strip()]


cuda_forward = nested_source(cuda_kernels.naive_kernels, "forward")
print(cuda_forward)
print("\n".join(difflib.unified_diff(statements(inspect.getsource(loops.forward)),
                                     statements(cuda_forward), "loops.forward",
                                     "cuda_kernels.naive_kernels: forward", n=0, lineterm="")))

# %%
THREADS_PER_BLOCK = 128


def conv_cuda(x, w, b, y, *geometry):
    """Launch the naive CUDA forward kernel with enough blocks to cover y; copies to/from the
    device. ``geometry`` = (s0, s1, p0, p1, d0, d1, groups), as for the loops."""
    forward_kernel = cuda_kernels.naive_kernels(np.dtype(x.dtype))[0]
    blocks = (y.size + THREADS_PER_BLOCK - 1) // THREADS_PER_BLOCK
    d_x, d_w, d_b = (cuda.to_device(a) for a in (x, w, b))
    d_y = cuda.device_array_like(y)
    forward_kernel[blocks, THREADS_PER_BLOCK](d_x, d_w, d_b, d_y, *geometry)
    cuda.synchronize()
    y[...] = d_y.copy_to_host()


# %% [markdown]
# ## Every version agrees with the reference
#
# A grouped case with different strides, paddings and dilations along the two axes (the CUDA
# simulator runs Python threads, so the problem is small). The judge is the NumPy reference
# backend of `dynconv_np`; the last line goes through the public API with `backend="loops"`.

# %%
def problem(n, c_in, c_out, size, k, groups, dtype=np.float64, seed=0):
    r = np.random.default_rng(seed)
    x = r.standard_normal((n, c_in, size, size)).astype(dtype)
    w = r.standard_normal((n, c_out, c_in // groups, k, k)).astype(dtype)
    b = r.standard_normal((n, c_out)).astype(dtype)
    return x, w, b


x, w, b = problem(n=2, c_in=4, c_out=6, size=7, k=3, groups=2)
stride, padding, dilation, groups = (2, 1), (1, 0), (2, 1), 2
geometry = (*stride, *padding, *dilation, groups)   # the kernels' s0, s1, p0, p1, d0, d1, groups
reference = per_sample_conv2d_forward(x, w, b, stride, padding, dilation, groups,
                                      backend="numpy")[0]
implementations = {"python loops": conv_python, "@njit": conv_njit,
                   "@njit(parallel) + prange": conv_prange, "CUDA kernel": conv_cuda}
for name, conv in implementations.items():
    y = np.zeros(conv_output_shape(x.shape, w.shape, stride, padding, dilation))
    conv(x, w, b, y, *geometry)
    print(f"{name:<26} max |y - reference| = {np.abs(y - reference).max():.2e}")
y = per_sample_conv2d_forward(x, w, b, stride, padding, dilation, groups, backend="loops")[0]
label = 'backend="loops"'
print(f"{label:<26} max |y - reference| = {np.abs(y - reference).max():.2e}")

# %% [markdown]
# ## Timings
#
# A dense 3x3 convolution, padding 1, batch 8, $C_{in} = C_{out} = 16$, over the feature map
# size. Each time is the best of a few runs after a first call that compiles. Interpreted Python
# runs only on the smallest size (it takes seconds there already). `dynconv_np`'s own backends are
# timed too: `numpy` (im2col and matrix products) and `numba` (its tuned CPU engine: im2col and
# BLAS in per-thread blocks, not these naive loops; the `prange` row *is* the `loops` backend's
# forward). With a GPU the CUDA times cover the kernel only (inputs already on the device); the
# simulator is timed on the smallest size only and is *not* a speed measurement.
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
    y = np.zeros(conv_output_shape(x.shape, w.shape, (1, 1), (1, 1), (1, 1)), dtype=np.float32)
    args = (x, w, b, y, 1, 1, 1, 1, 1, 1, 1)     # stride 1, padding 1, dilation 1, 1 group
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
        forward_kernel = cuda_kernels.naive_kernels(np.dtype(np.float32))[0]

        def kernel_only():
            forward_kernel[blocks, THREADS_PER_BLOCK](*on_device, d_y, *args[4:])
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
# One colour per implementation, the same in both panels (the line panel leaves out the
# interpreted rows, so the default colour cycle would shift its colours against the bars').
colour_of = {name: f"C{index}" for index, name in enumerate(timings)}
fig, axes = plt.subplots(1, 2, figsize=(13, 4.2))
width = 0.8 / len(timings)
for index, (name, row) in enumerate(timings.items()):
    positions = [sizes.index(s) + (index - len(timings) / 2 + 0.5) * width for s in row]
    axes[0].bar(positions, [1e3 * t for t in row.values()], width=width, label=name,
                color=colour_of[name])
    if row and "python" not in name and "simulator" not in name:
        axes[1].loglog(list(row), [madds[s] / row[s] / 1e9 for s in row], marker="o",
                       label=name, color=colour_of[name])
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
# * `prange` splits the output elements over threads; the speed-up is bounded by the number of
#   cores.
# * The naive loops do one multiply-add per memory read of $x$ and $w$. The `numba` backend of
#   `dynconv_np` rearranges the same arithmetic as im2col and a matrix multiply in cache-sized
#   blocks, which reuses each value loaded; that, not a different formula, is where its extra
#   speed comes from. It is checked against the same NumPy reference as the loops above.
# * A GPU runs thousands of the per-element threads at once; the simulator runs them one by one in
#   Python, which is why its time is only a correctness check.
# * The backward loops (`backward_input`, `backward_weight`, `backward_bias`) and the aggregation
#   and pooling loops of `dynconv_np/backends/loops.py` follow the same pattern, each next to the
#   CUDA kernel of the same name in `cuda_kernels.py`: read them side by side.
