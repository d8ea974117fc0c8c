"""The dynamic perceptron (paper section 3.1, the dense case of dynamic convolution).

    pi   = softmax((relu(x W1^T + b1) W2^T + b2) / tau)     attention computed from x itself
    W(x) = sum_k pi_k(x) W_k,    b(x) = sum_k pi_k(x) b_k   (eq. 1)
    y    = W(x) x + b(x)

x reaches y along two paths, so dx = W(x)^T dy + dx_attention.
"""
import numpy as np

from .aggregation import _aggregate_kernels_backward, _aggregate_kernels_forward
from .attention import check_attention_params
from .dynamic_conv import _attention_stage, _attention_stage_backward
from .linear import _per_sample_linear_backward, _per_sample_linear_forward
from .._validation import (check_float_array, check_same_dtype, check_shape, check_temperature,
                           check_upstream, contiguous, stage_cache)
from ..backends import DEFAULT_BACKEND, get_backend, runs_on_device


def dynamic_linear_forward(x, params, tau, backend=DEFAULT_BACKEND):
    """y (N, out) for x (N, in) -> (y, cache); ``cache["pi"]`` is the attention (N, K).

    params: "weight" (K, out, in), optional "bias" (K, out), "fc1_weight" (hidden, in),
    optional "fc1_bias" (hidden,), "fc2_weight" (K, hidden), "fc2_bias" (K,).
    backend: runs the attention branch and the aggregation (the product is NumPy's).
    """
    check_dynamic_linear_params(params, x)
    tau = check_temperature(tau, x.dtype)
    module = get_backend(backend)
    if runs_on_device(module):
        raise ValueError(f"the dynamic perceptron runs on a host backend (its product is "
                         f"NumPy's); received backend={backend!r}")
    y, cache = _dynamic_linear_forward(contiguous(x), params, tau, module)
    return y, stage_cache("dynamic_linear", cache, y)


def dynamic_linear_backward(dy, cache):
    """(dx, grads) where grads has a key per parameter in the forward's ``params``."""
    return _dynamic_linear_backward(check_upstream(cache, "dynamic_linear", dy=dy), cache)


def check_dynamic_linear_params(params, x):
    """x (N, in) finite; weight (K, out, in), bias (K, out), the attention's FCs: host arrays
    (the perceptron runs on the host), by name."""
    if not isinstance(params, dict) or "weight" not in params:
        raise TypeError("params must be a dict holding at least 'weight' and the attention "
                        "parameters; received "
                        f"{sorted(params) if isinstance(params, dict) else type(params).__name__}")
    check_float_array(x, "x", ndim=2, host=True)
    weight = check_float_array(params["weight"], "weight", ndim=3, host=True)
    check_shape(x, "x", (None, weight.shape[2]))
    bias = params.get("bias")
    if bias is not None:
        check_shape(check_float_array(bias, "bias", ndim=2, host=True), "bias", weight.shape[:2])
    check_same_dtype(x=x, weight=weight, bias=bias)
    check_attention_params(params, x.shape[1], weight.shape[0], np.dtype(x.dtype))


def _dynamic_linear_forward(x, params, tau, module):
    pi, attention_cache = _attention_stage(x, params, tau, module)
    (w_n, b_n), aggregate_cache = _aggregate_kernels_forward(pi, params["weight"],
                                                             params.get("bias"), module)
    y, linear_cache = _per_sample_linear_forward(x, w_n, b_n)
    return y, {"pi": pi, "backend": module,
               "stages": (attention_cache, aggregate_cache, linear_cache)}


def _dynamic_linear_backward(dy, cache):
    attention_cache, aggregate_cache, linear_cache = cache["stages"]
    dx, dw_n, db_n = _per_sample_linear_backward(dy, linear_cache)
    dpi, dweight, dbias = _aggregate_kernels_backward(contiguous(dw_n), db_n, aggregate_cache)
    dx_attention, grads = _attention_stage_backward(dpi, attention_cache, cache["backend"])
    grads["weight"] = dweight
    if dbias is not None:
        grads["bias"] = dbias
    return dx + dx_attention, grads
