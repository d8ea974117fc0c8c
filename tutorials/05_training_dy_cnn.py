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
# # 5. Training a DY-CNN
#
# The paper's claims, tested in small:
#
# 1. At equal depth and width, a network whose convolutions are dynamic is more accurate than the
#    static one, for a few percent more multiply-adds (section 4; notebook 2 for the cost).
# 2. Training is easier with near-uniform attention at the start: the softmax temperature is
#    lowered from 30 to 1 early in training; with $\tau = 1$ throughout, training is slower and
#    the accuracy lower (section 3.3; notebook 1 for why).
# 3. The attention becomes input-dependent: different inputs (here, different digit classes)
#    mix the $K$ kernels differently.
#
# Data: the 1797 UCI handwritten digits (8 x 8 pixels) embedded in `dynconv_np`, split into
# 1347 training and 450 test images. Network: `dynconv_np.models.small.small_cnn`, three 3x3
# convolutions with BatchNorm and ReLU, global pooling and a linear classifier. Its dynamic twin
# makes every convolution but the first a `DynamicConv2d` with $K = 4$ kernels, as the paper's
# DY networks do. The width is deliberately small (4 stem channels): the paper's regime is
# light-weight networks whose capacity is limited by depth and width.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np

from dynconv_np.models.profile import profile
from dynconv_np.models.small import small_cnn
from dynconv_np.train import (SGD, CosineWarmupLR, TemperatureAnnealing, apply_temperature,
                              evaluate, load_digits, train_step)
from dynconv_np.train.loop import minibatches
from dynconv_np.train.schedules import dynamic_modules

FAST = os.environ.get("DYNCONV_TUTORIAL_FAST", "0") == "1"
EPOCHS = 2 if FAST else 20
ANNEAL_EPOCHS = 1 if FAST else 5          # tau: 30 -> 1 over these epochs, then 1
SEEDS = (0,) if FAST else (0, 1, 2)
WIDTH, K, BATCH, LR = 4, 4, 32, 0.1

data = load_digits()
if FAST:   # a subset keeps the test suite quick
    data.x_train, data.y_train = data.x_train[:256], data.y_train[:256]
print(f"train {data.x_train.shape}, test {data.x_test.shape}, classes {data.classes}")

fig, axes = plt.subplots(2, 10, figsize=(10, 2.3))
for digit in range(10):
    for row in range(2):
        axes[row, digit].imshow(data.x_train[data.y_train == digit][row, 0], cmap="gray_r")
        axes[row, digit].axis("off")
fig.suptitle("two training images per class (standardised 8 x 8 pixels)")
plt.show()

# %% [markdown]
# ## The three networks
#
# Same depth, same width, same initialisation seed, same batches:
#
# * **static**: ordinary convolutions;
# * **dynamic, annealed**: $\tau$ from 30 to 1, linearly over the first epochs
#   (per iteration), then 1 (the paper: over the first 10 of its epochs);
# * **dynamic, $\tau = 1$**: the plain softmax throughout.
#
# Their costs for one 8 x 8 image, counted by `dynconv_np.models.profile`:

# %%
CONFIGS = {"static": dict(dynamic=False, temperature=30.0, anneal=False),
           "dynamic, annealed": dict(dynamic=True, temperature=30.0, anneal=True),
           "dynamic, tau = 1": dict(dynamic=True, temperature=1.0, anneal=False)}


def build(config, seed):
    return small_cnn(data.image_shape, data.num_classes, width=WIDTH, dynamic=config["dynamic"],
                     num_kernels=K, temperature=config["temperature"], rng=seed)


for name in ("static", "dynamic, annealed"):
    cost = profile(build(CONFIGS[name], 0), data.image_shape)
    print(f"{name:<18} params {cost.params:>6,}   MAdds per image {cost.madds:>8,}")
print(build(CONFIGS["dynamic, annealed"], 0))

# %% [markdown]
# ## The training loop, spelled out
#
# `dynconv_np.train.fit` runs this loop; we write it out so that we can look inside the network
# after every epoch. One step: forward, softmax cross-entropy, backward, SGD with Nesterov momentum
# and weight decay. The learning rate follows a cosine schedule with a one-epoch warm-up; the
# temperature follows the paper's linear annealing,
# $\tau(t) = 30 + (1 - 30)\min(t / A, 1)$ with $t$ the progress in epochs.
#
# After every epoch we evaluate on the test set and record, for every dynamic layer, the attention
# $\pi(x)$ of every test image, to follow its entropy $H(\pi) = -\sum_k \pi_k \log\pi_k$
# (between 0, one kernel, and $\log K$, uniform).

# %%
def entropy(pi):
    return -np.sum(pi * np.log(np.clip(pi, 1e-12, None)), axis=-1)


def test_attention(model):
    """The attention (N_test, K) of every dynamic layer on the test set, in eval mode."""
    model.eval()
    model.forward(data.x_test)
    model.train()
    return [layer.attention.copy() for layer in dynamic_modules(model)]


def train(config, seed):
    model = build(config, seed)
    optimizer = SGD(model, LR, momentum=0.9, nesterov=True, weight_decay=5e-4)
    lr_schedule = CosineWarmupLR(LR, EPOCHS, warmup_epochs=min(1.0, EPOCHS - 1))
    annealing = TemperatureAnnealing(30.0, 1.0, ANNEAL_EPOCHS, per_iteration=True) \
        if config["anneal"] else None
    rng = np.random.default_rng(seed)                 # the batch order
    iterations = -(-len(data.x_train) // BATCH)
    record = {key: [] for key in ("train_loss", "train_acc", "test_acc", "tau", "entropy")}
    for epoch in range(EPOCHS):
        total_loss = correct = 0
        for iteration, idx in enumerate(minibatches(len(data.x_train), BATCH, rng)):
            optimizer.lr = lr_schedule.lr_at(epoch, iteration, iterations)
            if annealing is not None:
                apply_temperature(model, annealing.tau_at(epoch, iteration, iterations))
            loss, hits = train_step(model, optimizer, data.x_train[idx], data.y_train[idx])
            total_loss += loss * len(idx)
            correct += hits
        record["train_loss"].append(total_loss / len(data.x_train))
        record["train_acc"].append(correct / len(data.x_train))
        record["test_acc"].append(evaluate(model, data.x_test, data.y_test)[1])
        layers = dynamic_modules(model)
        record["tau"].append(layers[0].temperature if layers else np.nan)
        record["entropy"].append([entropy(pi).mean() for pi in test_attention(model)])
    return model, {key: np.array(value) for key, value in record.items()}


runs = {name: [train(config, seed) for seed in SEEDS] for name, config in CONFIGS.items()}
print(f"{'network':<18}{'train loss':>12}{'train acc':>11}"
      f"{'test acc (mean +- std over seeds)':>36}")
for name, results in runs.items():
    final = {key: np.array([record[key][-1] for _, record in results])
             for key in ("train_loss", "train_acc", "test_acc")}
    std = final["test_acc"].std(ddof=1) if len(SEEDS) > 1 else 0.0
    print(f"{name:<18}{final['train_loss'].mean():>12.3f}{final['train_acc'].mean():>11.3f}"
          f"{final['test_acc'].mean():>24.3f} +- {std:.3f}")

# %% [markdown]
# ## Learning curves
#
# Mean over the seeds (the band spans the lowest and highest seed), with the annealed network's
# temperature on the right axis.

# %%
epochs = np.arange(1, EPOCHS + 1)
fig, axes = plt.subplots(1, 3, figsize=(15, 4))
for name, results in runs.items():
    for ax, key in zip(axes, ("train_loss", "train_acc", "test_acc")):
        curves = np.stack([record[key] for _, record in results])
        line, = ax.plot(epochs, curves.mean(axis=0), label=name)
        ax.fill_between(epochs, curves.min(axis=0), curves.max(axis=0), color=line.get_color(),
                        alpha=0.2)
for ax, title in zip(axes, ("training loss", "training accuracy (during the epoch)",
                            "test accuracy")):
    ax.set(xlabel="epoch", title=title)
axes[0].set_yscale("log")
axes[2].legend(fontsize=8, loc="lower right")
tau_axis = axes[2].twinx()
tau_axis.plot(epochs, runs["dynamic, annealed"][0][1]["tau"], color="grey", ls=":")
tau_axis.set_ylabel(r"$\tau$ at the end of the epoch (annealed run)", color="grey")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## The attention during training
#
# The mean entropy of the attention on the test images, per dynamic layer. With annealing the
# attention starts uniform ($H = \log K$ at $\tau = 30$) and can only become selective as $\tau$
# falls; with $\tau = 1$ from the start it is selective from the first epoch, before the kernels
# have learned anything.

# %%
fig, ax = plt.subplots(figsize=(7, 4))
styles = {"dynamic, annealed": "-", "dynamic, tau = 1": "--"}
for name, style in styles.items():
    curves = np.stack([record["entropy"] for _, record in runs[name]])  # (seeds, epochs, layers)
    for layer_index in range(curves.shape[2]):
        ax.plot(epochs, curves[:, :, layer_index].mean(axis=0), style, marker="o", ms=3,
                color=f"C{layer_index}", label=f"{name}, dynamic layer {layer_index + 1}")
ax.axhline(np.log(K), color="grey", ls=":", label=r"$\log K$ (uniform)")
ax.set(xlabel="epoch", ylabel="mean entropy of $\\pi$ (nats)",
       title="attention entropy on the test set")
ax.legend(fontsize=7)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Attention per class
#
# The mean attention over the test images of each digit class, for each dynamic layer of the
# annealed network (seed 0) at the end of training. Rows that differ mean the layer applies a
# different effective kernel to different kinds of input: the "dynamic" in dynamic convolution.

# %%
model = runs["dynamic, annealed"][0][0]
attention = test_attention(model)
fig, axes = plt.subplots(1, len(attention), figsize=(4.5 * len(attention), 4.2))
for index, (ax, pi) in enumerate(zip(np.atleast_1d(axes), attention)):
    per_class = np.stack([pi[data.y_test == digit].mean(axis=0) for digit in range(10)])
    image = ax.imshow(per_class, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    ax.set(xticks=range(K), xticklabels=[f"$W_{k + 1}$" for k in range(K)], yticks=range(10),
           ylabel="digit class", title=f"dynamic layer {index + 1}: mean $\\pi$ per class")
    for (row, col), value in np.ndenumerate(per_class):
        ax.text(col, row, f"{value:.2f}", ha="center", va="center", fontsize=7,
                color="white" if value < 0.5 else "black")
    spread = per_class.max(axis=0) - per_class.min(axis=0)
    print(f"dynamic layer {index + 1}: mean attention per kernel {pi.mean(axis=0).round(3)}, "
          f"largest between-class difference {spread.max():.3f}, "
          f"mean entropy {entropy(pi).mean():.3f} (log K = {np.log(K):.3f})")
fig.colorbar(image, ax=axes, shrink=0.8)
plt.show()

# %% [markdown]
# ## Kernel usage
#
# How much of each layer's gradient each kernel received at the end of training is its mean
# attention (notebook 1). The smallest share per layer, for both dynamic networks:

# %%
for name in styles:
    shares = []
    for model, _ in runs[name]:
        shares.append([pi.mean(axis=0).min() for pi in test_attention(model)])
    shares = np.array(shares)
    print(f"{name:<18} least-used kernel's mean attention per layer (mean over seeds): "
          f"{shares.mean(axis=0).round(3)}  (uniform: {1 / K})")

# %% [markdown]
# ## What this run shows
#
# In the full run saved with this notebook (3 seeds, 20 epochs, annealing over the first 5):
#
# * **Accuracy**: all three networks reach about 96-97% test accuracy (static 0.964 +- 0.008,
#   annealed 0.965 +- 0.009, $\tau = 1$ 0.970 +- 0.003): no difference beyond the spread between
#   seeds. At this scale the static network is not capacity-limited (it fits the training set,
#   99.4% training accuracy), which is not the regime in which the paper finds its gains
#   (light-weight ImageNet networks, +2.3 to +4.2 points top-1).
# * **Kernel usage** (insight 2 of section 3.3): without annealing the least-used kernel ends with a
#   mean attention of 0.15 to 0.18, against 0.22 to 0.23 with annealing; a large initial $\tau$
#   keeps all $K$ kernels in use, as the paper argues.
# * **Selectivity**: the attention stays close to uniform (mean entropy 1.37 to 1.385 nats,
#   $\log 4 = 1.386$) and differs between classes by about 0.01. After the annealing ends the
#   annealed network's entropy rises back towards $\log K$; the $\tau = 1$ network stays more
#   selective (about 1.31 to 1.35). On 8 x 8 digits with two small dynamic layers, the attention is
#   only weakly input-dependent.
#
# Try it yourself: a narrower network (`WIDTH = 2`), more epochs, or a larger dataset
# (`dynconv_np.train.load_mnist`, `load_cifar10`) move the experiment closer to the paper's regime.
