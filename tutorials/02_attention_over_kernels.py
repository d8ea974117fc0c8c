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
# # 2. Attention over kernels
#
# A dynamic convolution keeps $K$ kernels $W_1, \dots, W_K$ (and biases $b_1, \dots, b_K$) and,
# for every input sample $x$, convolves with their attention-weighted sum (paper, section 3.1):
#
# $$y = \Bigl(\sum_{k=1}^K \pi_k(x)\, W_k\Bigr) * x + \sum_{k=1}^K \pi_k(x)\, b_k,
#   \qquad \pi_k(x) \ge 0,\ \sum_k \pi_k(x) = 1 .$$
#
# This notebook builds the three pieces and checks each against `dynconv_np`:
#
# 1. the attention branch that computes $\pi(x)$ (squeeze-and-excitation style, section 3.2);
# 2. the aggregation $W(x) = \sum_k \pi_k(x) W_k$;
# 3. why aggregating the kernels equals mixing the $K$ outputs (linearity), and why that makes
#    dynamic convolution cheap: the cost accounting behind the paper's "about 4% more MAdds".

# %%
import os
import time

import matplotlib.pyplot as plt
import numpy as np

from dynconv_np.diagnostics import attention_diagnostics
from dynconv_np.functional import (aggregate_kernels_forward, attention_forward,
                                   conv2d_forward, per_sample_conv2d_forward, softmax_forward)
from dynconv_np.models.costs import summary_table
from dynconv_np.nn import DynamicConv2d, Sequential

FAST = os.environ.get("DYNCONV_TUTORIAL_FAST", "0") == "1"
rng = np.random.default_rng(0)
np.set_printoptions(precision=4, suppress=True)

# %% [markdown]
# ## 1. The attention branch
#
# The branch squeezes $x \in \mathbb R^{C_{in} \times H \times W}$ into a vector and maps it to
# $K$ logits:
#
# $$\begin{aligned}
# p &= \tfrac{1}{HW}\textstyle\sum_{h,w} x_{:,h,w} && \text{global average pool, } p \in \mathbb R^{C_{in}}\\
# h &= \operatorname{relu}(W^{(1)} p + b^{(1)}) && W^{(1)} \in \mathbb R^{d \times C_{in}},\ d = \max(\lfloor C_{in}/4 \rfloor, 4)\\
# z &= W^{(2)} h + b^{(2)} && W^{(2)} \in \mathbb R^{K \times d}\\
# \pi &= \operatorname{softmax}(z / \tau) && \text{notebook 1}
# \end{aligned}$$
#
# The paper's first FC "reduces the channels by 4"; `dynconv_np` keeps at least 4 hidden units so
# that a narrow input (3 RGB channels) does not get a zero-width branch. We build a layer with the
# NumPy reference backend and recompute its attention by hand.

# %%
N, C_in, C_out, H, W, K = 3, 16, 8, 12, 12, 4
layer = DynamicConv2d(C_in, C_out, kernel_size=5, padding=2, num_kernels=K, temperature=30.0,
                      backend="numpy", dtype=np.float64, rng=0)
for name, value in layer.params.items():
    print(f"{name:<11} {value.shape}")

# three samples with different channel statistics, so that their attention differs
x = rng.standard_normal((N, C_in, H, W)) + 3.0 * rng.standard_normal((N, C_in, 1, 1))
y = layer(x)

P = layer.params
pooled = x.mean(axis=(2, 3))
hidden = np.maximum(pooled @ P["fc1_weight"].T + P["fc1_bias"], 0.0)
logits = hidden @ P["fc2_weight"].T + P["fc2_bias"]
pi_by_hand = softmax_forward(logits, layer.temperature)[0]
pi_functional = attention_forward(pooled, P["fc1_weight"], P["fc1_bias"], P["fc2_weight"],
                                  P["fc2_bias"], layer.temperature)[0]
print("\nlogits z:\n", logits)
print("pi (by hand):\n", pi_by_hand)
print("max |by hand - layer.attention|      =", np.abs(pi_by_hand - layer.attention).max())
print("max |by hand - attention_forward(...)| =", np.abs(pi_by_hand - pi_functional).max())

# %% [markdown]
# At $\tau = 30$ (the start of training in the paper) the attention is close to uniform; at
# $\tau = 1$ the same logits give a much more selective mix:

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2), sharey=True)
for ax, tau in zip(axes, (30.0, 1.0)):
    layer.temperature = tau
    layer(x)
    for n in range(N):
        ax.bar(np.arange(K) + (n - 1) * 0.27, layer.attention[n], width=0.27, label=f"sample {n}")
    ax.axhline(1 / K, color="grey", ls=":")
    ax.set(xticks=range(K), xticklabels=[f"$W_{k + 1}$" for k in range(K)],
           title=rf"attention $\pi_k(x)$ at $\tau$ = {tau:g}")
axes[0].set_ylabel(r"$\pi_k$")
axes[0].legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# `dynconv_np.diagnostics.attention_diagnostics` summarises the same attention for any network:
# per dynamic layer the entropy of $\pi$ as a fraction of $\log K$ (1 = uniform), the mean largest
# weight, each kernel's mean weight (its share of the gradient), how much $\pi$ varies between
# samples, the scale of the logits the softmax sees ($z / \tau$) and how similar the $K$ kernels
# are. Here for our one layer, at both temperatures:

# %%
for tau in (30.0, 1.0):
    layer.temperature = tau
    print(f"tau = {tau:g}:")
    print(attention_diagnostics(Sequential(layer), x))
    print()
layer.temperature = 1.0   # from here on: the mixes differ more and are easier to see
y = layer(x)

# %% [markdown]
# ## 2. Aggregation: one kernel per sample
#
# $$W(x_n) = \sum_k \pi_{nk} W_k, \qquad b(x_n) = \sum_k \pi_{nk} b_k .$$
#
# With the kernels flattened to rows this is one matrix product,
# $(N \times K)\cdot(K \times C_{out} C_{in} k_h k_w)$; `aggregate_kernels_forward` does exactly
# that. Each aggregated kernel is a convex combination of the $K$ kernels: it lies in their convex
# hull (the paper's insight 1: the sum-to-one constraint keeps the kernel space compact).

# %%
pi = layer.attention
w_n, b_n = aggregate_kernels_forward(pi, P["weight"], P["bias"], backend="numpy")[0]
w_by_hand = np.einsum("nk,koihw->noihw", pi, P["weight"])
print("aggregated kernels:", w_n.shape, " biases:", b_n.shape)
print("max |einsum - aggregate_kernels_forward| =", np.abs(w_by_hand - w_n).max())

fig, axes = plt.subplots(2, max(K, N), figsize=(2.3 * max(K, N), 4.8))
limit = np.abs(P["weight"][:, 0, 0]).max()
for k in range(K):
    axes[0, k].imshow(P["weight"][k, 0, 0], cmap="RdBu", vmin=-limit, vmax=limit)
    axes[0, k].set_title(f"$W_{k + 1}$[0, 0]")
for n in range(N):
    axes[1, n].imshow(w_n[n, 0, 0], cmap="RdBu", vmin=-limit, vmax=limit)
    axes[1, n].set_title(f"$W(x_{n})$[0, 0]\n" + r"$\pi$=" + np.array2string(pi[n], precision=2),
                         fontsize=8)
for ax in axes.ravel():
    ax.set_xticks([])
    ax.set_yticks([])
for ax in axes[1, N:]:
    ax.axis("off")
fig.suptitle("top: the K static kernels (one 5x5 slice); bottom: each sample's aggregated kernel")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 3. Aggregating kernels = mixing outputs (linearity)
#
# For a fixed sample, convolution is linear in the kernel:
# $(\alpha W + \beta V) * x = \alpha (W * x) + \beta (V * x)$. The attention $\pi(x_n)$ is a
# vector of $K$ numbers per sample, so
#
# $$\underbrace{\Bigl(\sum_k \pi_{nk} W_k\Bigr) * x_n + \sum_k \pi_{nk} b_k}_{\text{aggregate, then convolve once}}
#  \;=\; \underbrace{\sum_k \pi_{nk}\,\bigl(W_k * x_n + b_k\bigr)}_{\text{convolve } K \text{ times, then mix}} .$$
#
# Both sides give the same $y$; the left side does one convolution per sample instead of $K$.

# %%
y_aggregate = per_sample_conv2d_forward(x, w_n, b_n, padding=2, backend="numpy")[0]
y_per_kernel = np.stack([conv2d_forward(x, P["weight"][k], P["bias"][k], padding=2,
                                        backend="numpy")[0] for k in range(K)])  # (K, N, ...)
y_mix = np.einsum("nk,knohw->nohw", pi, y_per_kernel)
y_layer = layer(x)
print("max |aggregate-then-convolve - convolve-then-mix| =", np.abs(y_aggregate - y_mix).max())
print("max |aggregate-then-convolve - layer(x)|          =", np.abs(y_aggregate - y_layer).max())

# %% [markdown]
# ### ... but the layer is not linear in $x$
#
# The attention depends on $x$, so the layer as a whole is non-linear even before any activation
# (the paper's point in section 3.1: more representation power at the same width and depth).
# Scaling or adding inputs changes $\pi$:

# %%
x1, x2 = x[:1], x[1:2]
layer(x1)
print("pi(x1)   =", layer.attention[0])
layer(2 * x1)
print("pi(2 x1) =", layer.attention[0])
additivity = np.abs(layer(x1 + x2) - (layer(x1) + layer(x2))).max()
homogeneity = np.abs(layer(2 * x1) - 2 * layer(x1)).max()
static = lambda v: conv2d_forward(v, P["weight"][0], None, padding=2, backend="numpy")[0]
print(f"dynamic: max|f(x1+x2) - f(x1) - f(x2)| = {additivity:.3f},  "
      f"max|f(2 x1) - 2 f(x1)| = {homogeneity:.3f}")
print(f"static (one kernel, no bias): max|f(x1+x2) - f(x1) - f(x2)| = "
      f"{np.abs(static(x1 + x2) - static(x1) - static(x2)).max():.1e}")

# %% [markdown]
# ### Measured: aggregate once vs. convolve $K$ times
#
# The same comparison timed with the NumPy reference backend (one run, on this machine):

# %%
def best_time(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


big = (4, 32, 28, 28) if FAST else (16, 64, 56, 56)
xb = rng.standard_normal(big)
layer_b = DynamicConv2d(big[1], big[1], 3, padding=1, num_kernels=K, temperature=1.0,
                        backend="numpy", dtype=np.float64, rng=1)
pib = softmax_forward(rng.standard_normal((big[0], K)), 1.0)[0]
Pb = layer_b.params
repeats = 2 if FAST else 5


def aggregate_then_convolve():
    wb, bb = aggregate_kernels_forward(pib, Pb["weight"], Pb["bias"], backend="numpy")[0]
    return per_sample_conv2d_forward(xb, wb, bb, padding=1, backend="numpy")[0]


def convolve_then_mix():
    outs = [conv2d_forward(xb, Pb["weight"][k], Pb["bias"][k], padding=1, backend="numpy")[0]
            for k in range(K)]
    return np.einsum("nk,knohw->nohw", pib, np.stack(outs))


t_aggregate = best_time(aggregate_then_convolve, repeats)
t_mix = best_time(convolve_then_mix, repeats)
print(f"x {big}, 3x3 conv, K={K}: aggregate-then-convolve {1e3 * t_aggregate:.1f} ms, "
      f"convolve-then-mix {1e3 * t_mix:.1f} ms, ratio {t_mix / t_aggregate:.1f}x")
print("same result:", np.allclose(aggregate_then_convolve(), convolve_then_mix()))

# %% [markdown]
# ## 4. Cost accounting: where "about 4% more MAdds" comes from
#
# Count multiply-adds (MAdds) per sample for a convolution with $C_{in} \to C_{out}$ channels,
# $g$ groups, a $k_h \times k_w$ kernel, input $H \times W$ and output $H' \times W'$:
#
# | part | MAdds per sample |
# |---|---|
# | the convolution itself (static and dynamic alike) | $C_{out} H' W' \cdot \frac{C_{in}}{g} k_h k_w$ |
# | attention: pooling + FC1 + FC2 | $C_{in} H W + C_{in} d + d K$ |
# | aggregation of kernels and biases | $K\,(C_{out}\frac{C_{in}}{g} k_h k_w + C_{out})$ |
# | (alternative: $K$ convolutions, then mix) | $K \cdot$ convolution $+\ K C_{out} H' W'$ |
#
# The aggregation costs $K$ MAdds per kernel weight, while the convolution costs $H' W'$ MAdds
# per kernel weight. So the relative extra cost of aggregation is about $K / (H' W')$: tiny on
# large feature maps, noticeable on the $7 \times 7$ maps at the end of a network. The attention's
# pooling costs one MAdd per input value; the convolution costs $C_{out} k_h k_w / g$ per input
# value (times the stride's reduction), so pooling is cheap unless the convolution is depthwise.
#
# Below: the extra cost as a share of the convolution for three typical MobileNet layers over the
# feature map size.

# %%
def conv_madds(c_in, c_out, k, groups, h_out):
    return c_out * h_out * h_out * (c_in // groups) * k * k


def dynamic_extra_madds(c_in, c_out, k, groups, h_in, h_out, K=4, reduction=4, min_hidden=4):
    hidden = max(c_in // reduction, min_hidden)
    attention = c_in * h_in * h_in + c_in * hidden + hidden * K
    aggregation = K * (c_out * (c_in // groups) * k * k + c_out)
    return attention, aggregation


layers = {"1x1 conv 96->576": (96, 576, 1, 1),
          "3x3 conv 64->64": (64, 64, 3, 1),
          "5x5 depthwise 576": (576, 576, 5, 576)}
sizes = np.array([7, 14, 28, 56, 112])
fig, ax = plt.subplots(figsize=(6.5, 3.8))
for label, (c_in, c_out, k, groups) in layers.items():
    shares = []
    for size in sizes:
        attention, aggregation = dynamic_extra_madds(c_in, c_out, k, groups, size, size)
        shares.append(100 * (attention + aggregation) / conv_madds(c_in, c_out, k, groups, size))
    ax.loglog(sizes, shares, marker="o", label=label)
    print(f"{label:<18}: extra MAdds at H=W=7: {shares[0]:6.2f}%,  at 56: {shares[3]:6.3f}%")
ax.set(xlabel="feature map size H = W (stride 1)", ylabel="extra MAdds, % of the convolution",
       title=f"dynamic convolution's extra cost (K={K})")
ax.set_xticks(sizes, [str(s) for s in sizes])
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# Summed over a whole network, most MAdds are spent on the large early feature maps, where the
# extra cost is small. For MobileNetV3-Small at $224 \times 224$ the paper reports
# 66M $\to$ 68.5M MAdds (about +4%), with about 1.7x the parameters (every convolution but the
# first holds $K = 4$ kernels). `dynconv_np.models` builds the paper's networks and counts their
# costs with the formulas above (its conventions are in `dynconv_np.models.profile`; they count
# the attention's pooling as one MAdd per input value, which is most of the "attention" column,
# and they need not match the paper's unpublished conventions to the last percent):

# %%
print(summary_table(["mobilenet_v3_small", "mobilenet_v2_1.0", "resnet18"], 224, K))

# %% [markdown]
# **Summary.** The attention branch is a tiny squeeze-and-excitation network ending in a softmax
# with temperature. Because convolution is linear in its kernel, convolving with
# $\sum_k \pi_k W_k$ gives exactly the mix of the $K$ outputs, for one convolution's price plus
# $K$ MAdds per kernel weight. Attention and aggregation add a few percent of MAdds; the $K$-fold
# parameters are the real price. Notebook 3 derives the backward pass through all of it.
