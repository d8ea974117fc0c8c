"""MobileNetV3-Small and -Large (Howard et al. 2019) and their DY versions (torchvision's layout).

    stem      3x3 conv stride 2 -> 16, BatchNorm, HardSwish                 (static in DY nets)
    blocks    bottlenecks (kernel k, expanded e, out c, SE, activation, stride s), tables below:
              1x1 expand to e (skipped when e = C_in), BatchNorm, activation,
              k x k depthwise stride s, BatchNorm, activation,
              squeeze-and-excite (squeezed channels make_divisible(e / 4, 8), hard-sigmoid gate),
              1x1 project to c, BatchNorm;  y = x + block(x) when s = 1 and C_in = c
    head      1x1 conv -> 6 c_last, BatchNorm, HardSwish, global average pool,
              Linear -> 1024 (Small) / 1280 (Large), HardSwish, Dropout(0.2),
              Linear -> num_classes                                         (Linears stay static)

BatchNorm uses eps = 1e-3 and momentum = 0.01, as torchvision's MobileNetV3. With
``dynamic=True`` every convolution except the stem is an ``nn.DynamicConv2d``; the SE blocks are
fully connected layers on a pooled vector and stay static, like the classifier. ``dynamic`` also
takes a variant name (``models.builder``; the family papers use MobileNetV2 and ResNet).
"""
import numpy as np

from .builder import LayerBuilder
from .._validation import check_positive_int
from ..backends import DEFAULT_BACKEND
from ..nn import (Dropout, GlobalAvgPool2d, HardSwish, ReLU, Residual, Sequential,
                  SqueezeExcite)

_BN = {"eps": 1e-3, "momentum": 0.01}

# in, kernel, expanded, out, squeeze-excite, activation ("RE" ReLU, "HS" HardSwish), stride
# (MobileNetV3 paper, Tables 1 and 2)
LARGE_SETTING = (
    (16, 3, 16, 16, False, "RE", 1),
    (16, 3, 64, 24, False, "RE", 2),
    (24, 3, 72, 24, False, "RE", 1),
    (24, 5, 72, 40, True, "RE", 2),
    (40, 5, 120, 40, True, "RE", 1),
    (40, 5, 120, 40, True, "RE", 1),
    (40, 3, 240, 80, False, "HS", 2),
    (80, 3, 200, 80, False, "HS", 1),
    (80, 3, 184, 80, False, "HS", 1),
    (80, 3, 184, 80, False, "HS", 1),
    (80, 3, 480, 112, True, "HS", 1),
    (112, 3, 672, 112, True, "HS", 1),
    (112, 5, 672, 160, True, "HS", 2),
    (160, 5, 960, 160, True, "HS", 1),
    (160, 5, 960, 160, True, "HS", 1),
)
SMALL_SETTING = (
    (16, 3, 16, 16, True, "RE", 2),
    (16, 3, 72, 24, False, "RE", 2),
    (24, 3, 88, 24, False, "RE", 1),
    (24, 5, 96, 40, True, "HS", 2),
    (40, 5, 240, 40, True, "HS", 1),
    (40, 5, 240, 40, True, "HS", 1),
    (40, 5, 120, 48, True, "HS", 1),
    (48, 5, 144, 48, True, "HS", 1),
    (48, 5, 288, 96, True, "HS", 2),
    (96, 5, 576, 96, True, "HS", 1),
    (96, 5, 576, 96, True, "HS", 1),
)
_ACTIVATIONS = {"RE": ReLU, "HS": HardSwish}


def bottleneck(builder, in_channels, kernel_size, expanded, out_channels, use_se, activation,
               stride):
    """One MobileNetV3 block (module docstring); a ``Residual`` when stride 1 keeps the shape."""
    activation = _ACTIVATIONS[activation]
    layers = []
    if expanded != in_channels:
        layers += builder.conv_bn(in_channels, expanded, 1, activation=activation, **_BN)
    layers += builder.conv_bn(expanded, expanded, kernel_size, stride, groups=expanded,
                              activation=activation, **_BN)
    if use_se:
        layers.append(SqueezeExcite(expanded, reduction=4, gate="hardsigmoid",
                                    dtype=builder.dtype, rng=builder.rng))
    layers += builder.conv_bn(expanded, out_channels, 1, **_BN)
    body = Sequential(*layers)
    return Residual(body) if stride == 1 and in_channels == out_channels else body


def _mobilenet_v3(setting, last_channels, dynamic, num_kernels, num_classes, temperature,
                  backend, dtype, rng, *attention):
    num_classes = check_positive_int(num_classes, "num_classes")
    builder = LayerBuilder(dynamic, num_kernels, temperature, backend, dtype, rng, *attention)
    stem = Sequential(*builder.conv_bn(3, setting[0][0], 3, stride=2, activation=HardSwish,
                                       static=True, **_BN))
    blocks = [bottleneck(builder, *row) for row in setting]
    final = setting[-1][3]
    head = Sequential(*builder.conv_bn(final, 6 * final, 1, activation=HardSwish, **_BN),
                      GlobalAvgPool2d(), builder.linear(6 * final, last_channels), HardSwish(),
                      Dropout(0.2, rng=builder.rng), builder.linear(last_channels, num_classes))
    return Sequential(stem, *blocks, head)


def mobilenet_v3_small(dynamic=False, num_kernels=4, num_classes=1000, temperature=30.0,
                       backend=DEFAULT_BACKEND, dtype=np.float32, rng=None, attention_reduction=4,
                       attention_min_hidden=4, attention_hidden=None):
    """MobileNetV3-Small (or DY-MobileNetV3-Small) -> nn.Sequential [stem, 11 blocks, head].

    attention_reduction, attention_min_hidden, attention_hidden: the width of every dynamic
    convolution's attention branch (``models.builder.LayerBuilder``)."""
    return _mobilenet_v3(SMALL_SETTING, 1024, dynamic, num_kernels, num_classes, temperature,
                         backend, dtype, rng, attention_reduction, attention_min_hidden,
                         attention_hidden)


def mobilenet_v3_large(dynamic=False, num_kernels=4, num_classes=1000, temperature=30.0,
                       backend=DEFAULT_BACKEND, dtype=np.float32, rng=None, attention_reduction=4,
                       attention_min_hidden=4, attention_hidden=None):
    """MobileNetV3-Large (or DY-MobileNetV3-Large) -> nn.Sequential [stem, 15 blocks, head]
    (attention_*: as ``mobilenet_v3_small``)."""
    return _mobilenet_v3(LARGE_SETTING, 1280, dynamic, num_kernels, num_classes, temperature,
                         backend, dtype, rng, attention_reduction, attention_min_hidden,
                         attention_hidden)
