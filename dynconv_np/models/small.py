"""The demo's small CNN and its dynamic twin (same depth, same width).

For an input of C x H x W and width w:

    stem     3x3 conv C -> w, BatchNorm, ReLU                          (always static)
    down     3x3 conv c -> 2c, stride 2, BatchNorm, ReLU               repeated while the
                                                                       feature map is > 4 x 4
    head     3x3 conv c -> c, BatchNorm, ReLU
    classify global average pool, Linear c -> num_classes             (always static)

On the 8 x 8 digits that is 8x8x1 -> 8x8xw -> 4x4x2w -> 4x4x2w -> 2w -> 10: three convolutions,
of which the dynamic twin makes every one but the first a ``DynamicConv2d`` (paper section 3.2:
"every convolution layer is dynamic except the first"; the classifier stays static). On 28 x 28
(MNIST) and 32 x 32 (CIFAR-10) three stride-2 stages bring the map to 4 x 4 (channels w, 2w, 4w,
8w). The layers are made by ``models.builder.LayerBuilder``, so the static and dynamic networks
differ only in the convolution class. ``dynamic`` may also name a variant, "dyconv" (= True),
"condconv", "odconv" or "dcd" (``models.builder``), for the demo's ``--variant``.
"""
import numpy as np

from .builder import LayerBuilder
from ..backends import DEFAULT_BACKEND
from ..nn import GlobalAvgPool2d, ReLU, Sequential
from .._validation import check_positive_int


def small_cnn(image_shape=(1, 8, 8), num_classes=10, width=8, dynamic=False, num_kernels=4,
              temperature=30.0, backend=DEFAULT_BACKEND, dtype=np.float32, rng=None,
              attention_reduction=4, attention_min_hidden=4, attention_hidden=None):
    """The small CNN above -> ``nn.Sequential`` mapping (N, C, H, W) to logits (N, num_classes).

    image_shape: (C, H, W); width: channels of the stem (w); dynamic: make every convolution but
    the first dynamic (K = num_kernels kernels, initial temperature ``temperature``); backend,
    dtype, rng: as for every layer (one Generator seeds the whole network);
    attention_reduction, attention_min_hidden, attention_hidden: the width of every dynamic
    convolution's attention branch (``models.builder.LayerBuilder``).
    """
    if not (isinstance(image_shape, (tuple, list)) and len(image_shape) == 3):
        raise ValueError(f"image_shape must be (C, H, W); received {image_shape!r}")
    channels, height, width_px = (check_positive_int(s, "image_shape entries") for s in image_shape)
    num_classes = check_positive_int(num_classes, "num_classes")
    width = check_positive_int(width, "width")
    build = LayerBuilder(dynamic, num_kernels, temperature, backend, dtype, rng,
                         attention_reduction, attention_min_hidden, attention_hidden)
    layers = build.conv_bn(channels, width, 3, activation=ReLU, static=True)
    c, size = width, min(height, width_px)
    while size > 4:
        layers += build.conv_bn(c, 2 * c, 3, stride=2, activation=ReLU)
        c, size = 2 * c, (size + 1) // 2
    layers += build.conv_bn(c, c, 3, activation=ReLU)
    layers += [GlobalAvgPool2d(), build.linear(c, num_classes)]
    return Sequential(*layers)
