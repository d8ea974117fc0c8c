"""Element-wise activations and their backward passes.

Each backward multiplies the upstream gradient by the derivative, taking the one-sided value 0
(the flat side) at the kinks:

ReLU:         y = max(x, 0)                     dx = dy [x > 0]
ReLU6:        y = min(max(x, 0), 6)             dx = dy [0 < x < 6]
HardSigmoid:  y = relu6(x + 3) / 6              dx = dy [-3 < x < 3] / 6
HardSwish:    y = x relu6(x + 3) / 6            dx = dy (relu6(x + 3) / 6 + [-3 < x < 3] x / 6)
Sigmoid:      y = 1 / (1 + exp(-x))             dx = dy y (1 - y)

HardSigmoid and HardSwish are MobileNetV3's (Howard et al. 2019) piecewise-linear stand-ins for
the sigmoid and the swish; the sigmoid is evaluated as exp(-|x|) / (1 + exp(-|x|)) on the
negative side so that no exponent overflows.
"""
import numpy as np

from .._validation import check_float_array, check_upstream, stage_cache


def relu_forward(x):
    """y = max(x, 0) -> (y, cache)."""
    return _checked_forward("relu", _relu_forward, x)


def relu_backward(dy, cache):
    """dx = dy where x > 0, else 0."""
    return _relu_backward(check_upstream(cache, "relu", dy=dy), cache)


def relu6_forward(x):
    """y = min(max(x, 0), 6) -> (y, cache)."""
    return _checked_forward("relu6", _relu6_forward, x)


def relu6_backward(dy, cache):
    """dx = dy where 0 < x < 6, else 0."""
    return _relu6_backward(check_upstream(cache, "relu6", dy=dy), cache)


def hardsigmoid_forward(x):
    """y = relu6(x + 3) / 6 -> (y, cache)."""
    return _checked_forward("hardsigmoid", _hardsigmoid_forward, x)


def hardsigmoid_backward(dy, cache):
    """dx = dy / 6 where -3 < x < 3, else 0."""
    return _hardsigmoid_backward(check_upstream(cache, "hardsigmoid", dy=dy), cache)


def hardswish_forward(x):
    """y = x relu6(x + 3) / 6 -> (y, cache)."""
    return _checked_forward("hardswish", _hardswish_forward, x)


def hardswish_backward(dy, cache):
    """dx = dy (hardsigmoid(x) + x [-3 < x < 3] / 6)."""
    return _hardswish_backward(check_upstream(cache, "hardswish", dy=dy), cache)


def sigmoid_forward(x):
    """y = 1 / (1 + exp(-x)), computed without overflow -> (y, cache)."""
    return _checked_forward("sigmoid", _sigmoid_forward, x)


def sigmoid_backward(dy, cache):
    """dx = dy y (1 - y)."""
    return _sigmoid_backward(check_upstream(cache, "sigmoid", dy=dy), cache)


def _checked_forward(stage, forward, x):
    check_float_array(x, "x", host=True)
    y, cache = forward(x)
    return y, stage_cache(stage, cache, y)


# -- the unchecked implementations (compositions and layers call these) --------------------
# ReLU and ReLU6 keep the mask of x where their gradient is 1 (a byte per element); with
# mask=False (inference, where a backward is rare) they keep x instead and the backward forms
# the mask from it: one pass over x in the forward instead of three or four.
def _relu_forward(x, mask=True):
    return np.maximum(x, 0), ({"mask": x > 0} if mask else {"x": x})


def _relu_backward(dy, cache):
    mask = cache["mask"] if "mask" in cache else cache["x"] > 0
    return np.where(mask, dy, 0).astype(dy.dtype, copy=False)


def _relu6_forward(x, mask=True):
    return np.clip(x, 0, 6), ({"mask": _relu6_mask(x)} if mask else {"x": x})


def _relu6_mask(x):
    return (x > 0) & (x < 6)


def _relu6_backward(dy, cache):
    mask = cache["mask"] if "mask" in cache else _relu6_mask(cache["x"])
    return np.where(mask, dy, 0).astype(dy.dtype, copy=False)


def _hardsigmoid_forward(x):
    return np.clip(x + 3, 0, 6) / 6, {"mask": (x > -3) & (x < 3)}


def _hardsigmoid_backward(dy, cache):
    return np.where(cache["mask"], dy / 6, 0).astype(dy.dtype, copy=False)


def _hardswish_forward(x):
    gate = x + 3  # relu6(x + 3) / 6 in place: four passes over x, the mask left to backward
    np.clip(gate, 0, 6, out=gate)
    gate /= 6
    return x * gate, {"x": x, "gate": gate}


def _hardswish_backward(dy, cache):
    x, gate = cache["x"], cache["gate"]
    inside = (x > -3) & (x < 3)
    slope = gate + np.where(inside, x / 6, 0).astype(x.dtype, copy=False)
    return dy * slope


def _sigmoid_forward(x):
    e = np.exp(-np.abs(x))
    y = np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)
    return y, {"y": y.copy()}  # the caller may modify y; backward reads its own copy


def _sigmoid_backward(dy, cache):
    y = cache["y"]
    return dy * y * (1 - y)
