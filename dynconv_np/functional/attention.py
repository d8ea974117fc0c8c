"""The attention branch over K kernels (paper section 3.2, Figure 3).

A squeeze-and-excitation style branch maps a pooled feature vector to K attention weights:

    h   = relu(pooled W1^T + b1)        W1 (hidden, C_in)   "FC, reduce channels by 4, ReLU"
    z   = h W2^T + b2                   W2 (K, hidden)      "FC to K"
    pi  = softmax(z / tau)              rows sum to 1       (section 3.3, softmax with temperature)

For a dynamic convolution ``pooled`` is the global average pool of x; for the dynamic perceptron
(section 3.1) it is x itself. The backward pass runs the same stages in reverse, each consuming the
cache its own forward produced.

This composition is the reference. A backend may also provide the whole branch as one call
(``backend="numba"``: ``backends/cpu_attention.py``, tested against this composition), which
``attention_forward`` then uses: the arrays are tiny, so the cost of the composition is
interpreter work, not arithmetic.
"""
from .activations import relu_backward, relu_forward
from .linear import linear_backward, linear_forward
from .softmax import softmax_backward, softmax_forward
from .._validation import check_float_array, check_shape, check_temperature
from ..backends import get_backend

ATTENTION_PARAMS = ("fc1_weight", "fc1_bias", "fc2_weight", "fc2_bias")


def check_attention_params(params, in_features, num_kernels, dtype):
    """The attention branch's parameters in ``params``, by name: fc1_weight (hidden,
    in_features), fc1_bias (hidden,), fc2_weight (num_kernels, hidden), fc2_bias
    (num_kernels,), finite, of ``dtype``; ValueError/TypeError naming the one that is not."""
    fc1_weight = check_float_array(params["fc1_weight"], "fc1_weight", ndim=2)
    hidden = fc1_weight.shape[0]
    for name, shape in (("fc1_weight", (hidden, in_features)), ("fc1_bias", (hidden,)),
                        ("fc2_weight", (num_kernels, hidden)), ("fc2_bias", (num_kernels,))):
        array = (fc1_weight if name == "fc1_weight"
                 else check_float_array(params[name], name, ndim=len(shape)))
        check_shape(array, name, shape)
        if array.dtype != dtype:
            raise TypeError(f"{name} has dtype {array.dtype} but the input is {dtype}; "
                            "mixed dtypes are not supported")


def attention_forward(pooled, fc1_weight, fc1_bias, fc2_weight, fc2_bias, tau, check=True,
                      backend=None):
    """pi (N, K) = softmax((relu(pooled W1^T + b1) W2^T + b2) / tau) -> (pi, cache).

    ``check=False`` skips the argument checks, for callers that made them already (the
    dynamic layers check their parameters once with ``check_attention_params``).
    ``backend``: a backend name; one that provides the branch as one call runs it there,
    any other (and None) runs the composition below.
    """
    module = None if backend is None else get_backend(backend)
    fused = getattr(module, "attention_forward", None)
    if fused is None:
        hidden_pre, fc1_cache = linear_forward(pooled, fc1_weight, fc1_bias, check=check)
        hidden, relu_cache = relu_forward(hidden_pre)
        logits, fc2_cache = linear_forward(hidden, fc2_weight, fc2_bias, check=check)
        pi, softmax_cache = softmax_forward(logits, tau, check=check)
        return pi, (fc1_cache, relu_cache, fc2_cache, softmax_cache)
    if check:
        check_float_array(pooled, "pooled", ndim=2)
        num_kernels = check_float_array(fc2_weight, "fc2_weight", ndim=2).shape[0]
        check_attention_params(dict(zip(ATTENTION_PARAMS, (fc1_weight, fc1_bias, fc2_weight,
                                                           fc2_bias))),
                               pooled.shape[1], num_kernels, pooled.dtype)
        tau = check_temperature(tau)
    pi, hidden = fused(pooled, fc1_weight, fc1_bias, fc2_weight, fc2_bias, tau)
    return pi, {"backend": module, "pi": pi, "hidden": hidden, "pooled": pooled,
                "fc1_weight": fc1_weight, "fc2_weight": fc2_weight, "tau": tau}


def attention_backward(dpi, cache):
    """Backward of ``attention_forward``: (dpooled, {"fc1_weight": ..., ..., "fc2_bias": ...})."""
    if isinstance(cache, dict):  # the forward ran as one backend call
        dpooled, *grads = cache["backend"].attention_backward(
            dpi, cache["pi"], cache["hidden"], cache["pooled"], cache["fc1_weight"],
            cache["fc2_weight"], cache["tau"])
        return dpooled, dict(zip(ATTENTION_PARAMS, grads))
    fc1_cache, relu_cache, fc2_cache, softmax_cache = cache
    dlogits = softmax_backward(dpi, softmax_cache)
    dhidden, dfc2_weight, dfc2_bias = linear_backward(dlogits, fc2_cache)
    dhidden_pre = relu_backward(dhidden, relu_cache)
    dpooled, dfc1_weight, dfc1_bias = linear_backward(dhidden_pre, fc1_cache)
    grads = dict(zip(ATTENTION_PARAMS, (dfc1_weight, dfc1_bias, dfc2_weight, dfc2_bias)))
    return dpooled, grads
