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
# # 7. The dynamic convolution family
#
# Dynamic convolution (Chen et al., CVPR 2020; notebooks 1 to 5) mixes $K$ kernels with an
# attention computed from the input. Four relatives change *what* the attention is over:
#
# | layer | paper | attends over | attention of one sample |
# |---|---|---|---|
# | `DynamicConv2d` | Chen et al., CVPR 2020 | $K$ kernels | $\pi \in \Delta^{K}$ (softmax, sums to 1) |
# | `CondConv2d` | Yang et al., NeurIPS 2019 | $E$ experts | $r \in (0, 1)^E$ (independent sigmoids) |
# | `ODConv2d` | Li, Zhou and Yao, ICLR 2022 | input channels, kernel taps, output filters and kernels | $\alpha_c \in (0,1)^{C_{in}}$, $\alpha_s \in (0,1)^{k_h k_w}$, $\alpha_f \in (0,1)^{C_{out}}$, $\alpha_w \in \Delta^K$ |
# | `DCDConv2d` | Li et al., ICLR 2021 | a latent $L \times L$ matrix (plus a channel scale) | $\Phi \in \mathbb R^{L \times L}$, $\lambda \in [0, 2]^{C_{out}}$ |
# | `FDYConv2d` | Nam et al., Interspeech 2022 | $K$ kernels, separately per frequency bin | $\pi \in (\Delta^{K})^{F'}$, one softmax per output column |
#
# This notebook puts them side by side: what each computes (the formula), what its backward
# pass adds to an ordinary convolution's, what it costs, a gradient check of each, and a small
# training comparison on the embedded digits. Every layer lives in `dynconv_np.nn`, its math in
# `dynconv_np.functional` (one module per variant, each docstring with the derivation and where
# the official code departs from the paper).

# %%
import os
import time

import matplotlib.pyplot as plt
import numpy as np

from dynconv_np import gradcheck
from dynconv_np.functional import per_sample_conv2d_backward, per_sample_conv2d_forward
from dynconv_np.models.profile import profile
from dynconv_np.nn import (BatchNorm2d, CondConv2d, Conv2d, DCDConv2d, DynamicConv2d, FDYConv2d,
                           GlobalAvgPool2d, Linear, ODConv2d, ReLU, Sequential)
from dynconv_np.nn import condconv, dcd, fdy, odconv
from dynconv_np.train import evaluate, load_digits, train_step
from dynconv_np.train.loop import minibatches
from dynconv_np.train.optim import SGD

FAST = os.environ.get("DYNCONV_TUTORIAL_FAST", "0") == "1"
BACKEND = "numba"   # the default; on tiny maps the engine runs each call on one thread
K = 4               # kernels / experts for the variants that have them
np.set_printoptions(precision=3, suppress=True)


def make(variant, c_in, c_out, stride=1, rng=0, dtype=np.float32):
    """One 3 x 3 layer ('same' padding) of each kind, PyTorch's argument names throughout."""
    common = dict(stride=stride, padding=1, backend=BACKEND, dtype=dtype, rng=rng)
    if variant == "static":
        return Conv2d(c_in, c_out, 3, **common)
    if variant == "DynamicConv2d":
        return DynamicConv2d(c_in, c_out, 3, num_kernels=K, temperature=1.0, **common)
    if variant == "CondConv2d":
        return CondConv2d(c_in, c_out, 3, num_experts=K, **common)
    if variant == "ODConv2d":
        return ODConv2d(c_in, c_out, 3, num_kernels=K, temperature=1.0, **common)
    if variant == "DCDConv2d":
        return DCDConv2d(c_in, c_out, 3, **common)       # padding=1 is its 'same' padding
    if variant == "FDYConv2d":
        return FDYConv2d(c_in, c_out, 3, num_kernels=K, **common)   # the official tau = 31
    raise ValueError(variant)


VARIANTS = ["DynamicConv2d", "CondConv2d", "ODConv2d", "DCDConv2d", "FDYConv2d"]

# %% [markdown]
# ## 1. What each attends over
#
# One layer of each kind, $C_{in} = 8 \to C_{out} = 16$, on a batch of two random $8 \times 8$
# inputs. Every layer keeps the last forward's attention in `layer.attention` (a copy):

# %%
x_demo = np.random.default_rng(1).standard_normal((2, 8, 8, 8)).astype(np.float32)
demo = {}
for variant in VARIANTS:
    layer = make(variant, 8, 16)
    y = layer(x_demo)
    demo[variant] = layer
    attention = layer.attention
    shapes = ({key: value.shape for key, value in attention.items()}
              if isinstance(attention, dict) else attention.shape)
    print(f"{variant:<14} y {y.shape}   attention {shapes}")

# %% [markdown]
# * `DynamicConv2d`: $\pi$ (N, K), each row sums to 1;
# * `CondConv2d`: $r$ (N, E), each entry in (0, 1) on its own: the experts are *not* competing;
# * `ODConv2d`: four attentions from one branch, one per dimension of the kernel space;
# * `DCDConv2d`: $\lambda$ (N, C_out) and the $L \times L$ matrix $\Phi$ (N, L, L), here
#   $L = \lfloor\sqrt{C_{in}}\rfloor$;
# * `FDYConv2d`: $\pi$ (N, K, F') - a softmax over the kernels for every output column (the
#   frequency axis of a spectrogram; on images, simply the width).
#
# For the first sample:

# %%
fig, axes = plt.subplots(1, 5, figsize=(18, 3.4),
                         gridspec_kw={"width_ratios": [1, 1, 3, 1.2, 1.6]})
axes[0].bar(range(K), demo["DynamicConv2d"].attention[0])
axes[0].set(title=r"DyConv: $\pi$, sums to 1", xlabel="kernel k", xticks=range(K))
axes[1].bar(range(K), demo["CondConv2d"].attention[0], color="C1")
axes[1].set(title=r"CondConv: $r$, each in (0, 1)", xlabel="expert e", xticks=range(K),
            ylim=(0, 1))
start = 0
for index, (head, alpha) in enumerate(demo["ODConv2d"].attention.items()):
    positions = start + np.arange(alpha.shape[1])
    axes[2].bar(positions, alpha[0], color=f"C{index + 2}", label=head)
    start = positions[-1] + 2
axes[2].set(title=r"ODConv: $\alpha_c, \alpha_f, \alpha_s, \alpha_w$", xticks=[],
            ylim=(0, 1.3))
axes[2].legend(fontsize=8, ncol=4, loc="upper center")
image = axes[3].imshow(demo["DCDConv2d"].attention["phi"][0], cmap="coolwarm")
axes[3].set(title=r"DCD: $\Phi$ ($L \times L$)", xticks=[], yticks=[])
fig.colorbar(image, ax=axes[3], shrink=0.8)
image = axes[4].imshow(demo["FDYConv2d"].attention[0], cmap="viridis", aspect="auto")
axes[4].set(title=r"FDY: $\pi$ per column", xlabel="output column f", ylabel="kernel k",
            yticks=range(K))
fig.colorbar(image, ax=axes[4], shrink=0.8)
fig.tight_layout()
plt.show()
fdy_pi = demo["FDYConv2d"].attention
print(f"FDY at its official tau = {demo['FDYConv2d'].temperature:g}: pi differs from 1/K by at "
      f"most {np.abs(fdy_pi - 1 / K).max():.4f} here; DyConv at tau = 1: by at most "
      f"{np.abs(demo['DynamicConv2d'].attention - 1 / K).max():.4f}")

# %% [markdown]
# The temperature sets how far from uniform an untrained layer's attention starts (notebook 1):
# FDY's official $\tau = 31$ (kept constant in its code) starts it close to $1/K$ in every
# column, as the dynamic convolution paper's $\tau = 30$ does before annealing.

# %% [markdown]
# ## 2. The formulas
#
# With $p = \operatorname{GAP}(x)$ the channel means, $*$ the convolution and $\odot$ an
# element-wise product broadcast along the named axis:
#
# **Dynamic convolution** (notebook 2): $\pi = \operatorname{softmax}\bigl(W_2\,\mathrm{relu}(W_1 p
# + b_1) + b_2\bigr)/\tau$, $\quad y = \bigl(\sum_k \pi_k W_k\bigr) * x + \sum_k \pi_k b_k$.
#
# **CondConv**: $r = \sigma(R\,p + b_r)$ (one FC, no hidden layer, no temperature),
# $\quad y = \bigl(\sum_e r_e W_e\bigr) * x + \sum_e r_e b_e$. In EfficientNet-CondConv one $r$,
# computed from a block's input, routes all the block's convolutions (`CondConvBlock`).
#
# **ODConv**: $h = \mathrm{relu}(\mathrm{BN}(F p))$, four heads
# $\alpha_c, \alpha_f, \alpha_s = \sigma(\cdot / \tau)$, $\alpha_w = \operatorname{softmax}(\cdot/\tau)$,
#
# $$y = \alpha_f \odot \Bigl(\bigl(\alpha_s \odot \textstyle\sum_k \alpha_{w,k} W_k\bigr) *
#   (\alpha_c \odot x)\Bigr),$$
#
# the official code's form of the paper's $\bigl(\sum_k \alpha_{w,k}\, \alpha_f \odot \alpha_c
# \odot \alpha_s \odot W_k\bigr) * x$: the shared factors $\alpha_c$ and $\alpha_f$ move onto
# the input and the output by linearity.
#
# **DCD** (dynamic channel fusion): $W(x) = \Lambda(x) W_0 + P\,\Phi(x)\,Q^\top$, computed as the
# official `conv_dy` does, with the latent features and BatchNorms in the branch:
#
# $$z = \mathrm{BN}_1(Q^\top x), \qquad y = \lambda(x) \odot (W_0 * x) + P\bigl(z +
#   \mathrm{BN}_2(\Phi(x)\, z)\bigr)$$
#
# ($Q^\top$, $\Phi$, $P$ as $1 \times 1$ convolutions). Its dynamic part is an $L \times L$
# matrix, $L = \lfloor \sqrt{C_{in}} \rfloor$, instead of $K$ full kernels.
#
# **FDY** (frequency dynamic): for x (N, C, T, F) the attention is computed from the time means
# and differs per frequency $f$: $W(f) = \sum_k \pi_k(f) W_k$, which by linearity is
#
# $$y[:, :, t, f] = \sum_k \pi_k(f)\, (W_k * x + b_k)[:, :, t, f]:$$
#
# $K$ convolutions whose outputs are mixed column by column.

# %% [markdown]
# ## 3. The backward passes: what is new
#
# Each variant's backward is its stages' backward passes in reverse (the derivations are in
# `dynconv_np.functional.<variant>`). Beyond an ordinary convolution's $dx$, $dW$:
#
# * **DyConv, CondConv**: the mixing weights get $\partial L/\partial \pi_k = \langle dW_n, W_k
#   \rangle + \langle db_n, b_k\rangle$ (inner products with the per-sample kernel gradient), the
#   kernels $dW_k = \sum_n \pi_{n,k}\, dW_n$; then the softmax' (with its $1/\tau$) or the
#   sigmoid' $r(1 - r)$; and $x$ gets a second term through the pooling,
#   $dx \mathrel{+}= dp / (HW)$. A routing shared by several layers sums their $dr$.
# * **ODConv**: the product rule over the four factors, each taking the gradient with the other
#   three held (below: $V = \sum_k \alpha_{w,k} W_k$, $\tilde W = \alpha_s \odot V$,
#   $\tilde x = \alpha_c \odot x$, $u = \tilde W * \tilde x$, $y = \alpha_f \odot u$):
#
# $$\begin{aligned}
# d\alpha_f[o] &= \textstyle\sum_{h,w} dy[o]\, u[o], & du &= \alpha_f \odot dy,\\
# d\tilde x,\ d\tilde W &= \text{conv}'(du), & d\alpha_c[c] &= \textstyle\sum_{h,w} d\tilde x[c]\, x[c],\\
# d\alpha_s[i,j] &= \textstyle\sum_{o,c} d\tilde W[o,c,i,j]\, V[o,c,i,j], & dV &= \alpha_s \odot d\tilde W,\\
# d\alpha_{w,k} &= \langle dV, W_k\rangle, & dW_k &= \textstyle\sum_n \alpha_{w,n,k}\, dV_n,
# \end{aligned}$$
#
#   then each head's activation', the ReLU', a *training-mode* BatchNorm' that couples the
#   samples of a batch, and $dx = \alpha_c \odot d\tilde x + dp/(HW)$.
# * **DCD**: $d\lambda[o] = \sum_{h,w} dy[o]\,(W_0 * x)[o]$ and $d\Phi_n = \sum_{h,w} du_n\,
#   z_n^\top$ (a per-pixel outer product), with $u = \Phi z$; the two BatchNorms' backward and
#   the $1 \times 1$ convolutions' weight gradients give $dQ$ and $dP$.
# * **FDY**: $d\pi[k, f] = \sum_{o,t} dy[o,t,f]\, o_k[o,t,f]$ (each kernel's *output*, not its
#   weights), and each of the $K$ convolutions is backpropagated with $\pi_k(f)\, dy$.
#
# The product rule, written out in NumPy and checked against central differences with the four
# attentions as the inputs (one sample batch, float64):

# %%
def odconv_product(x, weight, alpha_c, alpha_f, alpha_s, alpha_w):
    """y = alpha_f (.) conv(alpha_c (.) x, alpha_s (.) sum_k alpha_w[k] W_k) -> (y, cache)."""
    n, (kh, kw) = x.shape[0], weight.shape[3:]
    v = np.einsum("nk,kocij->nocij", alpha_w, weight)                  # V_n
    w_tilde = v * alpha_s.reshape(n, 1, 1, kh, kw)
    x_tilde = x * alpha_c[:, :, None, None]
    u, conv_cache = per_sample_conv2d_forward(x_tilde, w_tilde, padding=1, backend=BACKEND)
    y = u * alpha_f[:, :, None, None]
    return y, (x, weight, alpha_c, alpha_f, alpha_s, v, u, conv_cache)


def odconv_product_backward(dy, cache):
    """The four factors' gradients by the product rule above."""
    x, weight, alpha_c, alpha_f, alpha_s, v, u, conv_cache = cache
    n, (kh, kw) = x.shape[0], weight.shape[3:]
    d_alpha_f = np.sum(dy * u, axis=(2, 3))
    dx_tilde, dw_tilde, _ = per_sample_conv2d_backward(dy * alpha_f[:, :, None, None], conv_cache)
    d_alpha_c = np.sum(dx_tilde * x, axis=(2, 3))
    d_alpha_s = np.sum(dw_tilde * v, axis=(1, 2)).reshape(n, kh * kw)
    dv = dw_tilde * alpha_s.reshape(n, 1, 1, kh, kw)
    d_alpha_w = np.einsum("nocij,kocij->nk", dv, weight)
    return {"alpha_c": d_alpha_c, "alpha_f": d_alpha_f, "alpha_s": d_alpha_s,
            "alpha_w": d_alpha_w}


rng = np.random.default_rng(2)
x_small, weight = rng.standard_normal((2, 3, 5, 5)), rng.standard_normal((K, 4, 3, 3, 3))
alphas = {"alpha_c": rng.random((2, 3)), "alpha_f": rng.random((2, 4)),
          "alpha_s": rng.random((2, 9)), "alpha_w": rng.dirichlet(np.ones(K), size=2)}
report = gradcheck(lambda **a: odconv_product(x_small, weight, **a), alphas,
                   backward=odconv_product_backward)
print(report)

# %% [markdown]
# ## 4. What each costs
#
# Each family module has an `extra_costs(layer, input_shape)` that counts parameters and
# multiply-adds (MAdds) with `dynconv_np.models.profile`'s conventions (one MAdd per product with
# a weight, the pooling's additions counted, element-wise work not); the dynamic convolution's
# own counts come from `profile`. One common shape: $64 \to 64$ channels, $3 \times 3$, on a
# $28 \times 28$ input, $K = E = 4$. *Extra* is what the layer costs beyond a static
# convolution of the same shape (its weights and MAdds):

# %%
C, SIZE = 64, 28
shape = (1, C, SIZE, SIZE)
static_costs = profile(make("static", C, C), shape).layers[0]
static_params = C * C * 9 + C
rows = {}
dy_cost = profile(make("DynamicConv2d", C, C), shape).layers[0]
rows["DynamicConv2d"] = dict(params=dy_cost.params, conv=dy_cost.conv,
                             attention=dy_cost.attention, aggregation=dy_cost.aggregation)
for variant, module in (("CondConv2d", condconv), ("ODConv2d", odconv), ("DCDConv2d", dcd),
                        ("FDYConv2d", fdy)):
    costs = module.extra_costs(make(variant, C, C), shape)
    rows[variant] = dict(params=costs["params"], conv=costs["conv"],
                         attention=costs["attention_pool"] + costs["attention_fc"],
                         aggregation=costs["aggregation"] + costs.get("scaling", 0))
for row in rows.values():
    row["extra"] = row["attention"] + row["aggregation"]
    row["extra %"] = 100 * row["extra"] / static_costs.conv

print(f"static Conv2d: {static_params:,} params, {static_costs.conv:,} MAdds")
print(f"{'layer':<15}{'params':>10}{'conv':>12}{'attention':>11}{'aggregation*':>14}"
      f"{'extra MAdds':>13}{'extra %':>9}")
for variant, row in rows.items():
    print(f"{variant:<15}{row['params']:>10,}{row['conv']:>12,}{row['attention']:>11,}"
          f"{row['aggregation']:>14,}{row['extra']:>13,}{row['extra %']:>8.1f}%")
print("* aggregation: DyConv/CondConv the K-way kernel mix; ODConv the mix, alpha_s and the\n"
      "  alpha_c / alpha_f scalings; DCD the dynamic 1 x 1 branch on the features; FDY the\n"
      "  K - 1 extra convolutions and the per-column output mix")

# %% [markdown]
# The printed shares, in words (computed from the table, so true for whatever shape is set
# above):

# %%
by_extra = sorted(rows, key=lambda v: rows[v]["extra"])
print(f"cheapest dynamic part: {by_extra[0]} (+{rows[by_extra[0]]['extra %']:.1f}%), "
      f"most expensive: {by_extra[-1]} (+{rows[by_extra[-1]]['extra %']:.1f}%)")
print(f"most parameters: {max(rows, key=lambda v: rows[v]['params'])}, fewest: "
      f"{min(rows, key=lambda v: rows[v]['params'])} "
      f"({min(r['params'] for r in rows.values()) / static_params:.2f} x the static layer's)")
fdy_madds = rows["FDYConv2d"]["conv"] + rows["FDYConv2d"]["extra"]
print(f"FDY's MAdds are {fdy_madds / static_costs.conv:.2f} x a static layer's: it mixes the "
      f"outputs of K = {K} convolutions")

# %% [markdown]
# Kernel-mixing layers (DyConv, CondConv, ODConv) pay their aggregation once per kernel
# weight, whatever the resolution; DCD pays its branch per output pixel (thin $1 \times 1$
# convolutions) and FDY a full convolution per kernel. Which one is cheap therefore depends on the
# shape: try `C, SIZE = 256, 7` or `16, 112`.

# %% [markdown]
# ## 5. A gradient check of each
#
# `gradcheck(layer, x)` perturbs x and every parameter of the layer (its attention branch
# included) and compares central differences with the analytical gradients, in float64. The
# layers with a BatchNorm in their branch are checked in both modes: training (batch statistics,
# which couple the samples) and evaluation (running statistics, here random).
# `python -m dynconv_np verify` runs these checks on every backend (`dynconv_np/verify_family.py`).

# %%
def checked(variant, mode):
    layer = make(variant, 4, 6, stride=2, rng=3, dtype=np.float64)
    draw = np.random.default_rng(4)
    for name in layer.buffers:   # eval mode reads these: make them not (0, 1)
        layer.buffers[name][...] = (0.5 + draw.random(layer.buffers[name].shape)
                                    if name.endswith("var")
                                    else 0.3 * draw.standard_normal(layer.buffers[name].shape))
    return layer.train(mode == "train")


x_check = np.random.default_rng(5).standard_normal((3, 4, 6, 6))
print(f"{'layer':<15}{'mode':<7}{'arrays':>7}{'elements':>10}{'max abs err':>13}  result")
for variant in VARIANTS:
    for mode in (("train", "eval") if variant in ("ODConv2d", "DCDConv2d", "FDYConv2d")
                 else ("train",)):
        result = gradcheck(checked(variant, mode), x_check, raise_exception=False)
        print(f"{variant:<15}{mode:<7}{len(result.results):>7}"
              f"{sum(r.checked for r in result.results):>10}{result.max_abs_error():>13.2e}  "
              f"{'ok' if result.passed else 'FAILED'}")

# %% [markdown]
# ("arrays": x and each parameter of the layer; "elements": the entries perturbed.)

# %% [markdown]
# ## 6. A small training comparison
#
# A tiny net per variant on the embedded $8 \times 8$ digits: a static $3 \times 3$ stem (1 to 8
# channels), then two layers of the variant ($8 \to 16$ with stride 2, $16 \to 16$), each followed
# by BatchNorm and ReLU, global pooling and a linear classifier; the same net with static
# convolutions as the baseline. SGD with Nesterov momentum, a cosine learning rate, the same
# seeds and batches for every variant. Temperatures are fixed: $\tau = 1$ for DyConv and ODConv
# (their papers anneal from 30; tutorial 5 compares annealing with $\tau = 1$), FDY's official
# $\tau = 31$. This is a sanity check of the layers in a training loop, not a benchmark: the
# images are tiny and so are the nets.

# %%
EPOCHS = 2 if FAST else 15
SEEDS = (0,) if FAST else (0, 1, 2)
BATCH, LR = 32, 0.1
digits = load_digits()
if FAST:
    digits.x_train, digits.y_train = digits.x_train[:256], digits.y_train[:256]
print(f"train {digits.x_train.shape}, test {digits.x_test.shape}")


def tiny_net(variant, seed):
    rng = np.random.default_rng(seed)
    return Sequential(Conv2d(1, 8, 3, padding=1, backend=BACKEND, rng=rng), BatchNorm2d(8),
                      ReLU(),
                      make(variant, 8, 16, stride=2, rng=rng), BatchNorm2d(16), ReLU(),
                      make(variant, 16, 16, rng=rng), BatchNorm2d(16), ReLU(),
                      GlobalAvgPool2d(), Linear(16, digits.num_classes, rng=rng))


def train(variant, seed):
    model = tiny_net(variant, seed)
    optimizer = SGD(model, LR, momentum=0.9, nesterov=True, weight_decay=5e-4)
    order = np.random.default_rng(seed)
    steps = EPOCHS * -(-len(digits.x_train) // BATCH)
    step, curve, start = 0, [], time.perf_counter()
    for epoch in range(EPOCHS):
        model.train()
        for idx in minibatches(len(digits.x_train), BATCH, order):
            optimizer.lr = LR * 0.5 * (1 + np.cos(np.pi * step / steps))
            train_step(model, optimizer, digits.x_train[idx], digits.y_train[idx])
            step += 1
        curve.append(evaluate(model, digits.x_test, digits.y_test)[1])
    return np.array(curve), time.perf_counter() - start


NAMES = ["static"] + VARIANTS
results = {name: [train(name, seed) for seed in SEEDS] for name in NAMES}
final = {name: np.array([curve[-1] for curve, _ in results[name]]) for name in NAMES}
seconds = {name: np.mean([t for _, t in results[name]]) for name in NAMES}
params = {name: sum(p.size for p in tiny_net(name, 0).parameters()) for name in NAMES}
print(f"{'net':<15}{'params':>8}{'test accuracy':>18}{'s / run':>9}")
for name in NAMES:
    spread = f" +- {final[name].std(ddof=1):.3f}" if len(SEEDS) > 1 else ""
    print(f"{name:<15}{params[name]:>8,}{final[name].mean():>10.3f}{spread:<8}"
          f"{seconds[name]:>9.1f}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(13, 4))
epochs = np.arange(1, EPOCHS + 1)
for index, name in enumerate(NAMES):
    curves = np.stack([curve for curve, _ in results[name]])
    axes[0].plot(epochs, curves.mean(axis=0), "o-", ms=3, color=f"C{index}", label=name)
axes[0].set(xlabel="epoch", ylabel="test accuracy", title="test accuracy (mean over seeds)")
axes[0].legend(fontsize=8)
means = [final[name].mean() for name in NAMES]
errors = [final[name].std(ddof=1) if len(SEEDS) > 1 else 0 for name in NAMES]
axes[1].bar(range(len(NAMES)), means, yerr=errors, color=[f"C{i}" for i in range(len(NAMES))])
axes[1].set(xticks=range(len(NAMES)), ylabel="final test accuracy",
            ylim=(max(0, min(means) - 0.1), 1), title="after the last epoch")
axes[1].set_xticklabels(NAMES, rotation=20, fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## What this run shows
#
# Computed from the results above (the saved notebook carries the full run; a rerun with other
# settings may read differently, which is the point):

# %%
def verdict(static, dynamic):
    """Seed-paired: ahead or behind only when the mean difference exceeds two standard errors."""
    diff = dynamic - static
    if len(diff) < 2:
        return f"{diff.mean():+.3f} (one seed: no verdict)"
    se = diff.std(ddof=1) / np.sqrt(len(diff))
    word = "ahead" if diff.mean() > 2 * se else "behind" if diff.mean() < -2 * se else \
        "within noise"
    return f"{diff.mean():+.3f} +- {se:.3f}: {word}"


for name in VARIANTS:
    print(f"{name:<15} against the static net: {verdict(final['static'], final[name])}, "
          f"{params[name] / params['static']:.1f} x its parameters, "
          f"{seconds[name] / seconds['static']:.1f} x its training time")
best = max(NAMES, key=lambda n: final[n].mean())
print(f"highest mean test accuracy: {best} ({final[best].mean():.3f}); all nets trained "
      f"{EPOCHS} epochs on {len(digits.x_train)} images, {len(SEEDS)} seed(s)")

# %% [markdown]
# Where to go from here: each layer's docstring lists its parameters and the official defaults
# (`help(ODConv2d)`); `CondConvBlock` shares one routing across a block's convolutions;
# `DCDConv2d` in evaluation mode equals a per-sample kernel (its functional module shows the
# kernel form); `FDYConv2d` is meant for spectrograms (time x frequency), where a per-frequency
# attention is natural; and `python -m dynconv_np verify` checks all of them on every backend.
