"""Inverted dropout (Srivastava et al. 2014, scaled at training time as PyTorch does).

Each element is kept with probability 1 - p and scaled so that the expectation is unchanged:

    keep ~ Bernoulli(1 - p) element-wise,    y = x keep / (1 - p)        (E[y] = x)
    dx = dy keep / (1 - p)                   (the same mask as the forward pass)

p = 1 drops everything (y = 0, dx = 0). At evaluation time dropout is the identity; that switch
lives in the layer.
"""
import numbers

import numpy as np

from .._validation import check_float_array, check_upstream, stage_cache


def check_probability(p):
    """p must be a real number in [0, 1] (the drop probability)."""
    if isinstance(p, bool) or not isinstance(p, numbers.Real):
        raise TypeError(f"p (drop probability) must be a real number; received {type(p).__name__}")
    if not 0 <= p <= 1:
        raise ValueError(f"p (drop probability) must be in [0, 1]; received {p!r}")
    return float(p)


def dropout_forward(x, p, rng):
    """y = x * keep / (1 - p) with a fresh mask drawn from ``rng`` (a numpy Generator)."""
    check_float_array(x, "x", host=True)
    p = check_probability(p)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator; received {type(rng).__name__}")
    y, cache = _dropout_forward(x, p, rng)
    return y, stage_cache("dropout", cache, y)


def dropout_backward(dy, cache):
    """dx = dy * keep / (1 - p), with the forward pass's mask."""
    return _dropout_backward(check_upstream(cache, "dropout", dy=dy), cache)


def _dropout_forward(x, p, rng):
    scale = 0.0 if p == 1 else 1 / (1 - p)
    mask = (rng.random(x.shape, dtype=x.dtype) >= p) * x.dtype.type(scale)
    return x * mask, {"mask": mask}


def _dropout_backward(dy, cache):
    return dy * cache["mask"]
