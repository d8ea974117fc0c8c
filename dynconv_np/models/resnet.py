"""ResNet-18 and ResNet-10 (He et al. 2016) and their DY versions (paper section 4.1).

    stem      7x7 conv stride 2 -> 64, BatchNorm, ReLU, 3x3 max pool stride 2   (static in DY nets)
    stages    64, 128, 256, 512 channels; stride 2 in the first block of stages 2-4;
              basic block: y = relu(bn(conv3x3(relu(bn(conv3x3_s(x))))) + shortcut(x)),
              shortcut = identity, or 1x1 conv stride s + BatchNorm when the shape changes
    head      global average pool, Linear 512 -> num_classes                  (Linear stays static)

ResNet-18 has [2, 2, 2, 2] basic blocks per stage, ResNet-10 [1, 1, 1, 1] (as in the paper). With
``dynamic=True`` every convolution except the stem is an ``nn.DynamicConv2d``, the 1x1 shortcut
convolutions included. ``dynamic`` may also name a variant, "dyconv" (= True), "condconv",
"odconv" or "dcd" (``models.builder``): that layer instead of DynamicConv2d.
"""
import numpy as np

from .builder import LayerBuilder
from .mobilenetv2 import check_width
from .._validation import check_positive_int
from ..backends import DEFAULT_BACKEND
from ..nn import GlobalAvgPool2d, MaxPool2d, ReLU, Residual, Sequential, make_divisible

STAGE_CHANNELS = (64, 128, 256, 512)


def basic_block(builder, in_channels, out_channels, stride):
    """[Residual(conv-bn-relu-conv-bn, shortcut), ReLU] as a Sequential (module docstring)."""
    body = Sequential(*builder.conv_bn(in_channels, out_channels, 3, stride, activation=ReLU),
                      *builder.conv_bn(out_channels, out_channels, 3))
    shortcut = None
    if stride != 1 or in_channels != out_channels:
        shortcut = Sequential(*builder.conv_bn(in_channels, out_channels, 1, stride))
    return Sequential(Residual(body, shortcut), ReLU())


def resnet(blocks_per_stage, dynamic=False, num_kernels=4, num_classes=1000, temperature=30.0,
           backend=DEFAULT_BACKEND, dtype=np.float32, rng=None, attention_reduction=4,
           attention_min_hidden=4, attention_hidden=None, width=1.0):
    """ResNet of basic blocks, ``blocks_per_stage`` (4 ints) -> Sequential [stem, blocks, head].

    width: channel multiplier (1.0: the paper's; 0.25 gives 16, 32, 64, 128 channels), every
    width rounded with ``make_divisible(c width, 8)``. attention_reduction,
    attention_min_hidden, attention_hidden: the width of every dynamic
    convolution's attention branch (``models.builder.LayerBuilder``)."""
    if len(blocks_per_stage) != 4 or not all(isinstance(b, int) and b >= 1
                                             for b in blocks_per_stage):
        raise ValueError(f"blocks_per_stage must be 4 positive ints; received {blocks_per_stage!r}")
    num_classes = check_positive_int(num_classes, "num_classes")
    width = check_width(width)
    builder = LayerBuilder(dynamic, num_kernels, temperature, backend, dtype, rng,
                           attention_reduction, attention_min_hidden, attention_hidden)
    channels = make_divisible(64 * width)
    stem = Sequential(builder.conv(3, channels, 7, stride=2, static=True),
                      builder.batch_norm(channels), ReLU(), MaxPool2d(3, stride=2, padding=1))
    blocks = []
    for stage, (stage_channels, repeats) in enumerate(zip(STAGE_CHANNELS, blocks_per_stage)):
        out_channels = make_divisible(stage_channels * width)
        for index in range(repeats):
            stride = 2 if stage > 0 and index == 0 else 1
            blocks.append(basic_block(builder, channels, out_channels, stride))
            channels = out_channels
    head = Sequential(GlobalAvgPool2d(), builder.linear(channels, num_classes))
    return Sequential(stem, *blocks, head)


def resnet18(dynamic=False, num_kernels=4, num_classes=1000, temperature=30.0,
             backend=DEFAULT_BACKEND, dtype=np.float32, rng=None, attention_reduction=4,
             attention_min_hidden=4, attention_hidden=None, width=1.0):
    """ResNet-18 (or DY-ResNet-18): [2, 2, 2, 2] basic blocks (attention_*, width: as
    ``resnet``)."""
    return resnet((2, 2, 2, 2), dynamic, num_kernels, num_classes, temperature, backend, dtype, rng,
                  attention_reduction, attention_min_hidden, attention_hidden, width)


def resnet10(dynamic=False, num_kernels=4, num_classes=1000, temperature=30.0,
             backend=DEFAULT_BACKEND, dtype=np.float32, rng=None, attention_reduction=4,
             attention_min_hidden=4, attention_hidden=None, width=1.0):
    """ResNet-10 (or DY-ResNet-10): [1, 1, 1, 1] basic blocks, as in the paper (attention_*,
    width: as ``resnet``)."""
    return resnet((1, 1, 1, 1), dynamic, num_kernels, num_classes, temperature, backend, dtype, rng,
                  attention_reduction, attention_min_hidden, attention_hidden, width)
