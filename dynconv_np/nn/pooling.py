"""Pooling layers: MaxPool2d, AvgPool2d (windowed, as PyTorch's) and GlobalAvgPool2d
((N, C, H, W) -> (N, C), the pooling before a classifier).

Formulas and backward passes: ``dynconv_np.functional.pool2d`` (windowed) and
``dynconv_np.functional.pooling`` (global average, shared with the attention branch).
"""
import numpy as np

from .module import Module
from .._validation import check_float_array
from ..backends import reference
from ..functional.pool2d import (_avg_pool2d_backward, _avg_pool2d_forward, _max_pool2d_backward,
                                 _max_pool2d_forward, check_pool_input, pool2d_geometry)
from ..functional.pooling import _global_avg_pool_forward, check_planes


class _Pool2d(Module):
    """Windowed pooling; subclasses name the functional pair (``_forward``, ``_backward``)."""

    _forward = _backward = None

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size, self.stride, self.padding = pool2d_geometry(kernel_size, stride, padding)

    def forward(self, x):
        check_pool_input(x, self.kernel_size, self.padding)
        return self._remember(*type(self)._forward(x, self.kernel_size, self.stride, self.padding))

    def backward(self, dy):
        return type(self)._backward(*self._recall(dy))

    def __repr__(self):
        return (f"{type(self).__name__}(kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding})")


class MaxPool2d(_Pool2d):
    """y = maximum over each kh x kw window (padding never wins); stride defaults to the kernel."""
    _forward, _backward = _max_pool2d_forward, _max_pool2d_backward


class AvgPool2d(_Pool2d):
    """y = mean over each kh x kw window, padding zeros included; stride defaults to the kernel."""
    _forward, _backward = _avg_pool2d_forward, _avg_pool2d_backward


class GlobalAvgPool2d(Module):
    """y[n, c] = mean_{h,w} x[n, c, h, w]: (N, C, H, W) -> (N, C)."""

    def forward(self, x):
        check_float_array(x, "x", ndim=4, host=True)
        check_planes(x)
        return self._remember(*_global_avg_pool_forward(x, reference))

    def backward(self, dy):
        dy, cache = self._recall(dy)
        dx = np.zeros(cache["x_shape"], dtype=dy.dtype)
        reference.add_spatial_mean_grad(dx, dy)
        return dx

    def __repr__(self):
        return "GlobalAvgPool2d()"
