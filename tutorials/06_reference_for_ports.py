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
# # 6. A reference for other implementations
#
# A reference implementation earns its keep when someone writes *another* one: a PyTorch
# module, a C kernel, a CUDA port. Three questions come up every time:
#
# 1. **Same weights?** Their state dict names and shapes the parameters differently (a 1x1
#    convolution where we have a matrix, `kernels_weights` where we have `weight`, no bias on the
#    first attention FC, the temperature outside the state dict).
# 2. **Same numbers?** Not bit for bit (summation orders differ) but within what rounding
#    allows, at *every stage*, forward and backward, so that a disagreement points at the stage
#    that caused it.
# 3. **Same numbers without Python?** A C or CUDA test needs golden files with inputs,
#    parameters, every intermediate and every gradient, and the tolerance for each.
#
# `dynconv_np.interop` answers all three. This notebook ports a PyTorch dynamic convolution's
# weights, compares it stage by stage, finds two planted bugs with the harness, and exports the
# golden fixtures a C/CUDA test would read. It needs PyTorch (CPU is enough).

# %%
import json
import os
import tempfile

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import dynconv_np
from dynconv_np.interop import check_fixtures, export_layer, layer_from_state, write_fixtures
from dynconv_np.interop.grade import format_grades

FAST = os.environ.get("DYNCONV_TUTORIAL_FAST", "0") == "1"
torch.set_num_threads(1)          # tiny problems: threads only add overhead
torch.manual_seed(0)
rng = np.random.default_rng(0)
np.set_printoptions(precision=4, suppress=True)

# %% [markdown]
# ## 1. A PyTorch dynamic convolution, written from scratch
#
# We write the layer the way a popular PyTorch implementation (kaijieshi7's `Dynamic_conv2d`)
# lays out its state: the $K$ kernels in `weight` $(K, C_{out}, C_{in}/g, k, k)$ and `bias`
# $(K, C_{out})$; an `attention` submodule whose `fc1` is a bias-free 1x1 convolution to
# $\text{hidden} = \lfloor C_{in} \cdot 0.25 \rfloor + 1$ channels and whose `fc2` is a 1x1
# convolution to $K$ logits; the softmax temperature is a plain attribute (34 at the start,
# lowered by 3 per epoch), *not* part of the state dict. The per-sample convolution is the usual
# trick: fold the batch into the channels and run one grouped convolution with $N \cdot g$
# groups.

# %%
class Attention(nn.Module):
    def __init__(self, in_planes, num_kernels, temperature, ratio=0.25):
        super().__init__()
        hidden = num_kernels if in_planes == 3 else int(in_planes * ratio) + 1
        self.fc1 = nn.Conv2d(in_planes, hidden, 1, bias=False)
        self.fc2 = nn.Conv2d(hidden, num_kernels, 1)
        self.temperature = temperature

    def forward(self, x):
        z = self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(x, 1)))).flatten(1)
        return F.softmax(z / self.temperature, dim=1)


class DynConv(nn.Module):
    def __init__(self, in_planes, out_planes, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, K=4, temperature=34):
        super().__init__()
        self.in_planes, self.out_planes, self.K = in_planes, out_planes, K
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups
        self.attention = Attention(in_planes, K, temperature)
        self.weight = nn.Parameter(0.2 * torch.randn(K, out_planes, in_planes // groups,
                                                     kernel_size, kernel_size))
        self.bias = nn.Parameter(0.1 * torch.randn(K, out_planes))

    def forward(self, x):
        pi = self.attention(x)                                        # (N, K)
        n, _, h, w = x.shape
        weight = (pi @ self.weight.view(self.K, -1)).view(-1, *self.weight.shape[2:])
        bias = (pi @ self.bias).view(-1)
        y = F.conv2d(x.view(1, -1, h, w), weight, bias, self.stride, self.padding,
                     self.dilation, self.groups * n)
        return y.view(n, self.out_planes, *y.shape[-2:])


torch_layer = DynConv(8, 6, 3, padding=1)
for key, value in torch_layer.state_dict().items():
    print(f"{key:<22} {tuple(value.shape)}")

# %% [markdown]
# ## 2. Porting its weights
#
# The preset `"kaijieshi7"` knows that layout: `layer_from_state` reads $K$, the channels, the
# kernel size, the groups ($C_{in}$ divided by the kernels' third axis) and the hidden width from
# the shapes, and builds a `DynamicConv2d(..., hidden=3, attention_bias=False)`. Stride, padding
# and dilation are in no state dict, so we pass them; the temperature too. Every key, shape and
# dtype is checked, and what does not fit is named.

# %%
ours = layer_from_state(torch_layer, "kaijieshi7", padding=1, temperature=34.0,
                        backend="numpy")
print(ours)
print({name: value.shape for name, value in ours.params.items()})

x = rng.standard_normal((4, 8, 10, 10)).astype(np.float32)
with torch.no_grad():
    y_torch = torch_layer(torch.from_numpy(x)).numpy()
print("max |y_ours - y_torch| =", np.abs(ours(x) - y_torch).max())

# %% [markdown]
# Going back is `export_layer`: the keys come out in their names and shapes (1x1 convolutions get
# their trailing 1x1 back), and `load_state_dict` of the torch module, strict, accepts them. A
# wrong shape is refused with the key in the message:

# %%
exported = export_layer(ours, "kaijieshi7", tensors=True)
print(torch_layer.load_state_dict(exported))
bad = {key: value.numpy() for key, value in exported.items()}
bad["attention.fc2.weight"] = np.zeros((4, 5, 1, 1), np.float32)
try:
    layer_from_state(bad, "kaijieshi7", padding=1)
except ValueError as error:
    print("ValueError:", error)

# %% [markdown]
# ## 3. Stage by stage
#
# Matching `y` says little about *where* two implementations disagree, and nothing about the
# backward pass. `dynconv_np.compare` runs the torch layer forward and backward (autograd, a
# random upstream gradient: an all-ones `dy` would hide bugs) and reads its intermediates where
# the preset says they are: forward hooks on `attention.fc1` (its input is the pooled vector),
# `attention.fc2` (its output, the logits) and `attention` (pi); the per-sample kernels `w_n`,
# `b_n` are the arguments of its grouped `conv2d` call, intercepted with a `TorchFunctionMode`.
# Each is compared with the reference's, and so are the gradients of each, of `x` and of every
# parameter - in float64 and in the layer's own float32.
#
# **The tolerance** of each row is derived, not guessed: a sum of $m$ terms computed in any
# order carries at most $m u \sum |\text{terms}|$ ($u$ the unit roundoff), so each stage's bound
# comes from the magnitudes of its inputs (e.g. $\text{conv}(|x|, |W_n|) + |b_n|$ for $y$), plus
# the bounds of the stages it reads, carried through $|\text{coefficients}|$. Two correct
# implementations differ by at most twice that. `cond` is the tolerance in ulps of the stage's
# scale: where it is large, the problem itself loses digits. The softmax backward
# $dz = \pi \odot (d\pi - \langle \pi, d\pi \rangle)/\tau$ is the stage that loses the most:
# when the $K$ kernels are alike, $d\pi$ is nearly the same for every $k$ and cancels, and the
# error scales with $|d\pi|$, not with $|dz|$.

# %%
report = dynconv_np.compare(torch_layer, x, preset="kaijieshi7")

# %% [markdown]
# Every stage agrees, far inside its bound (err/tol ~ 1e-2 or less: the bound is a worst case).
# The batch rows check a property a port easily breaks: each sample's output must not depend
# on the rest of the batch (N = 1 equals the first sample's slice; permuting the batch permutes
# y).
#
# The plot shows the error of every stage as a fraction of its tolerance, and the conditioning:
# the backward stages after the softmax have a `cond` 100x larger than the forward ones.

# %%
def plot_report(report, title, ax_ratio, ax_cond):
    for dtype, marker in (("float64", "o"), ("float32", "s")):
        rows = [r for r in report.rows if r.dtype == dtype and r.status != "n/a"
                and not r.stage.startswith("batch")]
        stages = [r.stage for r in rows]
        ratio = [max(r.ratio, 1e-8) for r in rows]
        ax_ratio.semilogy(range(len(rows)), ratio, marker, label=dtype)
        ax_cond.semilogy(range(len(rows)), [r.cond for r in rows], marker, label=dtype)
    for ax in (ax_ratio, ax_cond):
        ax.set_xticks(range(len(stages)))
        ax.set_xticklabels(stages, rotation=70, fontsize=8)
        ax.legend()
    ax_ratio.axhline(1.0, color="r", lw=1)
    ax_ratio.set_ylabel("max error / tolerance (0 drawn at 1e-8)")
    ax_ratio.set_title(title)
    ax_cond.set_ylabel("cond = tol / (eps max|ref|)")


fig, axes = plt.subplots(1, 2, figsize=(13, 4))
plot_report(report, "correct port", *axes)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 4. Finding a planted bug
#
# Here is a hand-written variant of the same layer, as it might arrive in a pull request. It
# trains, its output has the right shape, and its outputs look plausible. Can you see the bug?

# %%
class SuspectAttention(Attention):
    def forward(self, x):
        pooled = F.adaptive_avg_pool2d(x, 1)
        z = self.fc2(F.relu(self.fc1(pooled))).flatten(1)
        return F.softmax(z, dim=1)      # self.temperature: annealed by the training loop


class SuspectDynConv(DynConv):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.attention = SuspectAttention(self.in_planes, self.K, 34)


torch.manual_seed(0)
suspect = SuspectDynConv(8, 6, 3, padding=1)
suspect_report = dynconv_np.compare(suspect, x, preset="kaijieshi7")

# %% [markdown]
# The harness says: pooled and logits agree, **pi is the first wrong stage**, and everything
# downstream follows. The temperature is stored, annealed, and never used: the softmax runs at
# $\tau = 1$, so the attention is far sharper than it should be at $\tau = 34$ - exactly the
# regime the paper's annealing is meant to avoid, and a bug no shape check and no loss curve
# would show.
#
# A second kind of bug is invisible to any forward test: the attention computed on
# `x.detach()`. Forward, the layer is exact; backward, no gradient reaches `x` through the
# attention branch.

# %%
class DetachedDynConv(DynConv):
    def forward(self, x):
        pi = self.attention(x.detach())
        n, _, h, w = x.shape
        weight = (pi @ self.weight.view(self.K, -1)).view(-1, *self.weight.shape[2:])
        y = F.conv2d(x.view(1, -1, h, w), weight, (pi @ self.bias).view(-1), self.stride,
                     self.padding, self.dilation, self.groups * n)
        return y.view(n, self.out_planes, *y.shape[-2:])


torch.manual_seed(0)
detached_report = dynconv_np.compare(DetachedDynConv(8, 6, 3, padding=1), x,
                                     preset="kaijieshi7", verbose=False)
print("forward stages:", {r.stage: r.status for r in detached_report.rows
                          if r.dtype == "float64" and r.stage in ("pooled", "pi", "w_n", "y")})
print(f"first wrong stage: {detached_report.first_failure.stage} "
      f"({detached_report.first_failure.note})")

fig, axes = plt.subplots(1, 2, figsize=(13, 4))
plot_report(suspect_report, "temperature after the softmax", axes[0], axes[1])
axes[1].set_title("(the conditioning does not depend on the bug)")
fig.tight_layout()
plt.show()

# %% [markdown]
# The same comparison is a command for a port in a file:
#
# ```bash
# python -m dynconv_np compare my_port.py:DynConv --preset kaijieshi7 --input-shape 4,8,10,10 \
#     --init-args '{"in_planes": 8, "out_planes": 6, "kernel_size": 3, "padding": 1}'
# ```
#
# which prints the table and exits 1 when a stage disagrees.

# %% [markdown]
# ## 5. Golden fixtures for a C/CUDA test
#
# A C or CUDA implementation cannot call the harness, so the reference writes its answers down:
# `python -m dynconv_np fixtures --out DIR` (or `write_fixtures(DIR)`) writes one `.npz` per case
# and dtype - dense, grouped, depthwise, depthwise with a channel multiplier, stride / padding /
# dilation, N = 1, no bias, no attention bias, K = 1, several temperatures, 1x1 - with the
# configuration, inputs, parameters, upstream gradient, every intermediate and every gradient,
# and the tolerance for each array; plus `index.json` and a `README.md`. The files are the same
# bytes on every run (fixed seeds, a zip written with a fixed date), so they can be committed
# next to the port's tests and diffed.

# %%
fixture_dir = tempfile.mkdtemp(prefix="dynconv_fixtures_")
index = write_fixtures(fixture_dir)
sizes = sum(os.path.getsize(os.path.join(fixture_dir, c["file"])) for c in index["cases"])
print(f"{len(index['cases'])} fixtures, {sizes / 1024:.0f} KiB:",
      sorted(os.listdir(fixture_dir))[:6], "...")
case = next(c for c in index["cases"] if c["name"] == "stride_padding_dilation.float32")
print(json.dumps(case["config"]))
for name in ("x", "weight", "pi", "y", "dlogits", "dx"):
    print(f"  {name:<8} {case['arrays'][name]}")

# %% [markdown]
# Each `.npz` is a zip of plain `.npy` files, stored uncompressed, so a C test reads a member
# with any NPY reader (cnpy, or 30 lines of header parsing) and compares:
#
# ```c
# // for every fixture in index.json: load x, dy and the parameters, run the port, then
# for (size_t i = 0; i < n; ++i)
#     if (fabs(y[i] - y_expected[i]) > atol_y) fail("y", i);   // atol from index.json
# ```
#
# In float32 files the inputs are float32 and the expected values are the float64 answer for
# exactly those inputs, rounded once: the tolerance is what a correct float32 implementation
# may differ by, whatever order it sums in.
#
# To close the loop, let a port hand in its results. Here the "port" is a few lines of PyTorch
# autograd run on each fixture's inputs; `check_fixtures` grades every array it finds
# (`python -m dynconv_np check-fixtures DIR RESULTS` does the same and exits 1 on a failure).

# %%
def torch_port(f, config):
    """A dynamic convolution in plain torch functional code, from a fixture's arrays."""
    dtype = torch.float64 if f["x"].dtype == np.float64 else torch.float32
    t = {k: torch.tensor(f[k], dtype=dtype, requires_grad=k != "dy") for k in f.files
         if k in ("x", "dy", "weight", "bias", "fc1_weight", "fc1_bias", "fc2_weight",
                  "fc2_bias")}
    x = t["x"]
    pooled = x.mean(dim=(2, 3))
    logits = F.linear(F.relu(F.linear(pooled, t["fc1_weight"], t.get("fc1_bias"))),
                      t["fc2_weight"], t["fc2_bias"])
    pi = torch.softmax(logits / config["tau"], dim=1)
    k = pi.shape[1]
    w_n = (pi @ t["weight"].reshape(k, -1)).reshape(len(x), *t["weight"].shape[1:])
    b_n = pi @ t["bias"] if "bias" in t else None
    y = torch.cat([F.conv2d(x[i:i + 1], w_n[i], None if b_n is None else b_n[i],
                            config["stride"], config["padding"], config["dilation"],
                            config["groups"]) for i in range(len(x))])
    y.backward(t["dy"])
    out = {"pooled": pooled, "pi": pi, "y": y, "dx": x.grad}
    out.update({"d" + k: v.grad for k, v in t.items() if v.grad is not None and k != "x"})
    return {k: v.detach().numpy() for k, v in out.items()}


results_dir = tempfile.mkdtemp(prefix="dynconv_results_")
for case in index["cases"]:
    with np.load(os.path.join(fixture_dir, case["file"])) as f:
        np.savez(os.path.join(results_dir, case["file"]), **torch_port(f, case["config"]))
grades = check_fixtures(fixture_dir, results_dir)
lines = format_grades(grades).splitlines()
graded = [line for line in lines[1:-1] if not line.endswith("missing")]
print("\n".join(lines[:1] + graded[:10] + ["..."] + lines[-1:]))

# %% [markdown]
# Every array the port handed in passes, in float64 and float32 (the intermediates it did not
# hand in, such as `logits`, are listed as missing, which is not a failure). The last plot shows
# how much room each array's tolerance gives, relative to the array's size, across the
# fixtures: float32 tolerances sit near $10^{-5}$ relative in the forward pass and grow to
# $10^{-3}$-$10^{-2}$ after the softmax backward, at the smallest temperature most.

# %%
fig, ax = plt.subplots(figsize=(11, 4))
names = ["pooled", "logits", "pi", "w_n", "y", "dw_n", "dpi", "dlogits", "dpooled", "dx",
         "dweight", "dfc2_weight", "dfc1_weight"]
labelled = set()
for case in index["cases"]:
    dtype = case["dtype"]
    with np.load(os.path.join(fixture_dir, case["file"])) as f:
        rel = [case["arrays"][n]["atol"] / np.abs(f[n]).max() if np.abs(f[n]).max() > 0
               else np.nan for n in names]      # K = 1: the softmax gradients are all zero
    ax.semilogy(range(len(names)), rel, "o" if dtype == "float64" else "s", alpha=0.5,
                color="C0" if dtype == "float64" else "C1",
                label=None if dtype in labelled else dtype)
    labelled.add(dtype)
ax.set_xticks(range(len(names)))
ax.set_xticklabels(names, rotation=45)
ax.set_ylabel("atol / max|expected|")
ax.set_title("fixture tolerances, every case")
ax.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Summary
#
# * `layer_from_state` / `export_layer` / `load_model` / `export_model` move weights between
#   our layers and models and other implementations' layouts (`"kaijieshi7"`, `"tardelean"`,
#   torchvision's static ResNet and MobileNets), checking every name, shape and dtype;
#   `static_to_dynamic` starts a DY network from its static twin.
# * `dynconv_np.compare` checks a PyTorch port stage by stage, forward and backward, in float64
#   and float32, with tolerances derived from the problem, and names the first stage that goes
#   wrong; it also checks that the samples of a batch do not interact.
# * `python -m dynconv_np fixtures` writes byte-stable golden files for ports without Python,
#   and `check-fixtures` grades them.
