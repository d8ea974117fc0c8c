"""SqueezeExcite: MobileNetV3's squeeze-and-excitation block (Hu et al. 2018; Howard et al. 2019).

    s = gate(FC2(relu(FC1(GAP(x)))))           s (N, C), FC1: C -> S, FC2: S -> C
    y = x * s[:, :, None, None]

with S = make_divisible(C // reduction, 8) and gate the hard sigmoid (MobileNetV3) or the
sigmoid (the original SE). x reaches y twice, directly and through s, so

    dx = dy * s + excite'^T ds,      ds[n, c] = sum_{h,w} dy x        (functional.channel_scale)

The FCs are ``Linear`` layers (a 1x1 convolution on a 1x1 map is the same map).
"""
import numpy as np

from .module import Module, check_layer_input, layer_dtype
from .activation import HardSigmoid, ReLU, Sigmoid
from .containers import Sequential
from .init import make_rng
from .linear import Linear
from .pooling import GlobalAvgPool2d
from .._validation import check_positive_int
from ..functional.channel_scale import _channel_scale_backward, _channel_scale_forward

GATES = {"hardsigmoid": HardSigmoid, "sigmoid": Sigmoid}


def make_divisible(value, divisor=8, min_value=None):
    """Round ``value`` to the nearest multiple of ``divisor`` (at least ``min_value``, default
    ``divisor``), going up one step if rounding lost more than 10% - the channel rule of
    MobileNetV2/V3 (``_make_divisible`` in their reference code)."""
    divisor = check_positive_int(divisor, "divisor")
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class SqueezeExcite(Module):
    """y = x * gate(FC2(relu(FC1(GAP(x))))) for x (N, channels, H, W).

    ``squeeze_channels`` = make_divisible(channels // reduction, 8). The branch is the child
    ``excite`` (a Sequential: GlobalAvgPool2d, Linear, ReLU, Linear, gate), so its parameters
    are named "excite.1.weight", "excite.1.bias", "excite.3.weight", "excite.3.bias".
    """

    def __init__(self, channels, reduction=4, gate="hardsigmoid", dtype=np.float32, rng=None):
        super().__init__()
        self.channels = check_positive_int(channels, "channels")
        self.reduction = check_positive_int(reduction, "reduction")
        if gate not in GATES:
            raise ValueError(f"gate must be one of {sorted(GATES)}; received {gate!r}")
        self.gate = gate
        self.dtype = layer_dtype(dtype)
        rng = make_rng(rng)
        self.squeeze_channels = make_divisible(self.channels // self.reduction, 8)
        self.excite = Sequential(
            GlobalAvgPool2d(),
            Linear(self.channels, self.squeeze_channels, dtype=self.dtype, rng=rng),
            ReLU(),
            Linear(self.squeeze_channels, self.channels, dtype=self.dtype, rng=rng),
            GATES[gate]())

    def named_children(self):
        return [("excite", self.excite)]

    def forward(self, x):
        x = check_layer_input(self, x, 4, self.channels, host=True)
        return self._remember(*_channel_scale_forward(x, self.excite(x)))

    def backward(self, dy):
        dx_direct, dscale = _channel_scale_backward(*self._recall(dy))
        return dx_direct + self.excite.backward(dscale)

    def __repr__(self):
        return (f"SqueezeExcite({self.channels}, squeeze_channels={self.squeeze_channels}, "
                f"gate={self.gate!r})")
