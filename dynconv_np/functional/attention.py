"""The attention branch over K kernels (paper section 3.2, Figure 3).

A squeeze-and-excitation style branch maps a pooled feature vector to K attention weights:

    h   = relu(pooled W1^T + b1)        W1 (hidden, C_in)   "FC, reduce channels by 4, ReLU"
    z   = h W2^T + b2                   W2 (K, hidden)      "FC to K"
    pi  = softmax(z / tau)              rows sum to 1       (section 3.3, softmax with temperature)

For a dynamic convolution ``pooled`` is the global average pool of x; for the dynamic perceptron
(section 3.1) it is x itself. The backward pass runs the same stages in reverse:

    dz = softmax'(dpi),  dW2 = dz^T h,  db2 = sum_n dz,  dh = dz W2
    dh_pre = dh [h > 0],  dW1 = dh_pre^T pooled,  db1 = sum_n dh_pre,  dpooled = dh_pre W1

The cache holds what those formulas read (pooled, h, pi, W1, W2, tau), so a backend that runs
the whole branch as one call (the numba engine) produces the very same cache: the dynamic
convolution chooses that call where it exists (``dynamic_conv._attention_stage``).
"""
from .activations import _relu_backward, _relu_forward
from .linear import _linear_backward, _linear_forward
from .softmax import _softmax_backward, _softmax_forward
from .._validation import (check_float_array, check_shape, check_temperature, check_upstream,
                           stage_cache)

ATTENTION_PARAMS = ("fc1_weight", "fc1_bias", "fc2_weight", "fc2_bias")


def attention_forward(pooled, fc1_weight, fc1_bias, fc2_weight, fc2_bias, tau):
    """pi (N, K) = softmax((relu(pooled W1^T + b1) W2^T + b2) / tau) -> (pi, cache)."""
    check_float_array(pooled, "pooled", ndim=2, host=True)
    check_attention_params(dict(zip(ATTENTION_PARAMS, (fc1_weight, fc1_bias, fc2_weight,
                                                       fc2_bias))),
                           pooled.shape[1], check_float_array(fc2_weight, "fc2_weight",
                                                              ndim=2, host=True).shape[0],
                           pooled.dtype, input_name="pooled")
    tau = check_temperature(tau, pooled.dtype)
    pi, cache = _attention_forward(pooled, fc1_weight, fc1_bias, fc2_weight, fc2_bias, tau)
    return pi, stage_cache("attention", cache, pi)


def attention_backward(dpi, cache):
    """Backward of ``attention_forward``: (dpooled, {"fc1_weight": ..., ..., "fc2_bias": ...})."""
    return _attention_backward(check_upstream(cache, "attention", dpi=dpi), cache)


def check_attention_params(params, in_features, num_kernels, dtype, input_name="x"):
    """The branch's parameters in ``params``, by name: fc1_weight (hidden, in_features),
    fc1_bias (hidden,) or None (no first bias), fc2_weight (num_kernels, hidden), fc2_bias
    (num_kernels,), host arrays (the branch runs on the host), finite, of the dtype of
    ``input_name``; ValueError/TypeError naming the one that is not (a missing key too)."""
    missing = [name for name in ("fc1_weight", "fc2_weight", "fc2_bias")
               if params.get(name) is None]
    if missing:
        raise ValueError(f"params is missing the attention parameter(s) {missing} (required, "
                         f"not None); it has {sorted(params)}")
    fc1_weight = check_float_array(params["fc1_weight"], "fc1_weight", ndim=2, host=True)
    hidden = fc1_weight.shape[0]
    check_shape(fc1_weight, "fc1_weight", (hidden, in_features))
    for name, shape in (("fc1_bias", (hidden,)), ("fc2_weight", (num_kernels, hidden)),
                        ("fc2_bias", (num_kernels,))):
        if params.get(name) is not None:
            check_shape(check_float_array(params[name], name, ndim=len(shape), host=True), name,
                        shape)
    for name in ATTENTION_PARAMS:
        array = params.get(name)
        if array is not None and array.dtype != dtype:
            raise TypeError(f"{name} has dtype {array.dtype} but {input_name} is {dtype}; "
                            "mixed dtypes are not supported")


def attention_cache(pooled, hidden, pi, fc1_weight, fc2_weight, tau, has_fc1_bias=True):
    """The one cache of the branch, whoever computed it (see the module docstring); it keeps a
    copy of pi, which the caller may modify."""
    return {"pooled": pooled, "hidden": hidden, "pi": pi.copy(), "fc1_weight": fc1_weight,
            "fc2_weight": fc2_weight, "tau": tau, "has_fc1_bias": has_fc1_bias}


def _attention_forward(pooled, fc1_weight, fc1_bias, fc2_weight, fc2_bias, tau):
    hidden_pre, _ = _linear_forward(pooled, fc1_weight, fc1_bias)
    hidden, _ = _relu_forward(hidden_pre)
    logits, _ = _linear_forward(hidden, fc2_weight, fc2_bias)
    pi, _ = _softmax_forward(logits, tau)
    return pi, attention_cache(pooled, hidden, pi, fc1_weight, fc2_weight, tau,
                               has_fc1_bias=fc1_bias is not None)


def _attention_backward(dpi, cache):
    dlogits = _softmax_backward(dpi, cache)
    dhidden, dfc2_weight, dfc2_bias = _linear_backward(
        dlogits, {"x": cache["hidden"], "weight": cache["fc2_weight"], "has_bias": True})
    dhidden_pre = _relu_backward(dhidden, {"mask": cache["hidden"] > 0})
    dpooled, dfc1_weight, dfc1_bias = _linear_backward(
        dhidden_pre, {"x": cache["pooled"], "weight": cache["fc1_weight"],
                      "has_bias": cache["has_fc1_bias"]})
    grads = {"fc1_weight": dfc1_weight, "fc2_weight": dfc2_weight, "fc2_bias": dfc2_bias}
    if dfc1_bias is not None:
        grads["fc1_bias"] = dfc1_bias
    return dpooled, grads
