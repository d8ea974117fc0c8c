"""2-D convolution front-end: validation, then the chosen backend does the loops.

Cross-correlation in NCHW, as PyTorch's ``conv2d``. With G = groups, Cg = C_in / G and
Cog = C_out / G, output channel o (in group g = o // Cog) of sample n is

    y[n, o, h, w] = b[o] + sum_{c < Cg, i < kh, j < kw}
                    W[o, c, i, j] * x_pad[n, g Cg + c, h s0 + i d0, w s1 + j d1]

where x_pad is x zero-padded by (p0, p1). Backward (the adjoints of that sum):

    dx_pad[n, g Cg + c, h s0 + i d0, w s1 + j d1] += W[o, c, i, j] dy[n, o, h, w]
    dW[o, c, i, j] = sum_{h, w} dy[n, o, h, w] x_pad[n, g Cg + c, h s0 + i d0, w s1 + j d1]
    db[o]          = sum_{h, w} dy[n, o, h, w]

Two entry points share one validation and one backend call:

* ``per_sample_conv2d_forward`` - every sample has its own kernel W_n and bias b_n (dynamic
  convolution: y[n] = conv(x[n], W_n) + b_n); gradients are per sample.
* ``conv2d_forward`` - one kernel for the whole batch (ordinary convolution); the kernel
  gradient is summed over the batch.

``check_finite=False`` skips the O(size) scans of x, the kernels and (in backward) dy for NaN and
inf; shapes, dtypes and geometry are always checked. Layers pass it after checking their own
input once, so a forward/backward pair scans each activation a single time.
"""
import numpy as np

from .._validation import (as_pair, check_float_array, check_positive_int, check_same_dtype,
                           check_shape, is_host_array)
from ..backends import DEFAULT_BACKEND, get_backend


def conv_geometry(stride, padding, dilation, groups):
    """Validate and normalise the hyper-parameters -> (stride, padding, dilation, groups)."""
    return (as_pair(stride, "stride", 1), as_pair(padding, "padding", 0),
            as_pair(dilation, "dilation", 1), check_positive_int(groups, "groups"))


def check_conv_channels(in_channels, out_channels, groups):
    """groups must divide both channel counts."""
    for name, count in (("in_channels", in_channels), ("out_channels", out_channels)):
        if count % groups:
            raise ValueError(f"groups={groups} must divide {name}; received {name}={count}")


def _contiguous(a):
    return np.ascontiguousarray(a) if is_host_array(a) else a


def _prepare(x, weight, bias, stride, padding, dilation, groups, per_sample, check_finite):
    """Validate a convolution call; return contiguous (x, w, b) with w (Nw, ...) and the geometry."""
    stride, padding, dilation, groups = conv_geometry(stride, padding, dilation, groups)
    lead = 1 if per_sample else 0
    check_float_array(x, "x", ndim=4, finite=check_finite)
    check_float_array(weight, "weight", ndim=4 + lead, finite=check_finite)
    check_same_dtype(x=x, weight=weight, bias=bias)
    n, c_in, height, width = x.shape
    c_out, c_group, kh, kw = weight.shape[lead:]
    if per_sample and weight.shape[0] != n:
        raise ValueError(f"weight must hold one kernel per sample, shape (N={n}, C_out, "
                         f"C_in/groups, kh, kw); received {tuple(weight.shape)}")
    check_conv_channels(c_in, c_out, groups)
    if c_group * groups != c_in:
        raise ValueError(f"x has C_in={c_in} channels, but weight expects C_in/groups * groups = "
                         f"{c_group} * {groups} = {c_group * groups} (weight shape "
                         f"{tuple(weight.shape)})")
    for axis, size, k, p, d in (("height", height, kh, padding[0], dilation[0]),
                                ("width", width, kw, padding[1], dilation[1])):
        if d * (k - 1) + 1 > size + 2 * p:
            raise ValueError(f"kernel {axis} with dilation ({d} * ({k} - 1) + 1 = {d * (k - 1) + 1}) "
                             f"is larger than the padded input {axis} ({size} + 2 * {p} = "
                             f"{size + 2 * p})")
    if bias is not None:
        check_float_array(bias, "bias", ndim=1 + lead, finite=check_finite)
        check_shape(bias, "bias", (n, c_out) if per_sample else (c_out,))
    w = weight if per_sample else weight[None]
    b = None if bias is None else (bias if per_sample else bias[None])
    return _contiguous(x), _contiguous(w), (None if b is None else _contiguous(b)), \
        (stride, padding, dilation, groups)


def _forward(x, weight, bias, stride, padding, dilation, groups, backend, per_sample,
             check_finite):
    x, w, b, geometry = _prepare(x, weight, bias, stride, padding, dilation, groups, per_sample,
                                 check_finite)
    module = get_backend(backend)
    y = module.conv2d_forward(x, w, b, *geometry)
    cache = {"x": x, "w": w, "has_bias": b is not None, "geometry": geometry,
             "backend": module, "y_shape": tuple(y.shape), "per_sample": per_sample,
             "check_finite": check_finite}
    return y, cache


def _backward(dy, cache):
    if tuple(dy.shape) != cache["y_shape"]:
        raise ValueError(f"dy must have the shape of the forward output {cache['y_shape']}; "
                         f"received {tuple(dy.shape)}")
    check_float_array(dy, "dy", finite=cache["check_finite"])
    check_same_dtype(dy=dy, x=cache["x"])
    dx, dw, db = cache["backend"].conv2d_backward(_contiguous(dy), cache["x"], cache["w"],
                                                  *cache["geometry"], cache["has_bias"])
    if not cache["per_sample"]:
        dw = dw[0]
        db = None if db is None else db[0]
    return dx, dw, db


def per_sample_conv2d_forward(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
                              backend=DEFAULT_BACKEND, check_finite=True):
    """y[n] = conv2d(x[n], weight[n]) + bias[n] -> (y, cache).

    x (N, C_in, H, W); weight (N, C_out, C_in/groups, kh, kw); bias (N, C_out) or None;
    stride, padding, dilation: int or pair; y (N, C_out, H_out, W_out) with
    H_out = floor((H + 2 p0 - d0 (kh - 1) - 1) / s0) + 1 (and likewise W_out).
    """
    return _forward(x, weight, bias, stride, padding, dilation, groups, backend, True,
                    check_finite)


def per_sample_conv2d_backward(dy, cache):
    """(dx, dweight (N, C_out, C_in/g, kh, kw), dbias (N, C_out) or None)."""
    return _backward(dy, cache)


def conv2d_forward(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
                   backend=DEFAULT_BACKEND, check_finite=True):
    """y = conv2d(x, weight) + bias, one kernel for the batch -> (y, cache).

    weight (C_out, C_in/groups, kh, kw); bias (C_out,) or None; otherwise as
    ``per_sample_conv2d_forward``.
    """
    return _forward(x, weight, bias, stride, padding, dilation, groups, backend, False,
                    check_finite)


def conv2d_backward(dy, cache):
    """(dx, dweight (C_out, C_in/g, kh, kw) summed over the batch, dbias (C_out,) or None)."""
    return _backward(dy, cache)

