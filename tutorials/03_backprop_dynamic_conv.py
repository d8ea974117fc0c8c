# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 3. Backpropagation through a dynamic convolution
#
# The forward pass of a dynamic convolution is a chain of small stages (notebook 2):
#
# $$x \xrightarrow{\text{pool}} p \xrightarrow{\text{FC1, relu}} h \xrightarrow{\text{FC2}} z
#   \xrightarrow{\text{softmax}/\tau} \pi \xrightarrow{\text{aggregate}} (W_n, b_n)
#   \xrightarrow{\text{conv with } x} y .$$
#
# Note that $x$ is used twice: by the attention branch and by the convolution. The backward pass
# receives $G = \partial L / \partial y$ and walks the chain in reverse; where $x$ fans out, the
# two gradients add up.
#
# We derive every stage's gradient by hand, write it in a few lines of NumPy, assemble the whole
# backward pass, and compare with `dynconv_np.functional.dynamic_conv2d_backward`. Then we verify
# both with central differences and with the complex step, and look at what the checker reports
# for three typical bugs.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np

from dynconv_np.functional import dynamic_conv2d_backward, dynamic_conv2d_forward
from dynconv_np.gradcheck import gradcheck
from dynconv_np.nn import DynamicConv2d

FAST = os.environ.get("DYNCONV_TUTORIAL_FAST", "0") == "1"
rng = np.random.default_rng(0)
np.set_printoptions(precision=4, suppress=True)
# fast mode: check a random subset of 40 elements per input instead of all of them
SUBSET = {"max_elements": 40} if FAST else {}

# A small problem in float64: 2 samples, 4 -> 6 channels, 7x7 input, 3x3 kernel, stride 2,
# padding 1 (so the output is 4x4), K = 3 kernels, tau = 2.
N, C_in, C_out, H, W, K, kernel = 2, 4, 6, 7, 7, 3, 3
stride, padding, tau = 2, 1, 2.0
layer = DynamicConv2d(C_in, C_out, kernel, stride=stride, padding=padding, num_kernels=K,
                      temperature=tau, backend="numpy", dtype=np.float64, rng=0)
params = {name: value.copy() for name, value in layer.params.items()}
x = rng.standard_normal((N, C_in, H, W))
for name, value in {"x": x, **params}.items():
    print(f"{name:<11} {value.shape}")

# %% [markdown]
# ## The forward pass, written so that it also runs on complex numbers
#
# We write the forward pass ourselves and keep every intermediate value (the "cache"). Two small
# choices make it work for complex inputs too, which the complex-step check below needs: relu is
# $h \cdot [\operatorname{Re} h > 0]$, and the softmax shift uses the real part of the maximum.
# On real inputs both are the usual definitions.
#
# The convolution (cross-correlation, as in PyTorch) of sample $n$ with its own kernel $W_n$:
#
# $$y_{n,o,h,w} = b_{n,o} + \sum_{c,i,j} W_{n,o,c,i,j}\; \tilde x_{n,c,\; hs + i,\; ws + j}$$
#
# with $\tilde x$ the zero-padded input and $s$ the stride. We loop over the $k_h k_w$ kernel taps
# $(i, j)$; for each tap the input values it reads form a strided slice of $\tilde x$.

# %%
def tap(i, j, out_h, out_w):
    """The slice of the padded input read by kernel tap (i, j), for every output position."""
    return (slice(None), slice(None),
            slice(i, i + stride * (out_h - 1) + 1, stride),
            slice(j, j + stride * (out_w - 1) + 1, stride))


def conv_forward_by_hand(x, w_n, b_n):
    n, _, h, w = x.shape
    kh, kw = w_n.shape[3:]
    out_h, out_w = (h + 2 * padding - kh) // stride + 1, (w + 2 * padding - kw) // stride + 1
    x_pad = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    y = np.zeros((n, w_n.shape[1], out_h, out_w), dtype=np.result_type(x, w_n))
    for i in range(kh):
        for j in range(kw):
            y += np.einsum("noc,nchw->nohw", w_n[:, :, :, i, j], x_pad[tap(i, j, out_h, out_w)])
    return y + b_n[:, :, None, None], x_pad


def forward_by_hand(x, weight, bias, fc1_weight, fc1_bias, fc2_weight, fc2_bias):
    """y = dynamic convolution of x; returns (y, cache of every intermediate)."""
    pooled = x.mean(axis=(2, 3))                                     # (N, C_in)
    hidden_pre = pooled @ fc1_weight.T + fc1_bias                    # (N, d)
    hidden = hidden_pre * (hidden_pre.real > 0)                      # relu
    logits = hidden @ fc2_weight.T + fc2_bias                        # (N, K)
    s = logits / tau
    e = np.exp(s - s.real.max(axis=1, keepdims=True))
    pi = e / e.sum(axis=1, keepdims=True)                            # softmax(z / tau)
    w_n = np.einsum("nk,koihw->noihw", pi, weight)                   # aggregation
    b_n = pi @ bias
    y, x_pad = conv_forward_by_hand(x, w_n, b_n)
    cache = dict(x=x, x_pad=x_pad, pooled=pooled, hidden_pre=hidden_pre, hidden=hidden, pi=pi,
                 w_n=w_n, weight=weight, bias=bias, fc1_weight=fc1_weight, fc2_weight=fc2_weight)
    return y, cache


y_hand, cache_hand = forward_by_hand(x, **params)
y_library, cache_library = dynamic_conv2d_forward(x, params, tau, stride, padding,
                                                  backend="numpy")
print("output shape:", y_hand.shape)
print("max |forward by hand - dynamic_conv2d_forward| =", np.abs(y_hand - y_library).max())

# %% [markdown]
# ## Stage by stage, backwards
#
# Let $G_{n,o,h,w} = \partial L/\partial y_{n,o,h,w}$. For each stage we differentiate its formula
# and apply the chain rule; every gradient has the shape of the variable it belongs to.
#
# ### 1. Convolution: $dW_n$, $db_n$ and $dx$ (the convolution's path)
#
# $y$ is linear in $W_n$, in $b_n$ and in $\tilde x$, so each gradient is the sum of $G$ times the
# coefficient that multiplies the variable:
#
# $$\frac{\partial L}{\partial W_{n,o,c,i,j}} = \sum_{h,w} G_{n,o,h,w}\, \tilde x_{n,c,hs+i,ws+j},
#   \qquad \frac{\partial L}{\partial b_{n,o}} = \sum_{h,w} G_{n,o,h,w},$$
#
# $$\frac{\partial L}{\partial \tilde x_{n,c,hs+i,ws+j}} \mathrel{+}= \sum_o W_{n,o,c,i,j}\, G_{n,o,h,w}
#   \quad\text{for every } (h, w, i, j), \qquad dx = d\tilde x \text{ without the padding.}$$
#
# The input gradient *scatters*: every input pixel collects a contribution from every output
# position whose window covers it. For stride 1 this is a "full" correlation of $G$ with the kernel
# flipped in space and transposed in channels (a transposed convolution); written as a
# scatter over taps, it holds for any stride.

# %%
def conv_backward_by_hand(dy, cache, flip_kernel=False):
    x_pad, w_n = cache["x_pad"], cache["w_n"]
    kh, kw = w_n.shape[3:]
    out_h, out_w = dy.shape[2:]
    dx_pad = np.zeros_like(x_pad, dtype=np.result_type(x_pad, dy))
    dw_n = np.zeros_like(w_n, dtype=np.result_type(w_n, dy))
    for i in range(kh):
        for j in range(kw):
            window = tap(i, j, out_h, out_w)
            dw_n[:, :, :, i, j] = np.einsum("nohw,nchw->noc", dy, x_pad[window])
            # bug 3 below: a convolution instead of a correlation (kernel flipped) in dx
            w_tap = w_n[:, :, :, kh - 1 - i, kw - 1 - j] if flip_kernel else w_n[:, :, :, i, j]
            dx_pad[window] += np.einsum("noc,nohw->nchw", w_tap, dy)
    h, w = cache["x"].shape[2:]
    dx_conv = dx_pad[:, :, padding:padding + h, padding:padding + w]
    return dx_conv, dw_n, dy.sum(axis=(2, 3))


# %% [markdown]
# ### 2. Aggregation: $d\pi$, $dW_k$, $db_k$
#
# From $W_n = \sum_k \pi_{nk} W_k$ and $b_n = \sum_k \pi_{nk} b_k$:
#
# $$\frac{\partial L}{\partial \pi_{nk}} = \langle dW_n, W_k\rangle + \langle db_n, b_k\rangle,
#   \qquad \frac{\partial L}{\partial W_k} = \sum_n \pi_{nk}\, dW_n,
#   \qquad \frac{\partial L}{\partial b_k} = \sum_n \pi_{nk}\, db_n,$$
#
# where $\langle\cdot,\cdot\rangle$ sums the products of all entries. The kernel gradient is
# weighted by the attention: a kernel that no sample attends to does not learn (notebook 1).
#
# ### 3. Attention: softmax, FC2, relu, FC1
#
# * softmax with temperature (notebook 1): $dz = \pi \odot (d\pi - \langle d\pi, \pi\rangle)/\tau$
# * FC2, $z = h W^{(2)\top} + b^{(2)}$: $dh = dz\, W^{(2)}$, $dW^{(2)} = dz^\top h$,
#   $db^{(2)} = \sum_n dz_n$
# * relu: $dh^{pre} = dh \odot [h^{pre} > 0]$
# * FC1, $h^{pre} = p W^{(1)\top} + b^{(1)}$: $dp = dh^{pre} W^{(1)}$,
#   $dW^{(1)} = dh^{pre\,\top} p$, $db^{(1)} = \sum_n dh^{pre}_n$
#
# ### 4. Pooling, and the fan-out of $x$
#
# $p_{n,c} = \frac{1}{HW}\sum_{h,w} x_{n,c,h,w}$ gives $\partial L/\partial x_{n,c,h,w} = dp_{n,c}/(HW)$
# along the attention path. The total input gradient is the sum over both paths:
#
# $$dx = dx^{conv} + dx^{pool}.$$

# %%
def backward_by_hand(dy, cache, bugs=()):
    """All gradients of forward_by_hand. ``bugs`` switches on deliberate mistakes (see below)."""
    pi, weight, bias = cache["pi"], cache["weight"], cache["bias"]
    # 1. convolution
    dx, dw_n, db_n = conv_backward_by_hand(dy, cache, flip_kernel="flipped kernel" in bugs)
    # 2. aggregation
    dpi = np.einsum("noihw,koihw->nk", dw_n, weight) + db_n @ bias.T
    dweight = np.einsum("nk,noihw->koihw", pi, dw_n)
    dbias = pi.T @ db_n
    # 3. attention
    inner = np.sum(dpi * pi, axis=1, keepdims=True)
    dlogits = pi * (dpi - inner) / (1.0 if "no 1/tau" in bugs else tau)
    dhidden = dlogits @ cache["fc2_weight"]
    dfc2_weight, dfc2_bias = dlogits.T @ cache["hidden"], dlogits.sum(axis=0)
    dhidden_pre = dhidden * (cache["hidden_pre"].real > 0)
    dpooled = dhidden_pre @ cache["fc1_weight"]
    dfc1_weight, dfc1_bias = dhidden_pre.T @ cache["pooled"], dhidden_pre.sum(axis=0)
    # 4. pooling: the second path from x
    if "no pooling path" not in bugs:
        dx = dx + dpooled[:, :, None, None] / (dx.shape[2] * dx.shape[3])
    return {"x": dx, "weight": dweight, "bias": dbias, "fc1_weight": dfc1_weight,
            "fc1_bias": dfc1_bias, "fc2_weight": dfc2_weight, "fc2_bias": dfc2_bias}


G = rng.standard_normal(y_hand.shape)          # a random upstream gradient, never all-ones
grads_hand = backward_by_hand(G, cache_hand)
dx_library, grads_library = dynamic_conv2d_backward(G, cache_library)
grads_library["x"] = dx_library
print(f"{'gradient':<11}{'shape':>20}{'max |by hand - library|':>26}")
for name, value in grads_hand.items():
    print(f"{name:<11}{str(value.shape):>20}{np.abs(value - grads_library[name]).max():>26.2e}")

# %% [markdown]
# ## Verification 1: central differences
#
# Hand derivation and library agree, but both could share a mistake. The independent judge is the
# derivative itself. With the scalar $L(\theta) = \sum y(\theta) \odot G$,
#
# $$\frac{\partial L}{\partial \theta_i} \approx \frac{L(\theta + \epsilon e_i) - L(\theta - \epsilon e_i)}{2\epsilon},$$
#
# with truncation error $O(\epsilon^2)$ and round-off error $O(u\,|L|/\epsilon)$ ($u \approx 2.2
# \cdot 10^{-16}$): at $\epsilon = 10^{-6}$ both are around $10^{-10}$ relative. `gradcheck`
# perturbs every element of every input, two forward passes each.

# %%
inputs = {"x": x, **params}
print("numbers checked:", sum(v.size for v in inputs.values()))
report_hand = gradcheck(forward_by_hand, inputs, backward_by_hand, **SUBSET)
print("by hand:\n", report_hand, sep="")


def library_forward(x, **params):
    return dynamic_conv2d_forward(x, params, tau, stride, padding, backend="numpy")


def library_backward(dy, cache):
    dx, grads = dynamic_conv2d_backward(dy, cache)
    return {"x": dx, **grads}


print("library:\n", gradcheck(library_forward, inputs, library_backward, **SUBSET), sep="")
print("library, one random direction:\n",
      gradcheck(library_forward, inputs, library_backward, mode="directional"), sep="")

# %% [markdown]
# ## Verification 2: the complex step
#
# For a function that is analytic in its input (real for real input), a step $ih$ along the
# imaginary axis gives
#
# $$L(\theta + ih e_i) = L(\theta) + ih\,\partial_i L - \tfrac{h^2}{2}\partial_i^2 L + O(h^3)
#   \quad\Rightarrow\quad \partial_i L = \frac{\operatorname{Im} L(\theta + ih e_i)}{h} + O(h^2).$$
#
# No subtraction of nearly equal numbers takes place, so $h$ can be tiny ($10^{-20}$) and the
# derivative is exact to machine precision. Our forward pass runs on complex arrays, so
# `gradcheck(..., mode="complex")` can use it. (The library's front-ends accept only float32 and
# float64; the complex step checks the same math through this re-implementation, which matches the
# library on real inputs, as shown above.)

# %%
report_complex = gradcheck(forward_by_hand, inputs, backward_by_hand, mode="complex",
                           atol=1e-12, rtol=1e-10, **SUBSET)
print(report_complex)

# %% [markdown]
# How accurate is each method as a function of the step? One derivative against the analytical
# value. (Not one of the kernel weights: $L$ is *linear* in $W_k$, so central differences are
# exact for them at any step. $W^{(2)}_{1,0}$ acts through the softmax, non-linearly.)

# %%
def loss_at(fc2_weight):
    return np.sum(forward_by_hand(x, **{**params, "fc2_weight": fc2_weight})[0] * G)


index = (1, 0)
analytical = grads_hand["fc2_weight"][index]
theta = params["fc2_weight"]
steps = np.logspace(-14, -1, 14 if FAST else 40)
central_error, complex_error = [], []
for step in steps:
    unit = np.zeros_like(theta)
    unit[index] = 1.0
    central = (loss_at(theta + step * unit) - loss_at(theta - step * unit)) / (2 * step)
    complex_step = np.imag(loss_at(theta + 1j * step * unit)) / step
    central_error.append(abs(central - analytical) / abs(analytical))
    complex_error.append(max(abs(complex_step - analytical) / abs(analytical), 1e-17))

fig, ax = plt.subplots(figsize=(6.5, 4))
ax.loglog(steps, central_error, marker="o", ms=3, label="central difference")
ax.loglog(steps, complex_error, marker="s", ms=3, label="complex step")
ax.axhline(np.finfo(float).eps, color="grey", ls=":", label="machine epsilon")
ax.set(xlabel=r"step $\epsilon$ (or $h$)", ylabel="relative error",
       title=r"$\partial L/\partial W^{(2)}_{1,0}$: numerical vs analytical")
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()
best = int(np.argmin(central_error))
print(f"central differences: best relative error {central_error[best]:.1e} at eps = "
      f"{steps[best]:.0e}; complex step: {complex_error[0]:.1e} at h = {steps[0]:.0e}")

# %% [markdown]
# The central-difference error is a V: truncation ($\propto \epsilon^2$) on the right,
# round-off ($\propto 1/\epsilon$) on the left, best near $\epsilon \approx 10^{-5}$. The complex
# step has no round-off branch: it stays at machine precision for every small $h$.
#
# ## What a wrong gradient looks like
#
# Three mistakes that are easy to make, each switched on in `backward_by_hand`:
#
# 1. **no pooling path**: forgetting that $x$ also feeds the attention branch ($dx = dx^{conv}$);
# 2. **no 1/tau**: dropping the temperature from the softmax backward;
# 3. **flipped kernel**: a convolution instead of a correlation in $dx$.
#
# For each, the checker's verdict per input:

# %%
bugs = ("no pooling path", "no 1/tau", "flipped kernel")
print(f"{'bug':<18}" + "".join(f"{name:>12}" for name in inputs))
for bug in bugs:
    report = gradcheck(forward_by_hand, inputs,
                       lambda dy, cache, bug=bug: backward_by_hand(dy, cache, bugs=(bug,)),
                       raise_exception=False, **SUBSET)
    verdict = {r.name: ("ok" if r.passed else f"{r.max_abs_error:.0e}") for r in report.results}
    print(f"{bug:<18}" + "".join(f"{verdict[name]:>12}" for name in inputs))
print("(numbers: the largest absolute error of an input that FAILED)")

# %% [markdown]
# The pattern of failures points at the bug: a missing pooling path breaks only $dx$; a missing
# $1/\tau$ breaks $dx$ and the attention FCs but not the kernels (their gradient
# $\sum_n \pi_{nk} dW_n$ does not go through the softmax backward); a flipped kernel breaks only
# $dx$. The full report names the worst element:

# %%
print(gradcheck(forward_by_hand, inputs,
                lambda dy, cache: backward_by_hand(dy, cache, bugs=("no pooling path",)),
                raise_exception=False, **SUBSET))

# %% [markdown]
# The *shape* of the error is a fingerprint too. The missing pooling path contributes
# $dp_{n,c}/(HW)$, the same number at every pixel of a channel: the error map is flat within each
# channel. The flipped kernel's error is structured by the kernel and varies from pixel to pixel.

# %%
dx_true = grads_hand["x"]
fig, axes = plt.subplots(2, C_in, figsize=(2.4 * C_in, 5))
for row, bug in enumerate(("no pooling path", "flipped kernel")):
    error = dx_true - backward_by_hand(G, cache_hand, bugs=(bug,))["x"]
    limit = np.abs(error[0]).max()
    for c in range(C_in):
        axes[row, c].imshow(error[0, c], cmap="RdBu", vmin=-limit, vmax=limit)
        axes[row, c].set_title(f"{bug}\nchannel {c}", fontsize=8)
        axes[row, c].set_xticks([])
        axes[row, c].set_yticks([])
fig.suptitle("error in dx (sample 0): correct minus buggy")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## The same check on a layer
#
# `gradcheck` also accepts any object with `forward`, `backward`, `params` and `grads`: it checks
# $dx$ and every parameter's accumulated gradient. This is how you would check your own layer.

# %%
print(gradcheck(layer, x, **SUBSET))

# %% [markdown]
# **Summary.** Each stage's gradient follows from its formula: the convolution's are correlations
# of $G$ with the input (for $dW$) and scatters of the kernel (for $dx$); the aggregation's are
# inner products weighted by the attention; the attention branch chains the softmax Jacobian of
# notebook 1 through two FC layers and a relu; and $x$'s gradient sums its two paths. Central
# differences and the complex step confirm the assembled pass to about $10^{-10}$ and $10^{-15}$,
# and each typical bug leaves a recognisable pattern in the checker's report.
