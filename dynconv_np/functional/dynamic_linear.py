"""The dynamic perceptron (paper section 3.1, the dense case of dynamic convolution).

    pi   = softmax((relu(x W1^T + b1) W2^T + b2) / tau)     attention computed from x itself
    W(x) = sum_k pi_k(x) W_k,    b(x) = sum_k pi_k(x) b_k
    y    = W(x) x + b(x)

x reaches y along two paths, so dx = W(x)^T dy + dx_attention.
"""
import numpy as np

from .aggregation import aggregate_kernels_backward, aggregate_kernels_forward
from .attention import (ATTENTION_PARAMS, attention_backward, attention_forward,
                        check_attention_params)
from .linear import per_sample_linear_backward, per_sample_linear_forward
from .._validation import check_float_array, check_same_dtype, check_shape, check_temperature


def dynamic_linear_forward(x, params, tau):
    """y (N, out) for x (N, in) -> (y, cache); ``cache["pi"]`` is the attention (N, K).

    params: "weight" (K, out, in), optional "bias" (K, out), "fc1_weight" (hidden, in),
    "fc1_bias" (hidden,), "fc2_weight" (K, hidden), "fc2_bias" (K,).
    """
    check_float_array(x, "x", ndim=2)
    tau = check_temperature(tau)
    weight = check_float_array(params["weight"], "weight", ndim=3)
    check_shape(x, "x", (None, weight.shape[2]))
    bias = params.get("bias")
    if bias is not None:
        check_shape(check_float_array(bias, "bias", ndim=2), "bias", weight.shape[:2])
    check_same_dtype(x=x, weight=weight, bias=bias)
    check_attention_params(params, x.shape[1], weight.shape[0], np.dtype(x.dtype))
    # every argument is checked above, once: the stages skip their own checks
    pi, attention_cache = attention_forward(x, *(params[name] for name in ATTENTION_PARAMS), tau,
                                            check=False)
    (w_n, b_n), aggregate_cache = aggregate_kernels_forward(pi, weight, bias, check=False)
    y, linear_cache = per_sample_linear_forward(x, w_n, b_n)
    return y, {"pi": pi, "stages": (attention_cache, aggregate_cache, linear_cache)}


def dynamic_linear_backward(dy, cache):
    """(dx, grads) where grads has a key per parameter in the forward's ``params``."""
    attention_cache, aggregate_cache, linear_cache = cache["stages"]
    dx, dw_n, db_n = per_sample_linear_backward(dy, linear_cache)
    dpi, dweight, dbias = aggregate_kernels_backward(dw_n, db_n, aggregate_cache)
    dx_attention, grads = attention_backward(dpi, attention_cache)
    grads["weight"] = dweight
    if dbias is not None:
        grads["bias"] = dbias
    return dx + dx_attention, grads
