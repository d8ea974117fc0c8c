"""Fully connected layers: shared weights (the attention branch's FCs, Linear) and
per-sample weights (the dynamic perceptron of paper section 3.1).

Shared:      y = x W^T + b             x (N, in), W (out, in), b (out,)
    dx = dy W,   dW = dy^T x,   db = sum_n dy[n]

Per sample:  y[n] = W_n x[n] + b_n     W (N, out, in), b (N, out)
    dx[n] = W_n^T dy[n],   dW_n = dy[n] x[n]^T,   db_n = dy[n]

The shared products run with BLAS on one thread (``backends.blas_threads``): they are small
(pooled features), and a multi-threaded BLAS between Numba's parallel kernels makes the two
thread pools spin against each other.
"""
import numpy as np

from .._validation import (check_float_array, check_same_dtype, check_shape, check_upstream,
                           stage_cache)
from ..backends.blas_threads import single_threaded_blas


def linear_forward(x, weight, bias=None):
    """y = x @ weight.T + bias; x (N, in), weight (out, in), bias (out,) or None -> (y, cache)."""
    check_linear_args(x, weight, bias)
    y, cache = _linear_forward(x, weight, bias)
    return y, stage_cache("linear", cache, y)


def linear_backward(dy, cache):
    """(dx, dweight, dbias) for ``linear_forward``; dbias is None without a bias."""
    return _linear_backward(check_upstream(cache, "linear", dy=dy), cache)


def per_sample_linear_forward(x, weights, biases=None):
    """y[n] = weights[n] @ x[n] + biases[n]; x (N, in), weights (N, out, in), biases (N, out)."""
    check_float_array(x, "x", ndim=2, host=True)
    check_float_array(weights, "weights", ndim=3, host=True)
    check_shape(weights, "weights", (x.shape[0], None, x.shape[1]))
    if biases is not None:
        check_float_array(biases, "biases", ndim=2, host=True)
        check_shape(biases, "biases", weights.shape[:2])
    check_same_dtype(x=x, weights=weights, biases=biases)
    y, cache = _per_sample_linear_forward(x, weights, biases)
    return y, stage_cache("per_sample_linear", cache, y)


def per_sample_linear_backward(dy, cache):
    """(dx, dweights, dbiases) for ``per_sample_linear_forward``; dbiases None without biases."""
    return _per_sample_linear_backward(check_upstream(cache, "per_sample_linear", dy=dy), cache)


def check_linear_args(x, weight, bias, x_name="x", weight_name="weight", bias_name="bias"):
    """x (N, in), weight (out, in), bias (out,) or None: finite, one float dtype."""
    check_float_array(x, x_name, ndim=2, host=True)
    check_float_array(weight, weight_name, ndim=2, host=True)
    check_shape(x, x_name, (None, weight.shape[1]))
    if bias is not None:
        check_float_array(bias, bias_name, ndim=1, host=True)
        check_shape(bias, bias_name, (weight.shape[0],))
    check_same_dtype(**{x_name: x, weight_name: weight, bias_name: bias})


def _linear_forward(x, weight, bias):
    with single_threaded_blas():
        y = x @ weight.T
    if bias is not None:
        y += bias
    return y, {"x": x, "weight": weight, "has_bias": bias is not None}


def _linear_backward(dy, cache):
    x, weight = cache["x"], cache["weight"]
    dbias = dy.sum(axis=0) if cache["has_bias"] else None
    with single_threaded_blas():
        return dy @ weight, dy.T @ x, dbias


def _per_sample_linear_forward(x, weights, biases):
    y = np.einsum("noi,ni->no", weights, x)
    if biases is not None:
        y += biases
    return y, {"x": x, "weights": weights, "has_bias": biases is not None}


def _per_sample_linear_backward(dy, cache):
    x, weights = cache["x"], cache["weights"]
    dx = np.einsum("noi,no->ni", weights, dy)
    dweights = dy[:, :, None] * x[:, None, :]
    return dx, dweights, (dy.copy() if cache["has_bias"] else None)
