"""2-D max and average pooling in NCHW, as PyTorch's ``MaxPool2d`` / ``AvgPool2d``
(ceil_mode=False; average pooling counts the padding zeros, count_include_pad=True).

With kernel (kh, kw), stride (s0, s1) and padding (p0, p1), window (h, w) of channel c covers
the taps x_pad[n, c, h s0 + i, w s1 + j], i < kh, j < kw, where x_pad is x padded by (p0, p1)
on each side (with -inf for max pooling, so padding never wins; with 0 for average pooling), and

    H_out = floor((H + 2 p0 - kh) / s0) + 1          (likewise W_out)

Max:      y[n, c, h, w] = max_{i,j} x_pad[n, c, h s0 + i, w s1 + j]
          dx_pad[n, c, h s0 + i*, w s1 + j*] += dy[n, c, h, w]
          where (i*, j*) is the window's argmax, the first in row-major tap order on ties
          (the subgradient PyTorch takes); overlapping windows add up.
Average:  y[n, c, h, w] = 1/(kh kw) sum_{i,j} x_pad[n, c, h s0 + i, w s1 + j]
          dx_pad[n, c, h s0 + i, w s1 + j] += dy[n, c, h, w] / (kh kw)

The windows are gathered, and their gradients scattered back, with the reference backend's
im2col / col2im (the same tap loops the convolution uses), so pooling has no loops of its own.
"""
import numpy as np

from .._validation import as_pair, check_float_array, check_size, check_upstream, stage_cache
from ..backends.geometry import conv_output_size
from ..backends.reference import col2im, im2col

_NO_DILATION = (1, 1)


def pool2d_geometry(kernel_size, stride=None, padding=0):
    """Validate and normalise -> (kernel_size, stride, padding) as pairs; stride None -> kernel.

    Padding may be at most half the kernel (PyTorch's rule), so every window holds at least one
    element of x.
    """
    kernel_size = as_pair(kernel_size, "kernel_size", 1)
    stride = kernel_size if stride is None else as_pair(stride, "stride", 1)
    padding = as_pair(padding, "padding", 0)
    if any(p > k // 2 for p, k in zip(padding, kernel_size)):
        raise ValueError(f"padding must be at most half of kernel_size (so that every window "
                         f"overlaps the input); received padding={padding} for "
                         f"kernel_size={kernel_size}")
    return kernel_size, stride, padding


def check_pool_input(x, kernel_size, padding):
    """x (N, C, H, W) host array, finite, with H, W >= 1; no larger window than the padded
    input, and no absurd padded size."""
    check_float_array(x, "x", ndim=4, host=True)
    if x.shape[2] == 0 or x.shape[3] == 0:
        raise ValueError(f"x must have at least one pixel (H, W >= 1); received shape "
                         f"{tuple(x.shape)}")
    for axis, size, k, p in (("height", x.shape[2], kernel_size[0], padding[0]),
                             ("width", x.shape[3], kernel_size[1], padding[1])):
        if k > size + 2 * p:
            raise ValueError(f"kernel {axis} {k} is larger than the padded input {axis} "
                             f"({size} + 2 * {p} = {size + 2 * p}); x shape {tuple(x.shape)}")
    check_size(x.shape[:2] + (x.shape[2] + 2 * padding[0], x.shape[3] + 2 * padding[1]),
               "the padded input", f"kernel_size={kernel_size}, padding={padding}")


def _windows(x, kernel_size, stride, padding, pad_value):
    """(taps (N, C, kh kw, H_out, W_out), out_h, out_w) of a checked x."""
    n, c, height, width = x.shape
    out_h, out_w = (conv_output_size(s, k, st, p, 1) for s, k, st, p in
                    zip((height, width), kernel_size, stride, padding))
    x_pad = np.pad(x, ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2),
                   constant_values=pad_value)
    cols = im2col(x_pad, *kernel_size, out_h, out_w, stride, (0, 0), _NO_DILATION, 1)
    return cols.reshape(n, c, kernel_size[0] * kernel_size[1], out_h, out_w), out_h, out_w


def _scatter(dtaps, cache):
    """Adjoint of ``_windows``: add each tap's gradient back onto its input position."""
    dx = col2im(dtaps, cache["x_shape"], *cache["kernel_size"], *cache["out_hw"],
                 cache["stride"], cache["padding"], _NO_DILATION)
    return np.ascontiguousarray(dx)


def max_pool2d_forward(x, kernel_size, stride=None, padding=0):
    """y (N, C, H_out, W_out) = window maxima of x (N, C, H, W) -> (y, cache)."""
    kernel_size, stride, padding = pool2d_geometry(kernel_size, stride, padding)
    check_pool_input(x, kernel_size, padding)
    y, cache = _max_pool2d_forward(x, kernel_size, stride, padding)
    return y, stage_cache("max_pool2d", cache, y)


def max_pool2d_backward(dy, cache):
    """dx: each dy[n, c, h, w] routed to its window's (first) argmax."""
    return _max_pool2d_backward(check_upstream(cache, "max_pool2d", dy=dy), cache)


def avg_pool2d_forward(x, kernel_size, stride=None, padding=0):
    """y (N, C, H_out, W_out) = window means of zero-padded x (N, C, H, W) -> (y, cache)."""
    kernel_size, stride, padding = pool2d_geometry(kernel_size, stride, padding)
    check_pool_input(x, kernel_size, padding)
    y, cache = _avg_pool2d_forward(x, kernel_size, stride, padding)
    return y, stage_cache("avg_pool2d", cache, y)


def avg_pool2d_backward(dy, cache):
    """dx: dy[n, c, h, w] / (kh kw) added to every tap of its window."""
    return _avg_pool2d_backward(check_upstream(cache, "avg_pool2d", dy=dy), cache)


def _max_pool2d_forward(x, kernel_size, stride, padding):
    taps, out_h, out_w = _windows(x, kernel_size, stride, padding, -np.inf)
    argmax = taps.argmax(axis=2)
    y = np.take_along_axis(taps, argmax[:, :, None], axis=2)[:, :, 0]
    return y, {"argmax": argmax, "x_shape": tuple(x.shape), "kernel_size": kernel_size,
               "stride": stride, "padding": padding, "out_hw": (out_h, out_w)}


def _max_pool2d_backward(dy, cache):
    taps = np.arange(cache["kernel_size"][0] * cache["kernel_size"][1])[:, None, None]
    hit = cache["argmax"][:, :, None] == taps
    return _scatter(np.where(hit, dy[:, :, None], 0).astype(dy.dtype, copy=False), cache)


def _avg_pool2d_forward(x, kernel_size, stride, padding):
    taps, out_h, out_w = _windows(x, kernel_size, stride, padding, 0)
    return taps.mean(axis=2), {"x_shape": tuple(x.shape), "kernel_size": kernel_size,
                               "stride": stride, "padding": padding, "out_hw": (out_h, out_w)}


def _avg_pool2d_backward(dy, cache):
    count = cache["kernel_size"][0] * cache["kernel_size"][1]
    dtaps = np.broadcast_to((dy / count)[:, :, None], dy.shape[:2] + (count,) + dy.shape[2:])
    return _scatter(dtaps, cache)
