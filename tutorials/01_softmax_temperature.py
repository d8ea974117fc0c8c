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
# # 1. Softmax with temperature
#
# Dynamic convolution (Chen et al., CVPR 2020) mixes $K$ convolution kernels with attention
# weights $\pi_k(x)$ that must be non-negative and sum to one. The paper gets them from a
# softmax *with a temperature* $\tau$ (section 3.3):
#
# $$\pi_k = \frac{\exp(z_k/\tau)}{\sum_{j=1}^{K} \exp(z_j/\tau)}, \qquad k = 1, \dots, K.$$
#
# This notebook answers four questions:
#
# 1. What does $\tau$ do to $\pi$?
# 2. What is the Jacobian $\partial \pi / \partial z$, derived by hand, and how does the backward
#    pass use it? We check it with `dynconv_np.gradcheck`.
# 3. How do we compute $\pi$ without overflow for $\tau$ from $10^{-3}$ to $10^{4}$ and logits up
#    to $\pm 10^4$?
# 4. Why does the paper anneal $\tau$ from 30 down to 1 during the first epochs?
#
# Set the environment variable `DYNCONV_TUTORIAL_FAST=1` to run every notebook of this folder with
# small settings (the test suite does).

# %%
import os

import matplotlib.pyplot as plt
import numpy as np

from dynconv_np.diagnostics import collect_attention
from dynconv_np.functional import softmax_backward, softmax_forward
from dynconv_np.gradcheck import gradcheck
from dynconv_np.models.small import small_cnn
from dynconv_np.nn import DynamicConv2d, Sequential
from dynconv_np.train import load_digits

FAST = os.environ.get("DYNCONV_TUTORIAL_FAST", "0") == "1"
rng = np.random.default_rng(0)
np.set_printoptions(precision=4, suppress=True)

# %% [markdown]
# ## 1. What the temperature does
#
# Dividing the logits by $\tau$ stretches ($\tau < 1$) or squeezes ($\tau > 1$) their differences
# before the exponential. Two limits follow directly from the formula:
#
# * $\tau \to \infty$: every $z_k/\tau \to 0$, so $\pi_k \to 1/K$ (uniform). To first order,
#   $\pi_k \approx \frac{1}{K}\left(1 + \frac{z_k - \bar z}{\tau}\right)$ with $\bar z$ the mean logit.
# * $\tau \to 0$: the largest logit dominates, $\pi \to$ one-hot at $\arg\max_k z_k$.
#
# A convenient summary of "how spread out" $\pi$ is, is its entropy
# $H(\pi) = -\sum_k \pi_k \log \pi_k$, which is $\log K$ for the uniform distribution and 0 for a
# one-hot one.

# %%
z = np.array([[2.0, 1.0, 0.5, -1.0]])            # one sample, K = 4 logits
K = z.shape[1]
taus = np.logspace(-2, 3, 60 if FAST else 400)
pis = np.concatenate([softmax_forward(z, tau)[0] for tau in taus])   # (len(taus), K)


def entropy(p):
    """H(p) = -sum_k p_k log p_k along the last axis (0 log 0 = 0)."""
    return -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=-1)


fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
for k in range(K):
    axes[0].semilogx(taus, pis[:, k], label=f"$z_{k + 1}$ = {z[0, k]:+.1f}")
axes[0].axhline(1 / K, color="grey", ls=":", label="1/K")
axes[0].axvline(30, color="k", ls="--", lw=0.8)
axes[0].text(30, 0.9, r" $\tau$=30", fontsize=9)
axes[0].set(xlabel=r"temperature $\tau$", ylabel=r"$\pi_k$", title=r"attention weights over $\tau$")
axes[0].legend(fontsize=8)
axes[1].semilogx(taus, entropy(pis), label=r"$H(\pi)$")
axes[1].axhline(np.log(K), color="grey", ls=":", label=r"$\log K$ (uniform)")
axes[1].set(xlabel=r"temperature $\tau$", ylabel="entropy (nats)", title="entropy of the attention")
axes[1].legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# The two limits, checked numerically, together with the first-order formula for large $\tau$:

# %%
for tau in (1e-3, 1.0, 30.0, 1e4):
    pi = softmax_forward(z, tau)[0][0]
    first_order = (1 + (z[0] - z[0].mean()) / tau) / K
    print(f"tau = {tau:>7g}: pi = {pi},  sum = {pi.sum():.15f},  "
          f"|pi - first-order| = {np.abs(pi - first_order).max():.1e}")

# %% [markdown]
# At $\tau = 10^4$ the first-order formula is accurate to about $2 \cdot 10^{-9}$ (the error is
# $O(1/\tau^2)$); at $\tau = 10^{-3}$ the attention is exactly one-hot in floating point.

# %% [markdown]
# ## 2. The Jacobian, by hand
#
# Write $s = z/\tau$ and $\pi = \operatorname{softmax}(s)$. For one row,
#
# $$\frac{\partial \pi_i}{\partial s_j}
#   = \frac{\delta_{ij} e^{s_i} \sum_l e^{s_l} - e^{s_i} e^{s_j}}{\left(\sum_l e^{s_l}\right)^2}
#   = \pi_i (\delta_{ij} - \pi_j),$$
#
# so $\partial \pi / \partial s = \operatorname{diag}(\pi) - \pi \pi^\top$ and, with
# $\partial s / \partial z = 1/\tau$,
#
# $$J = \frac{\partial \pi}{\partial z} = \frac{1}{\tau}\left(\operatorname{diag}(\pi) - \pi\pi^\top\right).$$
#
# The backward pass never builds $J$. Given the upstream gradient $g = \partial L/\partial \pi$ it
# needs the vector-Jacobian product $J^\top g$; $J$ is symmetric, and
#
# $$\frac{\partial L}{\partial z} = J^\top g = \frac{1}{\tau}\, \pi \odot \left(g - \langle g, \pi\rangle \mathbf 1\right).$$
#
# That one line is `softmax_backward`. It costs $O(K)$ instead of $O(K^2)$.

# %%
tau = 2.5
pi, cache = softmax_forward(z, tau)
p = pi[0]
J = (np.diag(p) - np.outer(p, p)) / tau

# The Jacobian by central differences, column by column.
eps = 1e-6
J_numerical = np.empty((K, K))
for j in range(K):
    step = np.zeros_like(z)
    step[0, j] = eps
    J_numerical[:, j] = (softmax_forward(z + step, tau)[0][0]
                         - softmax_forward(z - step, tau)[0][0]) / (2 * eps)
print("J (by hand):\n", J)
print("max |J - J_numerical| =", np.abs(J - J_numerical).max())

g = rng.standard_normal((1, K))
print("J^T g          :", (J.T @ g[0]))
print("softmax_backward:", softmax_backward(g, cache)[0])

# %% [markdown]
# ### Why the checker never uses an all-ones upstream gradient
#
# Every row of $J$ sums to zero: $\sum_j \pi_i(\delta_{ij} - \pi_j) = \pi_i - \pi_i = 0$ (the
# outputs always sum to one, so no change of $z$ can change their sum). Backpropagating
# $g = \mathbf 1$ therefore gives exactly zero, whatever the backward pass computes, as long as
# it multiplies by $\pi$ somewhere. A test that uses $g = \mathbf 1$ proves nothing. The
# gradient checker uses a random normal $g$.

# %%
ones = np.ones((1, K))
print("J^T 1 =", softmax_backward(ones, cache)[0], "(zero: an all-ones test proves nothing)")


def wrong_softmax_backward(dpi, cache):
    """A plausible bug: forgets the 1/tau factor."""
    pi = cache["pi"]
    return pi * (dpi - np.sum(dpi * pi, axis=-1, keepdims=True))


print("wrong backward with g = 1:", wrong_softmax_backward(ones, cache)[0], "(also zero!)")

# %% [markdown]
# ### The backward, checked with `dynconv_np.gradcheck`
#
# `gradcheck(forward, inputs, backward)` draws a random upstream gradient $G$, forms
# $L(z) = \sum \operatorname{softmax}(z/\tau) \odot G$, and compares `backward(G)` with central
# differences $\bigl(L(z + \epsilon e_i) - L(z - \epsilon e_i)\bigr)/2\epsilon$ element by element
# (float64, $\epsilon = 10^{-6}$). The `directional` mode checks a single random directional
# derivative $v^\top J u$ instead, at the price of two evaluations.

# %%
z_batch = rng.standard_normal((5, K)) * 3
for tau in (0.5, 1.0, 30.0):
    report = gradcheck(lambda z: softmax_forward(z, tau), {"z": z_batch}, softmax_backward)
    print(f"tau = {tau}:")
    print(report)
print(gradcheck(lambda z: softmax_forward(z, 30.0), {"z": z_batch}, softmax_backward,
                mode="directional"))

# %% [markdown]
# The buggy backward above (no $1/\tau$) is right at $\tau = 1$, so a test that only uses
# $\tau = 1$ would pass it. At $\tau = 30$ the checker catches it and names the worst element:

# %%
print(gradcheck(lambda z: softmax_forward(z, 1.0), {"z": z_batch}, wrong_softmax_backward,
                raise_exception=False))
print(gradcheck(lambda z: softmax_forward(z, 30.0), {"z": z_batch}, wrong_softmax_backward,
                raise_exception=False))

# %% [markdown]
# ## 3. Numerical stability at tiny and huge $\tau$
#
# The textbook formula `exp(z / tau) / exp(z / tau).sum()` breaks in two ways:
#
# * **overflow**: $e^{s}$ is `inf` in float64 for $s > 709.8$, e.g. $z = 10^4$, $\tau = 1$; then
#   $\infty/\infty$ = NaN;
# * **underflow**: if every $s_k < -745$, all exponentials are 0 and $0/0$ = NaN.
#
# The fix uses the shift invariance $\operatorname{softmax}(s) = \operatorname{softmax}(s - c)$
# for any constant $c$. With $c = \max_k s_k$ every exponent is $\le 0$ (no overflow) and the
# largest term is exactly $e^0 = 1$, so the denominator is $\ge 1$ (no $0/0$). `softmax_forward`
# does exactly that. Below we sweep $\tau \in [10^{-3}, 10^4]$ and logit scales up to $10^4$ and
# count the rows that come out non-finite or not summing to one.

# %%
def naive_softmax(z, tau):
    e = np.exp(z / tau)
    return e / e.sum(axis=-1, keepdims=True)


tau_grid = np.logspace(-3, 4, 8)
scale_grid = np.logspace(0, 4, 5)
z_unit = rng.standard_normal((200, K))
bad = {"naive": np.zeros((len(scale_grid), len(tau_grid))),
       "stable": np.zeros((len(scale_grid), len(tau_grid)))}
with np.errstate(over="ignore", invalid="ignore", under="ignore"):
    for a, scale in enumerate(scale_grid):
        for b, tau in enumerate(tau_grid):
            # shift every row by -scale as well, so that underflow shows up too
            logits = z_unit * scale - scale
            for name, pi in (("naive", naive_softmax(logits, tau)),
                             ("stable", softmax_forward(logits, tau)[0])):
                ok = np.all(np.isfinite(pi), axis=1) & np.isclose(pi.sum(axis=1), 1.0)
                bad[name][a, b] = 100 * (1 - ok.mean())

fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), sharey=True)
for ax, name in zip(axes, bad):
    image = ax.imshow(bad[name], origin="lower", cmap="Reds", vmin=0, vmax=100, aspect="auto")
    ax.set_xticks(range(len(tau_grid)), [f"{t:g}" for t in tau_grid], rotation=45)
    ax.set_yticks(range(len(scale_grid)), [f"{s:g}" for s in scale_grid])
    ax.set(xlabel=r"$\tau$", title=f"{name} softmax\n% of rows NaN/inf or not summing to 1")
    for (a, b), value in np.ndenumerate(bad[name]):
        ax.text(b, a, f"{value:.0f}", ha="center", va="center", fontsize=8)
axes[0].set_ylabel("logit scale")
fig.colorbar(image, ax=axes, shrink=0.8)
plt.show()
print("bad rows, naive :", int((bad["naive"] > 0).sum()), "of", bad["naive"].size, "settings")
print("bad rows, stable:", int((bad["stable"] > 0).sum()), "of", bad["stable"].size, "settings")

# %% [markdown]
# The backward pass needs no extra care: it only uses $\pi \in [0, 1]$ and $g$, and the factor
# $1/\tau$ is finite for every $\tau > 0$. At the extremes of the range the gradient is still
# finite:

# %%
extreme = np.array([[1e4, -1e4, 0.0, 5e3]])
for tau in (1e-3, 1e4):
    pi, cache = softmax_forward(extreme, tau)
    dz = softmax_backward(rng.standard_normal((1, K)), cache)
    print(f"tau = {tau:g}: pi = {pi[0]}, max |dz| = {np.abs(dz).max():.2e}, all finite: "
          f"{np.isfinite(pi).all() and np.isfinite(dz).all()}")

# %% [markdown]
# ## 4. Why anneal $\tau$ from 30 to 1?
#
# The aggregated kernel is $W(x) = \sum_k \pi_k(x) W_k$, and its gradient with respect to each
# kernel is scaled by the attention (see notebook 3):
#
# $$\frac{\partial L}{\partial W_k} = \sum_n \pi_k(x_n)\, \frac{\partial L}{\partial W(x_n)}.$$
#
# The paper's argument (insight 2 of section 3.3): a kernel whose attention is near zero for
# every sample gets almost no gradient and stops learning. If the logits $z$ start with a large
# spread, the softmax at $\tau = 1$ is already peaked and some kernels are starved from the first
# step; with $\tau = 30$ every $\pi_k \approx 1/K$ and all $K$ kernels get a comparable share. The
# paper then lowers $\tau$ linearly to 1 over its first 10 epochs, so that the attention can
# become input-dependent.
#
# How large is that spread at the start with *this* library's layers? We build the demo's
# dynamic network (`models.small.small_cnn`, two dynamic layers) for a few seeds at $\tau = 1$,
# run it on the embedded digits, and read each layer's attention with
# `dynconv_np.diagnostics.collect_attention`. At $\tau = 1$, $\log \pi_k = z_k - \log\sum_j e^{z_j}$,
# so the logits are recovered up to one constant per image, which the softmax ignores. A wider
# layer (64 channels, on unit-variance input) is measured too.

# %%
digits = load_digits().x_test
measured = []                                       # (name, logits) per layer, at tau = 1
for seed in range(2 if FAST else 5):
    net = small_cnn(width=2, dynamic=True, temperature=1.0, rng=seed)
    for index, pi in enumerate(collect_attention(net, digits)):
        measured.append((f"demo net, seed {seed}, layer {index + 1}", np.log(pi)))
wide = Sequential(DynamicConv2d(64, 64, 3, padding=1, temperature=1.0, rng=0))
x_wide = rng.standard_normal((256, 64, 8, 8)).astype(np.float32)
measured.append(("64 channels, N(0, 1) input", np.log(collect_attention(wide, x_wide)[0])))

print(f"{'layer at initialisation':<32}{'logit std':>10}{'entropy / log K':>17}"
      f"{'least-used share':>18}{'most-used share':>17}")
for name, z in measured:
    pi = softmax_forward(z, 1.0)[0]
    share = pi.mean(axis=0)
    print(f"{name:<32}{z.std(axis=1).mean():>10.3f}{entropy(pi).mean() / np.log(K):>17.3f}"
          f"{share.min():>18.3f}{share.max():>17.3f}")
stds = [z.std(axis=1).mean() for _, z in measured]
print(f"\nlogit spread at initialisation: {min(stds):.2f} to {max(stds):.2f} (std over k, mean "
      f"over images); the smallest share of any kernel at tau = 1: "
      f"{min(softmax_forward(z, 1.0)[0].mean(axis=0).min() for _, z in measured):.3f} "
      f"(uniform: {1 / K})")

# %% [markdown]
# So with this initialisation (PyTorch's uniform fan-in rule for both FCs of the branch), the
# logits start small, and at $\tau = 1$ the attention is already close to uniform for every
# image: no kernel is starved at the first step (the table's least-used share), and $\tau = 30$
# only makes the uniformity exact. The starvation argument needs logits with a larger spread.
# Below, the gradient shares and the entropy over $\tau$ for the first measured layer's logits as
# they are (solid) and ten times larger (dashed), a spread at which $\tau = 1$ does starve kernels.

# %%
z0 = measured[0][1]
cases = {"as initialised": z0, "logits x 10": 10 * z0}
tau_sweep = np.logspace(-1, 2, 30 if FAST else 120)
schedule_epochs = np.arange(0, 21)
schedule = np.where(schedule_epochs < 10, 30 - (30 - 1) * schedule_epochs / 10, 1.0)

fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
for (label, z), style in zip(cases.items(), ("-", "--")):
    shares = np.array([softmax_forward(z, tau)[0].mean(axis=0) for tau in tau_sweep])
    entropies = [entropy(softmax_forward(z, tau)[0]).mean() for tau in tau_sweep]
    axes[0].semilogx(tau_sweep, shares.min(axis=1), style, color="C0",
                     label=f"least-used kernel, {label}")
    axes[0].semilogx(tau_sweep, shares.max(axis=1), style, color="C1",
                     label=f"most-used kernel, {label}")
    axes[1].semilogx(tau_sweep, entropies, style, color="C2", label=label)
axes[0].axhline(1 / K, color="grey", ls=":", label="1/K")
axes[0].set(xlabel=r"$\tau$", ylabel=r"mean $\pi_k$ = share of $\partial L/\partial W_k$",
            title="gradient share per kernel")
axes[0].legend(fontsize=7)
axes[1].axhline(np.log(K), color="grey", ls=":")
axes[1].set(xlabel=r"$\tau$", ylabel="mean entropy (nats)", title="how uniform the attention is")
axes[1].legend(fontsize=8)
axes[2].plot(schedule_epochs, schedule, marker="o")
axes[2].set(xlabel="epoch", ylabel=r"$\tau$", title="the paper's schedule: 30 -> 1 over 10 epochs")
fig.tight_layout()
plt.show()

for label, z in cases.items():
    for tau in (1.0, 30.0):
        pi = softmax_forward(z, tau)[0]
        print(f"{label:<15} tau = {tau:>4}: gradient share per kernel = {pi.mean(axis=0)}, "
              f"entropy / log K = {entropy(pi).mean() / np.log(K):.3f}")

# %% [markdown]
# Uniform attention has a cost of its own, visible in the same formula: when $\pi_k(x_n) = 1/K$
# for every image, every kernel receives the *same* gradient, so the $K$ kernels move together
# and drift towards copies of each other, and copies cannot be mixed into different kernels.
# A high temperature therefore belongs at the very start only: the paper's 10 of about 300
# epochs; this library's demo anneals over the first 10 % of its run, and notebook 5 measures how
# much closer to copies the kernels end up after an anneal over a third of the run.
#
# The temperature also scales the gradient that reaches the attention branch itself: from
# $J = \frac1\tau(\operatorname{diag}\pi - \pi\pi^\top)$, the Jacobian's size is largest when
# $\tau$ is comparable to the spread of the logits. It shrinks like $1/\tau$ for large $\tau$
# (nearly uniform $\pi$) and also vanishes as $\tau \to 0$ (saturated one-hot $\pi$, where
# $\operatorname{diag}\pi - \pi\pi^\top \to 0$).

# %%
fig, ax = plt.subplots(figsize=(5.5, 3.6))
for (label, z), style in zip(cases.items(), ("-", "--")):
    jacobian_norm = []
    for tau in tau_sweep:
        pi = softmax_forward(z[:64], tau)[0]
        jacobian_norm.append(np.mean([np.linalg.norm((np.diag(p) - np.outer(p, p)) / tau)
                                      for p in pi]))
    ax.loglog(tau_sweep, jacobian_norm, style, color="C3", label=label)
    print(f"{label:<15} ||J||_F at tau=1: {jacobian_norm[np.argmin(abs(tau_sweep - 1))]:.3f}, "
          f"at tau=30: {jacobian_norm[np.argmin(abs(tau_sweep - 30))]:.4f}")
ax.set(xlabel=r"$\tau$", ylabel=r"mean $\|J\|_F$", title=r"size of $\partial\pi/\partial z$")
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# **Summary.** $\tau$ interpolates between a uniform average of the kernels ($\tau \to \infty$)
# and picking one kernel ($\tau \to 0$). The backward pass is
# $\partial L/\partial z = \pi \odot (g - \langle g, \pi\rangle)/\tau$, checked above against
# finite differences. Subtracting the row maximum keeps the forward finite over the whole range.
# A large $\tau$ early in training keeps every kernel's share of the gradient even, which matters
# when the logits have a large spread; with this library's initialisation they start small, so
# the attention is near uniform at $\tau = 1$ already. Uniform attention gives the kernels the
# same gradient, so the high-$\tau$ phase should be short. Notebook 5 trains with several schedules.
