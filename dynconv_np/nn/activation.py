"""Element-wise activation layers: ReLU, ReLU6, HardSigmoid, HardSwish, Sigmoid.

Formulas and derivatives are in ``dynconv_np.functional.activations``. The layers have no
parameters and accept float arrays of any shape; outputs keep the input's dtype.
"""
from .module import Module
from .._validation import check_float_array
from ..functional.activations import (_hardsigmoid_backward, _hardsigmoid_forward,
                                      _hardswish_backward, _hardswish_forward, _relu6_backward,
                                      _relu6_forward, _relu_backward, _relu_forward,
                                      _sigmoid_backward, _sigmoid_forward)


class _Elementwise(Module):
    """y = f(x) element-wise; subclasses name the functional pair (``_forward``, ``_backward``).
    ``_mask_option``: the forward takes ``mask=False`` in eval mode (keep x, form the mask of
    the gradient only if a backward comes)."""

    _forward = _backward = None
    _mask_option = False

    def forward(self, x):
        check_float_array(x, "x", host=True)
        if self._mask_option and not self.training:
            return self._remember(*type(self)._forward(x, mask=False))
        return self._remember(*type(self)._forward(x))

    def backward(self, dy):
        return type(self)._backward(*self._recall(dy))

    def __repr__(self):
        return f"{type(self).__name__}()"


class ReLU(_Elementwise):
    """y = max(x, 0)."""
    _forward, _backward, _mask_option = _relu_forward, _relu_backward, True


class ReLU6(_Elementwise):
    """y = min(max(x, 0), 6) (MobileNetV2)."""
    _forward, _backward, _mask_option = _relu6_forward, _relu6_backward, True


class HardSigmoid(_Elementwise):
    """y = relu6(x + 3) / 6 (MobileNetV3)."""
    _forward, _backward = _hardsigmoid_forward, _hardsigmoid_backward


class HardSwish(_Elementwise):
    """y = x relu6(x + 3) / 6 (MobileNetV3)."""
    _forward, _backward = _hardswish_forward, _hardswish_backward


class Sigmoid(_Elementwise):
    """y = 1 / (1 + exp(-x)) (the original squeeze-and-excitation gate)."""
    _forward, _backward = _sigmoid_forward, _sigmoid_backward
