"""Per-channel rescaling of a feature map, the "excite" step of squeeze-and-excitation
(Hu et al. 2018; MobileNetV3's SE block):

    y[n, c, h, w] = x[n, c, h, w] s[n, c]
    dx[n, c, h, w] = dy[n, c, h, w] s[n, c],     ds[n, c] = sum_{h,w} dy[n, c, h, w] x[n, c, h, w]
"""
import numpy as np

from .._validation import (check_float_array, check_same_dtype, check_shape, check_upstream,
                           stage_cache)


def channel_scale_forward(x, s):
    """y = x * s[:, :, None, None]; x (N, C, H, W), s (N, C) -> (y, cache)."""
    check_float_array(x, "x", ndim=4, host=True)
    check_float_array(s, "s", ndim=2, host=True)
    check_shape(s, "s", tuple(x.shape[:2]))
    check_same_dtype(x=x, s=s)
    y, cache = _channel_scale_forward(x, s)
    return y, stage_cache("channel_scale", cache, y)


def channel_scale_backward(dy, cache):
    """(dx, ds) of ``channel_scale_forward``."""
    return _channel_scale_backward(check_upstream(cache, "channel_scale", dy=dy), cache)


def _channel_scale_forward(x, s):
    return x * s[:, :, None, None], {"x": x, "s": s}


def _channel_scale_backward(dy, cache):
    x, s = cache["x"], cache["s"]
    return dy * s[:, :, None, None], np.sum(dy * x, axis=(2, 3))
