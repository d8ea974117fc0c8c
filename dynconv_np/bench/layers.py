"""The layer suite: five DynamicConv2d shapes, our layer built on them, and its PyTorch twin.

Shared by the CPU and GPU sections (``cpu.py``, ``gpu.py``), which import this module and
``timing.py``, never each other. A suite of whole networks would sit beside this module.

Every layer is float32, K = 4 kernels, tau = 1, attention hidden width C_in / 4, bias on,
dilation 1, parameters from seed 0:

    name  N  C_in -> C_out  kernel stride pad groups  H x W
    L1   16     32 -> 32      3x3     1     1     1   32x32
    L2   16     64 -> 128     1x1     1     0     1   16x16
    L3   16    128 -> 128     3x3     1     1   128   16x16   (depthwise)
    L4   16     64 -> 128     3x3     2     1     1   32x32
    L5    1     32 -> 32      3x3     1     1     1   32x32

The PyTorch twin runs the same math with the same parameters (copied from our layer) and the
grouped-convolution trick: x as (1, N*C_in, H, W), per-sample kernels as
(N*C_out, C_in/groups, kh, kw), groups = N*groups. torch is imported only by the functions
that need it (``import_torch`` says whether it is there).
"""
from dataclasses import dataclass

import numpy as np

DTYPE = np.float32
NUM_KERNELS = 4
TEMPERATURE = 1.0
REDUCTION = 4
SEED = 0


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
    def kernel_elements(self):
        """Elements of the N per-sample kernels W_n (N, C_out, C_in/groups, k, k)."""
        return self.n * self.c_out * (self.c_in // self.groups) * self.kernel ** 2

    @property
    def conv_flops(self):
        """2 x multiply-adds of one convolution (forward) over the batch."""
        return 2 * self.kernel_elements * self.out_size ** 2


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


def find_spec(suite, name):
    """The spec called ``name`` in ``suite``, or None."""
    return next((spec for spec in suite if spec.name == name), None)


def make_inputs(spec, seed=SEED):
    """(x, dy): the fixed input and upstream gradient of ``spec``, host float32 arrays."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((spec.n, spec.c_in, spec.size, spec.size)).astype(DTYPE)
    dy = rng.standard_normal((spec.n, spec.c_out, spec.out_size, spec.out_size)).astype(DTYPE)
    return x, dy


def make_layer(spec, backend):
    """Our DynamicConv2d for ``spec`` on ``backend``; the same parameters on every backend."""
    from ..nn import DynamicConv2d
    return DynamicConv2d(spec.c_in, spec.c_out, spec.kernel, stride=spec.stride,
                         padding=spec.padding, groups=spec.groups, bias=True,
                         num_kernels=NUM_KERNELS, reduction=REDUCTION, temperature=TEMPERATURE,
                         backend=backend, dtype=DTYPE, rng=SEED)


def layer_calls(spec, backend):
    """(fwd, fwd_bwd): closures running our layer on ``backend`` (host arrays), on the
    suite's fixed input and upstream gradient. The forward alone runs on a copy in eval mode
    (the same math): a training-mode forward keeps its cache for a backward that never comes."""
    layer, inference = make_layer(spec, backend), make_layer(spec, backend).eval()
    x, dy = make_inputs(spec)

    def fwd_bwd():
        layer.forward(x)
        layer.backward(dy)

    return (lambda: inference.forward(x)), fwd_bwd


def import_torch():
    """The torch module, or None when it is not installed (its rows are then left out)."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def torch_twin(spec, params, device="cpu"):
    """(forward, parameter tensors): the dynamic convolution of ``spec`` in PyTorch, with
    copies of ``params`` (our layer's host arrays, by name) on ``device`` as leaf tensors.

    forward(x) = conv2d(x[n], sum_k pi[n, k] W_k) + sum_k pi[n, k] b_k with
    pi = softmax((relu(mean_hw(x) W1^T + b1) W2^T + b2) / tau), as one grouped convolution.
    """
    import torch
    import torch.nn.functional as F

    p = {name: torch.tensor(np.asarray(value), device=device, requires_grad=True)
         for name, value in params.items()}

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

    return forward, p


def torch_layer_calls(spec, device="cpu"):
    """(fwd, fwd_bwd): closures running the PyTorch twin on ``device`` (its forward under
    no_grad; forward + backward fills x.grad and every parameter's grad), on the suite's
    fixed input and upstream gradient. The CPU and the GPU section both time these."""
    import torch
    forward, params = torch_twin(spec, make_layer(spec, "numpy").params, device)
    x_np, dy_np = make_inputs(spec)
    x = torch.tensor(x_np, device=device, requires_grad=True)
    dy = torch.tensor(dy_np, device=device)
    leaves = list(params.values()) + [x]

    def fwd():
        with torch.no_grad():
            forward(x)

    def fwd_bwd():
        for tensor in leaves:
            tensor.grad = None
        forward(x).backward(dy)

    return fwd, fwd_bwd
