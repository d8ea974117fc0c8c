"""Softmax with temperature (paper section 3.3) and its backward pass.

    pi_k = exp(z_k / tau) / sum_j exp(z_j / tau)

Stable form: subtract the row maximum of s = z / tau before exponentiating, so every exponent is
<= 0 (no overflow) and the largest term is exactly 1 (the denominator is >= 1, no 0/0). This holds
for any finite z and tau > 0: tau from 1e-3 to 1e4 and logits up to +-1e4 in float64 give
s up to 1e7, whose exp after the shift is in [0, 1].

Backward (the Jacobian of softmax is diag(pi) - pi pi^T, and ds/dz = 1/tau):

    dz = pi * (dpi - <dpi, pi>) / tau          (row-wise inner product)
"""
import numpy as np

from .._validation import check_float_array, check_temperature


def softmax_forward(z, tau=1.0, check=True):
    """pi = softmax(z / tau) along the last axis.

    Parameters
    ----------
    z : ndarray (..., K), float32 or float64, the logits.
    tau : float > 0, the temperature (large -> uniform, small -> one-hot argmax).

    Returns
    -------
    pi : ndarray like z, rows in [0, 1] summing to 1.
    cache : dict for ``softmax_backward``.

    ``check=False`` skips the argument checks (tau must then be a float > 0 already).
    """
    if check:
        check_float_array(z, "z")
        tau = check_temperature(tau)
    s = z / z.dtype.type(tau)
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    pi = e / e.sum(axis=-1, keepdims=True)
    return pi, {"pi": pi, "tau": tau}


def softmax_backward(dpi, cache):
    """dz = pi * (dpi - sum_k dpi_k pi_k) / tau, for dpi of pi's shape."""
    pi, tau = cache["pi"], cache["tau"]
    inner = np.sum(dpi * pi, axis=-1, keepdims=True)
    return pi * (dpi - inner) / pi.dtype.type(tau)
