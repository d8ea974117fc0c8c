"""Stateful layers with ``params`` / ``grads`` dicts, built only from ``dynconv_np.functional``."""
from .activation import HardSigmoid, HardSwish, ReLU, ReLU6, Sigmoid
from .containers import Residual, Sequential
from .condconv import CondConv2d, CondConvBlock, CondConvRouting
from .conv import Conv2d
from .dcd import DCDConv2d
from .dropout import Dropout
from .dynamic import DynamicConv2d, DynamicLinear
from .fdy import FDYConv2d
from .linear import Linear
from .module import Module, is_dynamic
from .normalization import BatchNorm2d
from .odconv import ODConv2d
from .pooling import AvgPool2d, GlobalAvgPool2d, MaxPool2d
from .se import SqueezeExcite, make_divisible
from .shape import Flatten

__all__ = ["AvgPool2d", "BatchNorm2d", "Conv2d", "Dropout", "DynamicConv2d", "DynamicLinear",
           "Flatten", "GlobalAvgPool2d", "HardSigmoid", "HardSwish", "Linear", "MaxPool2d",
           "Module", "ReLU", "ReLU6", "Residual", "Sequential", "Sigmoid", "SqueezeExcite",
           "is_dynamic", "make_divisible"]
__all__ += ["CondConv2d", "CondConvBlock", "CondConvRouting", "ODConv2d"]
__all__ += ["DCDConv2d", "FDYConv2d"]
