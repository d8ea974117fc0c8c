"""Element-wise activation layers: ReLU, ReLU6, HardSigmoid, HardSwish, Sigmoid.

Formulas and derivatives are in ``dynconv_np.functional.activations``. The layers have no
parameters and accept float arrays of any shape; outputs keep the input's dtype.
"""
from ._layer import Layer
from .._validation import check_float_array
from ..functional.activations import (hardsigmoid_backward, hardsigmoid_forward,
                                      hardswish_backward, hardswish_forward, relu6_backward,
                                      relu6_forward, relu_backward, relu_forward,
                                      sigmoid_backward, sigmoid_forward)


class _Elementwise(Layer):
    """y = f(x) element-wise; subclasses name the functional pair (``_forward``, ``_backward``)."""

    _forward = _backward = None

    def forward(self, x):
        check_float_array(x, "x")
        return self._remember(*type(self)._forward(x))

    def backward(self, dy):
        return type(self)._backward(dy, self._recall(dy))

    def __repr__(self):
        return f"{type(self).__name__}()"


class ReLU(_Elementwise):
    """y = max(x, 0)."""
    _forward, _backward = relu_forward, relu_backward


class ReLU6(_Elementwise):
    """y = min(max(x, 0), 6) (MobileNetV2)."""
    _forward, _backward = relu6_forward, relu6_backward


class HardSigmoid(_Elementwise):
    """y = relu6(x + 3) / 6 (MobileNetV3)."""
    _forward, _backward = hardsigmoid_forward, hardsigmoid_backward


class HardSwish(_Elementwise):
    """y = x relu6(x + 3) / 6 (MobileNetV3)."""
    _forward, _backward = hardswish_forward, hardswish_backward


class Sigmoid(_Elementwise):
    """y = 1 / (1 + exp(-x)) (the original squeeze-and-excitation gate)."""
    _forward, _backward = sigmoid_forward, sigmoid_backward
