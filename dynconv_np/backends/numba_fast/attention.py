"""The attention branch fused into one jitted call per pass (the backend's optional
``attention_forward`` / ``attention_backward``; see ``backends/__init__.py``).

The math is ``functional/attention.py``'s composition, the reference:

    h   = relu(pooled W1^T + b1)            pooled (N, C), W1 (hidden, C)
    z   = h W2^T + b2                       W2 (K, hidden)
    pi  = softmax(z / tau)                  as exp((z - max z) / tau), rows sum to 1

    dz       = pi * (dpi - <dpi, pi>) / tau   (row-wise inner product)
    dW2      = dz^T h,    db2 = sum_n dz
    dh_pre   = (dz W2) where h > 0, else 0
    dW1      = dh_pre^T pooled,   db1 = sum_n dh_pre
    dpooled  = dh_pre W1

Why fused: the arrays are tiny (N x C, N x K), so the composition's cost is interpreter work
(a few dozen small NumPy calls), and inside a network that work runs with cold caches right
after a large convolution kernel. Plain loops, no ``prange``: N*C*hidden multiply-adds are far
too few to share between threads. Both kernels are compiled with ``fastmath={"reassoc"}`` so
that their inner sums use vector lanes; it changes only the order of summation (tolerance: the
README's design note on reassociation).
"""
import numpy as np
from numba import njit

from .compiling import announces_compilation


@njit(cache=True, fastmath={"reassoc"})
def _forward(pooled, w1, b1, w2, b2, tau, hidden, pi):
    """hidden (N, hidden) and pi (N, K) of one forward pass, sample by sample."""
    n_samples, n_in = pooled.shape
    n_hidden, n_kernels = w1.shape[0], w2.shape[0]
    for n in range(n_samples):
        for j in range(n_hidden):
            total = b1[j]
            for c in range(n_in):
                total += pooled[n, c] * w1[j, c]
            hidden[n, j] = max(total, 0.0)
        largest = -np.inf
        for k in range(n_kernels):
            total = b2[k]
            for j in range(n_hidden):
                total += hidden[n, j] * w2[k, j]
            pi[n, k] = total  # the logit z_k
            largest = max(largest, total)
        norm = 0.0
        for k in range(n_kernels):  # shift, then divide: exact for any tau (functional/softmax.py)
            pi[n, k] = np.exp((pi[n, k] - largest) / tau)
            norm += pi[n, k]
        for k in range(n_kernels):
            pi[n, k] /= norm


@njit(cache=True, fastmath={"reassoc"})
def _backward(dpi, pi, hidden, pooled, w1, w2, tau, dpooled, dw1, db1, dw2, db2):
    """Gradients of ``_forward`` (the outputs are zeroed here, then accumulated over n)."""
    n_samples, n_in = pooled.shape
    n_hidden, n_kernels = w1.shape[0], w2.shape[0]
    dw1[:] = 0.0
    db1[:] = 0.0
    dw2[:] = 0.0
    db2[:] = 0.0
    dz = np.empty(n_kernels, pi.dtype)
    dh = np.empty(n_hidden, pi.dtype)
    for n in range(n_samples):
        inner = 0.0
        for k in range(n_kernels):
            inner += dpi[n, k] * pi[n, k]
        for k in range(n_kernels):
            dz[k] = pi[n, k] * (dpi[n, k] - inner) / tau
            db2[k] += dz[k]
            for j in range(n_hidden):
                dw2[k, j] += dz[k] * hidden[n, j]
        for j in range(n_hidden):
            total = 0.0
            if hidden[n, j] > 0:
                for k in range(n_kernels):
                    total += dz[k] * w2[k, j]
            dh[j] = total
            db1[j] += total
            for c in range(n_in):
                dw1[j, c] += total * pooled[n, c]
        dpooled[n, :] = 0.0
        for j in range(n_hidden):
            for c in range(n_in):
                dpooled[n, c] += dh[j] * w1[j, c]


@announces_compilation
def attention_forward(pooled, w1, b1, w2, b2, tau):
    """(pi (N, K), hidden (N, hidden)) for the attention branch; arrays of one dtype."""
    dtype = pooled.dtype
    hidden = np.empty((pooled.shape[0], w1.shape[0]), dtype)
    pi = np.empty((pooled.shape[0], w2.shape[0]), dtype)
    _forward(pooled, w1, b1, w2, b2, dtype.type(tau), hidden, pi)
    return pi, hidden


@announces_compilation
def attention_backward(dpi, pi, hidden, pooled, w1, w2, tau):
    """(dpooled, dw1, db1, dw2, db2) of ``attention_forward``."""
    dtype = pooled.dtype
    grads = (np.empty(pooled.shape, dtype), np.empty(w1.shape, dtype),
             np.empty(w1.shape[0], dtype), np.empty(w2.shape, dtype),
             np.empty(w2.shape[0], dtype))
    _backward(np.ascontiguousarray(dpi, dtype), pi, hidden, pooled, w1, w2, dtype.type(tau),
              *grads)
    return grads
