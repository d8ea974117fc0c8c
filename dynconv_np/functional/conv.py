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
"""
from .._validation import (as_pair, check_float_array, check_positive_int, check_same_dtype,
                           check_shape, check_size, check_upstream, contiguous, stage_cache)
from ..backends import DEFAULT_BACKEND, check_placement, get_backend
from ..backends.geometry import conv_output_shape

def conv_geometry(stride, padding, dilation, groups):
    """Validate and normalise the hyper-parameters -> (stride, padding, dilation, groups)."""
    return (as_pair(stride, "stride", 1), as_pair(padding, "padding", 0),
            as_pair(dilation, "dilation", 1), check_positive_int(groups, "groups"))


def check_conv_channels(in_channels, out_channels, groups):
    """groups must divide both channel counts."""
    for name, count in (("in_channels", in_channels), ("out_channels", out_channels)):
        if count % groups:
            raise ValueError(f"groups={groups} must divide {name}; received {name}={count}")


def check_conv_args(x, weight, bias, geometry, per_sample, finite=True, finite_weight=True):
    """Validate a convolution's arrays against each other and the geometry: x (N, C_in, H, W),
    weight ([N,] C_out, C_in/groups, kh, kw), bias ([N,] C_out) or None; one float dtype;
    x finite unless ``finite=False``, weight unless ``finite_weight=False`` (a caller that
    screens them itself)."""
    stride, padding, dilation, groups = geometry
    lead = 1 if per_sample else 0
    check_float_array(x, "x", ndim=4, finite=finite)
    check_float_array(weight, "weight", ndim=4 + lead, finite=finite_weight)
    check_same_dtype(x=x, weight=weight, bias=bias)
    n, c_in, height, width = x.shape
    if n == 0 or height == 0 or width == 0:
        raise ValueError(f"x must hold at least one sample and one pixel (N >= 1, H >= 1, W >= 1); "
                         f"received shape {tuple(x.shape)}")
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
    w_shape = weight.shape if per_sample else (1,) + tuple(weight.shape)
    culprits = f"padding={padding}, stride={stride}, dilation={dilation}"
    check_size(conv_output_shape(x.shape, w_shape, stride, padding, dilation), "the output",
               culprits)
    check_size((n, c_in, height + 2 * padding[0], width + 2 * padding[1]), "the padded input",
               culprits)
    if bias is not None:
        check_float_array(bias, "bias", ndim=1 + lead)
        check_shape(bias, "bias", (n, c_out) if per_sample else (c_out,))


def check_kernel_bank(x, weight, bias, geometry):
    """x (N, C_in, H, W) against a bank of K kernels weight (K, C_out, C_in/groups, kh, kw)
    and biases bias (K, C_out) or None (dynamic convolution and its family): shapes, dtypes,
    the geometry, the kernels' values finite; x's values are not scanned (its caller screens
    them). Returns (K, C_out)."""
    check_float_array(x, "x", ndim=4, finite=False)
    weight = check_float_array(weight, "weight", ndim=5)
    if bias is not None:
        check_shape(check_float_array(bias, "bias", ndim=2), "bias", tuple(weight.shape[:2]))
    check_conv_args(x, weight[0], None if bias is None else bias[0], geometry, per_sample=False,
                    finite=False)
    return tuple(weight.shape[:2])


def per_sample_conv2d_forward(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
                              backend=DEFAULT_BACKEND):
    """y[n] = conv2d(x[n], weight[n]) + bias[n] -> (y, cache).

    x (N, C_in, H, W); weight (N, C_out, C_in/groups, kh, kw); bias (N, C_out) or None;
    stride, padding, dilation: int or pair; y (N, C_out, H_out, W_out) with
    H_out = floor((H + 2 p0 - d0 (kh - 1) - 1) / s0) + 1 (and likewise W_out).
    """
    return _checked_forward(x, weight, bias, stride, padding, dilation, groups, backend, True)


def per_sample_conv2d_backward(dy, cache):
    """(dx, dweight (N, C_out, C_in/g, kh, kw), dbias (N, C_out) or None)."""
    return _conv_backward(check_upstream(cache, "per_sample_conv2d", dy=dy), cache)


def conv2d_forward(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
                   backend=DEFAULT_BACKEND):
    """y = conv2d(x, weight) + bias, one kernel for the batch -> (y, cache).

    weight (C_out, C_in/groups, kh, kw); bias (C_out,) or None; otherwise as
    ``per_sample_conv2d_forward``.
    """
    return _checked_forward(x, weight, bias, stride, padding, dilation, groups, backend, False)


def conv2d_backward(dy, cache):
    """(dx, dweight (C_out, C_in/g, kh, kw) summed over the batch, dbias (C_out,) or None)."""
    return _conv_backward(check_upstream(cache, "conv2d", dy=dy), cache)


def _checked_forward(x, weight, bias, stride, padding, dilation, groups, backend, per_sample):
    geometry = conv_geometry(stride, padding, dilation, groups)
    check_conv_args(x, weight, bias, geometry, per_sample)
    module = get_backend(backend)
    check_placement(module, x=x, weight=weight, bias=bias)
    y, cache = _conv_forward(x, weight, bias, geometry, module, per_sample)
    return y, stage_cache("per_sample_conv2d" if per_sample else "conv2d", cache, y)


def _conv_forward(x, weight, bias, geometry, module, per_sample):
    """The unchecked convolution: the backend's kernels on (Nw, ...) kernels and biases."""
    x, w = contiguous(x), contiguous(weight if per_sample else weight[None])
    b = None if bias is None else contiguous(bias if per_sample else bias[None])
    y = module.conv2d_forward(x, w, b, *geometry)
    return y, {"x": x, "w": w, "has_bias": b is not None, "geometry": geometry,
               "backend": module, "per_sample": per_sample}


def _conv_backward(dy, cache):
    dx, dw, db = cache["backend"].conv2d_backward(contiguous(dy), cache["x"], cache["w"],
                                                  *cache["geometry"], cache["has_bias"])
    if not cache["per_sample"]:
        dw = dw[0]
        db = None if db is None else db[0]
    return dx, dw, db
