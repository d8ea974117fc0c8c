"""Dynamic convolution (paper section 3.2), composed from the stages of this package.

    pooled = mean_{h,w} x                                    global_avg_pool_forward
    pi     = softmax((relu(pooled W1^T + b1) W2^T + b2) / tau)   attention_forward
    W_n    = sum_k pi[n, k] W_k,   b_n = sum_k pi[n, k] b_k  aggregate_kernels_forward
    y[n]   = conv2d(x[n], W_n) + b_n                         per_sample_conv2d_forward

The backward pass walks the same path in reverse. x reaches the loss along two paths (through the
convolution and through the attention branch), so its gradient is the sum of both:

    dx = dx_conv + dx_pool,   dx_pool[n, c] = dpooled[n, c] / (H W)

No stage's math is repeated here: this module only wires stages together. Unless
``check_finite=False``, x is checked for NaN/inf through its pooled means (a NaN or inf anywhere
makes its channel's mean NaN or inf: the pool, computed anyway, doubles as the screen; only a
non-finite mean costs an element-wise search, which names the first bad element), so device
arrays are checked too; in backward, dy the same way through the bias gradient db_n (its
per-plane sums), or scanned once when there is no bias. The per-sample kernels are built from
checked parameters and are not rescanned.
"""
import numpy as np

from .aggregation import aggregate_kernels_backward, aggregate_kernels_forward
from .attention import (ATTENTION_PARAMS, attention_backward, attention_forward,
                        check_attention_params)
from .conv import per_sample_conv2d_backward, per_sample_conv2d_forward
from .pooling import global_avg_pool_backward, global_avg_pool_forward
from .._validation import (check_finite as check_all_finite, check_float_array,
                           check_same_dtype, check_shape, check_temperature, is_host_array)
from ..backends import DEFAULT_BACKEND


def dynamic_conv2d_forward(x, params, tau, stride=1, padding=0, dilation=1, groups=1,
                           backend=DEFAULT_BACKEND, check_finite=True):
    """y = dynamic convolution of x -> (y, cache); ``cache["pi"]`` is the attention (N, K).

    params: dict with "weight" (K, C_out, C_in/groups, kh, kw), optional "bias" (K, C_out),
    "fc1_weight" (hidden, C_in), "fc1_bias" (hidden,), "fc2_weight" (K, hidden), "fc2_bias" (K,).
    """
    check_float_array(x, "x", ndim=4, finite=False)
    tau = check_temperature(tau)
    _check_params(params, x)
    pooled, pool_cache = global_avg_pool_forward(x, backend)
    if check_finite:
        _check_finite_screened(x, "x", pooled, "mean")
    pi, attention_cache = attention_forward(pooled, *(params[name] for name in ATTENTION_PARAMS),
                                            tau, check=False, backend=backend)
    (w_n, b_n), aggregate_cache = aggregate_kernels_forward(pi, params["weight"],
                                                            params.get("bias"), backend,
                                                            check=False)
    y, conv_cache = per_sample_conv2d_forward(x, w_n, b_n, stride, padding, dilation, groups,
                                              backend, check_finite=False)
    return y, {"pi": pi, "check_finite": check_finite,
               "stages": (pool_cache, attention_cache, aggregate_cache, conv_cache)}


def _check_params(params, x):
    """Every parameter, once, by name (the stages then skip their own argument checks):
    weight (K, C_out, C_in/groups, kh, kw) and bias (K, C_out), finite, of x's dtype, and the
    attention's FCs for C_in = x.shape[1] inputs and K outputs. Kernels on a device (backend
    "cuda") are checked by shape and dtype only."""
    weight = check_float_array(params["weight"], "weight", ndim=5)
    num_kernels, c_out = weight.shape[:2]
    bias = params.get("bias")
    if bias is not None:
        check_shape(check_float_array(bias, "bias", ndim=2), "bias", (num_kernels, c_out))
    check_same_dtype(x=x, weight=weight, bias=bias)
    check_attention_params(params, x.shape[1], num_kernels, np.dtype(x.dtype))


def _check_finite_screened(a, name, reduced, reduction):
    """ValueError unless ``a`` (N, C, H, W) is finite and so is ``reduced`` (N, C), its
    per-plane mean or sum: a NaN or inf anywhere in a plane makes that plane's mean or sum
    NaN or inf, so only a non-finite ``reduced`` costs an element-wise search of ``a``."""
    if np.isfinite(reduced).all():
        return
    if is_host_array(a):
        check_all_finite(a, name)  # raises, naming the first NaN/inf, if there is one
    n, c = np.argwhere(~np.isfinite(reduced))[0]
    raise ValueError(f"{name} must be finite; the {reduction} of {name}[{n}, {c}] over (H, W) is "
                     f"{float(reduced[n, c])} (a NaN or inf in that plane, or values whose sum "
                     f"overflows {np.dtype(a.dtype)})")


def dynamic_conv2d_backward(dy, cache):
    """(dx, grads) where grads has a key per parameter in the forward's ``params``."""
    pool_cache, attention_cache, aggregate_cache, conv_cache = cache["stages"]
    with np.errstate(invalid="ignore"):  # a NaN/inf in dy is reported below, not warned about
        dx, dw_n, db_n = per_sample_conv2d_backward(dy, conv_cache)
    if cache["check_finite"] and is_host_array(dy):
        # db_n[n, o] is the sum of dy[n, o]: the bias gradient doubles as the screen
        if db_n is not None and is_host_array(db_n):
            _check_finite_screened(dy, "dy", db_n, "sum")
        else:
            check_all_finite(dy, "dy")
    dpi, dweight, dbias = aggregate_kernels_backward(dw_n, db_n, aggregate_cache)
    dpooled, grads = attention_backward(dpi, attention_cache)
    dx = global_avg_pool_backward(dpooled, pool_cache, dx=dx)
    grads["weight"] = dweight
    if dbias is not None:
        grads["bias"] = dbias
    return dx, grads
