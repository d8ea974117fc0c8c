"""Flattening: (N, d1, d2, ...) -> (N, d1 d2 ...), the bridge from feature maps to a classifier.

    y[n, :] = x[n].reshape(-1)           (row-major, as PyTorch's ``Flatten``)
    dx      = dy.reshape(x.shape)
"""
from .._validation import check_float_array


def flatten_forward(x):
    """y (N, prod(x.shape[1:])) -> (y, cache)."""
    check_float_array(x, "x")
    if x.ndim < 2:
        raise ValueError(f"x must be at least 2-D (N, ...) to flatten all but the batch axis; "
                         f"received shape {tuple(x.shape)}")
    return x.reshape(x.shape[0], -1), {"x_shape": tuple(x.shape)}


def flatten_backward(dy, cache):
    """dx = dy reshaped to x's shape."""
    return dy.reshape(cache["x_shape"])
