"""Element-wise activations and their backward passes.

ReLU:  y = max(x, 0);   dx = dy * [x > 0]   (the subgradient 0 is taken at x = 0)
"""
import numpy as np


def relu_forward(x):
    """y = max(x, 0) -> (y, cache)."""
    return np.maximum(x, 0), {"mask": x > 0}


def relu_backward(dy, cache):
    """dx = dy where x > 0, else 0."""
    return np.where(cache["mask"], dy, 0).astype(dy.dtype, copy=False)
