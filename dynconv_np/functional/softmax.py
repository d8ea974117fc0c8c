"""Softmax with temperature (paper section 3.3) and its backward pass.

    pi_k = exp(z_k / tau) / sum_j exp(z_j / tau)

Stable form: s = (z - max_j z_j) / tau, the same softmax, since the shift cancels in the ratio.
Every exponent is <= 0 (no overflow) and the largest is exactly 0, so the denominator is >= 1
(no 0/0). Shifting before dividing keeps it exact for any tau: a tiny tau sends the other
exponents to -inf (weight 0), never an overflow to inf - inf. The only limit is the dtype's:
tau must be at least its smallest normal number (float32: 1.2e-38), checked by
``check_temperature(tau, dtype)``.

Backward (the Jacobian of softmax is diag(pi) - pi pi^T, and ds/dz = 1/tau):

    dz = pi * (dpi - <dpi, pi>) / tau          (row-wise inner product)
"""
import numpy as np

from .._validation import check_float_array, check_temperature, check_upstream, stage_cache


def softmax_forward(z, tau=1.0):
    """pi = softmax(z / tau) along the last axis.

    Parameters
    ----------
    z : ndarray (..., K), float32 or float64, the logits.
    tau : float > 0, the temperature (large -> uniform, small -> one-hot argmax).

    Returns
    -------
    pi : ndarray like z, rows in [0, 1] summing to 1.
    cache : dict for ``softmax_backward``.
    """
    check_float_array(z, "z", host=True)
    if z.ndim == 0 or z.shape[-1] == 0:
        raise ValueError(f"z must have at least one logit along its last axis (..., K >= 1); "
                         f"received shape {tuple(z.shape)}")
    tau = check_temperature(tau, z.dtype)
    pi, cache = _softmax_forward(z, tau)
    return pi, stage_cache("softmax", cache, pi)


def softmax_backward(dpi, cache):
    """dz = pi * (dpi - sum_k dpi_k pi_k) / tau, for dpi of pi's shape."""
    dpi = check_upstream(cache, "softmax", dpi=dpi)
    return _softmax_backward(dpi, cache)


def _softmax_forward(z, tau):
    with np.errstate(over="ignore"):  # a tiny tau sends the non-maximal exponents to -inf
        s = (z - z.max(axis=-1, keepdims=True)) / z.dtype.type(tau)
    e = np.exp(s)
    pi = e / e.sum(axis=-1, keepdims=True)
    return pi, {"pi": pi.copy(), "tau": tau}  # the caller may modify pi; backward reads a copy


def _softmax_backward(dpi, cache):
    pi, tau = cache["pi"], cache["tau"]
    inner = np.sum(dpi * pi, axis=-1, keepdims=True)
    return pi * (dpi - inner) / pi.dtype.type(tau)
