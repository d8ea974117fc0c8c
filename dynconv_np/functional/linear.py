"""Fully connected layers: shared weights (the attention branch's FCs, Linear) and
per-sample weights (the dynamic perceptron of paper section 3.1).

Shared:      y = x W^T + b             x (N, in), W (out, in), b (out,)
    dx = dy W,   dW = dy^T x,   db = sum_n dy[n]

Per sample:  y[n] = W_n x[n] + b_n     W (N, out, in), b (N, out)
    dx[n] = W_n^T dy[n],   dW_n = dy[n] x[n]^T,   db_n = dy[n]
"""
import numpy as np

from .._validation import check_float_array, check_same_dtype, check_shape


def linear_forward(x, weight, bias=None, check=True):
    """y = x @ weight.T + bias; x (N, in), weight (out, in), bias (out,) or None -> (y, cache).

    ``check=False`` skips the argument checks, for callers that made them already.
    """
    if check:
        check_float_array(x, "x", ndim=2)
        check_float_array(weight, "weight", ndim=2)
        check_shape(x, "x", (None, weight.shape[1]))
        if bias is not None:
            check_float_array(bias, "bias", ndim=1)
            check_shape(bias, "bias", (weight.shape[0],))
        check_same_dtype(x=x, weight=weight, bias=bias)
    y = x @ weight.T
    if bias is not None:
        y += bias
    return y, {"x": x, "weight": weight, "has_bias": bias is not None}


def linear_backward(dy, cache):
    """(dx, dweight, dbias) for ``linear_forward``; dbias is None without a bias."""
    x, weight = cache["x"], cache["weight"]
    dbias = dy.sum(axis=0) if cache["has_bias"] else None
    return dy @ weight, dy.T @ x, dbias


def per_sample_linear_forward(x, weights, biases=None):
    """y[n] = weights[n] @ x[n] + biases[n]; x (N, in), weights (N, out, in), biases (N, out)."""
    y = np.einsum("noi,ni->no", weights, x)
    if biases is not None:
        y += biases
    return y, {"x": x, "weights": weights, "has_bias": biases is not None}


def per_sample_linear_backward(dy, cache):
    """(dx, dweights, dbiases) for ``per_sample_linear_forward``."""
    x, weights = cache["x"], cache["weights"]
    dx = np.einsum("noi,no->ni", weights, dy)
    dweights = dy[:, :, None] * x[:, None, :]
    return dx, dweights, (dy.copy() if cache["has_bias"] else None)
