"""MobileNetV2 (Sandler et al. 2018) and DY-MobileNetV2 (paper section 4), as torchvision builds it.

    stem      3x3 conv stride 2 -> 32 w channels, BatchNorm, ReLU6          (static in DY nets)
    blocks    inverted residuals (t, c, n, s) from the table below:
              1x1 expand to t * C_in (skipped when t = 1), BatchNorm, ReLU6,
              3x3 depthwise stride s, BatchNorm, ReLU6,
              1x1 project to c, BatchNorm (linear bottleneck);
              y = x + block(x) when s = 1 and C_in = c
    head      1x1 conv -> 1280 max(1, w), BatchNorm, ReLU6, global average pool, Dropout(0.2),
              Linear -> num_classes                                         (Linear stays static)

Channels c w are rounded with ``make_divisible(c w, 8)``. With ``dynamic=True`` every convolution
except the stem is an ``nn.DynamicConv2d`` (depthwise ones too); ``dynamic`` may also name a variant, "dyconv" (= True), "condconv", "odconv"
or "dcd" (``models.builder``): that layer instead.
"""
import numpy as np

from .builder import LayerBuilder
from .._validation import check_positive_int
from ..backends import DEFAULT_BACKEND
from ..nn import Dropout, GlobalAvgPool2d, ReLU6, Residual, Sequential, make_divisible

# expansion t, output channels c, repeats n, first stride s (MobileNetV2 paper, Table 2)
INVERTED_RESIDUAL_SETTING = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def check_width(width):
    """A width multiplier must be a finite real number > 0."""
    if isinstance(width, bool) or not isinstance(width, (int, float, np.floating, np.integer)) \
            or not np.isfinite(width) or width <= 0:
        raise ValueError(f"width must be a finite number > 0 (e.g. 1.0, 0.75, 0.5, 0.35); "
                         f"received {width!r}")
    return float(width)


def inverted_residual(builder, in_channels, out_channels, stride, expansion):
    """One MobileNetV2 block (module docstring); a ``Residual`` when stride 1 keeps the shape."""
    hidden = int(round(in_channels * expansion))
    layers = []
    if expansion != 1:
        layers += builder.conv_bn(in_channels, hidden, 1, activation=ReLU6)
    layers += builder.conv_bn(hidden, hidden, 3, stride, groups=hidden, activation=ReLU6)
    layers += builder.conv_bn(hidden, out_channels, 1)
    body = Sequential(*layers)
    return Residual(body) if stride == 1 and in_channels == out_channels else body


def mobilenet_v2(width=1.0, dynamic=False, num_kernels=4, num_classes=1000, temperature=30.0,
                 backend=DEFAULT_BACKEND, dtype=np.float32, rng=None, attention_reduction=4,
                 attention_min_hidden=4, attention_hidden=None):
    """MobileNetV2 with width multiplier ``width`` (1.0, 0.75, 0.5, 0.35, ...) -> nn.Sequential.

    Children: [stem, block_1, ..., block_17, head]. ``dynamic=True`` gives DY-MobileNetV2 with
    K = ``num_kernels`` kernels per convolution and initial temperature ``temperature``;
    attention_reduction, attention_min_hidden, attention_hidden: the width of every dynamic
    convolution's attention branch (``models.builder.LayerBuilder``).
    """
    width = check_width(width)
    num_classes = check_positive_int(num_classes, "num_classes")
    builder = LayerBuilder(dynamic, num_kernels, temperature, backend, dtype, rng,
                           attention_reduction, attention_min_hidden, attention_hidden)
    channels = make_divisible(32 * width)
    last_channels = make_divisible(1280 * max(1.0, width))
    stem = Sequential(*builder.conv_bn(3, channels, 3, stride=2, activation=ReLU6, static=True))
    blocks = []
    for expansion, c, repeats, first_stride in INVERTED_RESIDUAL_SETTING:
        out_channels = make_divisible(c * width)
        for index in range(repeats):
            stride = first_stride if index == 0 else 1
            blocks.append(inverted_residual(builder, channels, out_channels, stride, expansion))
            channels = out_channels
    head = Sequential(*builder.conv_bn(channels, last_channels, 1, activation=ReLU6),
                      GlobalAvgPool2d(), Dropout(0.2, rng=builder.rng),
                      builder.linear(last_channels, num_classes))
    return Sequential(stem, *blocks, head)
