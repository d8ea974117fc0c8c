"""The dynamic convolution family's rows of ``python -m dynconv_np verify``.

One gradient check per variant and BatchNorm mode, per backend, of the layer itself (x and
every parameter, its routing or attention branch included; float64, central differences,
random upstream gradient), next to |y - y_numpy|, the largest difference between the layer's
output on that backend and on the NumPy reference:

    CondConv2d       routing from its own input (E = 3 sigmoid experts)    every backend
    ODConv2d         train (branch BatchNorm on the batch) and eval        host backends
                     (running statistics); all four heads: K = 3, a 3 x 2 kernel
    DCDConv2d        train and eval; 'same' padding, grouped W0            host backends
    FDYConv2d        train and eval; strided and dilated along frequency  host backends

Each case is small (a few hundred checked elements) and drawn so that no gradient is tiny:
the routing and attention logits are scaled up, the BatchNorms' affine parameters and (eval)
running statistics are random. ODConv, DCD and FDY compute their element-wise stages with
NumPy and refuse the cuda backend, so their rows are skipped there.
"""
import numpy as np

from .gradcheck import gradcheck
from .nn import CondConv2d, DCDConv2d, FDYConv2d, ODConv2d

HOST_ONLY = ("ODConv2d", "DCDConv2d", "FDYConv2d")


def _condconv(backend):
    layer = CondConv2d(4, 6, (3, 2), stride=2, padding=1, dilation=(1, 2), groups=2,
                       num_experts=3, backend=backend, dtype=np.float64, rng=1)
    layer.routing.params["weight"] *= 4  # routing weights away from 1/2
    return layer


def _odconv(backend):
    return ODConv2d(4, 6, (3, 2), stride=2, padding=1, dilation=(1, 2), groups=2,
                    num_kernels=3, hidden=5, temperature=0.8, backend=backend,
                    dtype=np.float64, rng=2)


def _dcd(backend):
    layer = DCDConv2d(6, 4, 3, stride=2, groups=2, bias=True, backend=backend,
                      dtype=np.float64, rng=3)
    layer.params["phi_weight"] *= 4  # a Phi far from 0, so its gradient is not tiny
    return layer


def _fdy(backend):
    layer = FDYConv2d(4, 6, 3, stride=(1, 2), padding=1, dilation=(1, 2), groups=2, bias=True,
                      num_kernels=3, temperature=0.7, backend=backend, dtype=np.float64, rng=5)
    layer.params["conv2_weight"] *= 4  # pi far from uniform, so its gradient is not tiny
    return layer


# variant -> (configuration, layer factory, x shape, BatchNorm modes)
CASES = {
    "CondConv2d": ("grouped s2 d(1,2) E3", _condconv, (2, 4, 5, 4), (None,)),
    "ODConv2d": ("grouped s2 d(1,2) K3", _odconv, (3, 4, 5, 4), ("train", "eval")),
    "DCDConv2d": ("6->4 3x3 s2 g2", _dcd, (2, 6, 5, 4), ("train", "eval")),
    "FDYConv2d": ("s(1,2) d(1,2) g2 K3", _fdy, (2, 4, 4, 7), ("train", "eval")),
}
VARIANTS = tuple(name if mode is None else f"{name} {mode}"
                 for name, (_, _, _, modes) in CASES.items() for mode in modes)


def _prepared(make, backend, mode):
    """The layer in ``mode``, with random BatchNorm affine parameters and, for eval, random
    running statistics (the same for every backend: drawn from a fixed seed)."""
    layer = make(backend)
    draw = np.random.default_rng(7)
    for name in sorted(layer.params):
        if name.endswith("bn_weight") or name.endswith(("bn1_weight", "bn2_weight")):
            layer.params[name][...] = 1 + 0.3 * draw.standard_normal(layer.params[name].shape)
        elif name.endswith(("bn_bias", "bn1_bias", "bn2_bias")):
            layer.params[name][...] = 0.5 * draw.standard_normal(layer.params[name].shape)
    if mode == "eval":
        for name in sorted(layer.buffers):
            buffer = layer.buffers[name]
            buffer[...] = (0.5 + draw.random(buffer.shape) if name.endswith("running_var")
                           else 0.3 * draw.standard_normal(buffer.shape))
        layer.eval()
    return layer


def family_rows(backend, rng):
    """Yield (op, configuration, GradcheckReport, |y - y_numpy|) for each variant of
    ``VARIANTS`` that runs on ``backend`` (``verify``'s row format)."""
    for name, (config, make, shape, modes) in CASES.items():
        if backend == "cuda" and name in HOST_ONLY:
            continue
        for mode in modes:
            x = rng.standard_normal(shape)
            layer = _prepared(make, backend, mode)
            report = gradcheck(layer, x, raise_exception=False)
            difference = np.max(np.abs(np.asarray(layer(x))
                                       - _prepared(make, "numpy", mode)(x)))
            yield (name if mode is None else f"{name} {mode}"), config, report, float(difference)
