"""The attention branch over K kernels (paper section 3.2, Figure 3).

A squeeze-and-excitation style branch maps a pooled feature vector to K attention weights:

    h   = relu(pooled W1^T + b1)        W1 (hidden, C_in)   "FC, reduce channels by 4, ReLU"
    z   = h W2^T + b2                   W2 (K, hidden)      "FC to K"
    pi  = softmax(z / tau)              rows sum to 1       (section 3.3, softmax with temperature)

For a dynamic convolution ``pooled`` is the global average pool of x; for the dynamic perceptron
(section 3.1) it is x itself. The backward pass runs the same stages in reverse, each consuming the
cache its own forward produced.
"""
from .activations import relu_backward, relu_forward
from .linear import linear_backward, linear_forward
from .softmax import softmax_backward, softmax_forward
from .._validation import check_float_array, check_shape

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


def attention_forward(pooled, fc1_weight, fc1_bias, fc2_weight, fc2_bias, tau, check=True):
    """pi (N, K) = softmax((relu(pooled W1^T + b1) W2^T + b2) / tau) -> (pi, cache).

    ``check=False`` skips the argument checks, for callers that made them already (the
    dynamic layers check their parameters once with ``check_attention_params``).
    """
    hidden_pre, fc1_cache = linear_forward(pooled, fc1_weight, fc1_bias, check=check)
    hidden, relu_cache = relu_forward(hidden_pre)
    logits, fc2_cache = linear_forward(hidden, fc2_weight, fc2_bias, check=check)
    pi, softmax_cache = softmax_forward(logits, tau, check=check)
    return pi, (fc1_cache, relu_cache, fc2_cache, softmax_cache)


def attention_backward(dpi, cache):
    """Backward of ``attention_forward``: (dpooled, {"fc1_weight": ..., ..., "fc2_bias": ...})."""
    fc1_cache, relu_cache, fc2_cache, softmax_cache = cache
    dlogits = softmax_backward(dpi, softmax_cache)
    dhidden, dfc2_weight, dfc2_bias = linear_backward(dlogits, fc2_cache)
    dhidden_pre = relu_backward(dhidden, relu_cache)
    dpooled, dfc1_weight, dfc1_bias = linear_backward(dhidden_pre, fc1_cache)
    grads = dict(zip(ATTENTION_PARAMS, (dfc1_weight, dfc1_bias, dfc2_weight, dfc2_bias)))
    return dpooled, grads
