"""Flattening: (N, d1, d2, ...) -> (N, d1 d2 ...), the bridge from feature maps to a classifier.

    y[n, :] = x[n].reshape(-1)           (row-major, as PyTorch's ``Flatten``)
    dx      = dy.reshape(x.shape)
"""
from .._validation import check_float_array, check_upstream, stage_cache


def flatten_forward(x):
    """y (N, prod(x.shape[1:])) -> (y, cache)."""
    check_flatten_input(x)
    y, cache = _flatten_forward(x)
    return y, stage_cache("flatten", cache, y)


def flatten_backward(dy, cache):
    """dx = dy reshaped to x's shape."""
    return _flatten_backward(check_upstream(cache, "flatten", dy=dy), cache)


def check_flatten_input(x):
    """x must be a float array of at least 2 dimensions (N, ...)."""
    check_float_array(x, "x", host=True)
    if x.ndim < 2:
        raise ValueError(f"x must be at least 2-D (N, ...) to flatten all but the batch axis; "
                         f"received shape {tuple(x.shape)}")


def _flatten_forward(x):
    return x.reshape(x.shape[0], -1), {"x_shape": tuple(x.shape)}


def _flatten_backward(dy, cache):
    return dy.reshape(cache["x_shape"])
