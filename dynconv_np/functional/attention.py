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

ATTENTION_PARAMS = ("fc1_weight", "fc1_bias", "fc2_weight", "fc2_bias")


def attention_forward(pooled, fc1_weight, fc1_bias, fc2_weight, fc2_bias, tau):
    """pi (N, K) = softmax((relu(pooled W1^T + b1) W2^T + b2) / tau) -> (pi, cache)."""
    hidden_pre, fc1_cache = linear_forward(pooled, fc1_weight, fc1_bias)
    hidden, relu_cache = relu_forward(hidden_pre)
    logits, fc2_cache = linear_forward(hidden, fc2_weight, fc2_bias)
    pi, softmax_cache = softmax_forward(logits, tau)
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
