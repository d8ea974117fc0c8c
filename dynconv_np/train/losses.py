"""Softmax cross-entropy with optional label smoothing, and its backward pass.

For logits z (N, C) and integer labels y (N,), with smoothing eps in [0, 1):

    log p[n, c] = z[n, c] - m_n - log sum_j exp(z[n, j] - m_n),   m_n = max_j z[n, j]
    q[n, c]     = (1 - eps) [c == y_n] + eps / C                    (the smoothed target)
    L           = -1/N sum_n sum_c q[n, c] log p[n, c]

Subtracting the row maximum m_n makes every exponent <= 0 and the largest term exactly 1, so
the log-sum-exp neither overflows nor takes log(0), for any finite logits. Backward
(d log p[n, c] / d z[n, j] = [c == j] - p[n, j], and sum_c q[n, c] = 1):

    dz[n, c] = dL / N * (p[n, c] - q[n, c])
"""
import numpy as np

from .._validation import check_float_array, check_shape


def cross_entropy_forward(logits, labels, label_smoothing=0.0):
    """Mean softmax cross-entropy -> (loss, cache).

    Parameters
    ----------
    logits : ndarray (N, C), float32 or float64.
    labels : integer ndarray (N,) with values in 0..C-1.
    label_smoothing : float in [0, 1); 0 gives the plain cross-entropy.

    Returns
    -------
    loss : float, the mean over the batch (computed in the logits' dtype).
    cache : dict for ``cross_entropy_backward``.
    """
    check_float_array(logits, "logits", ndim=2)
    n, c = logits.shape
    if n == 0:
        raise ValueError("logits must hold at least one sample; received shape (0, "
                         f"{c})")
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"labels must be integers; received dtype {labels.dtype}")
    check_shape(labels, "labels", (n,))
    if labels.min() < 0 or labels.max() >= c:
        raise ValueError(f"labels must be in 0..{c - 1} (logits have C={c} classes); received "
                         f"values {labels.min()}..{labels.max()}")
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1); received {label_smoothing!r}")
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    target = np.full_like(logits, label_smoothing / c)
    target[np.arange(n), labels] += 1.0 - label_smoothing
    loss = -np.sum(target * log_p) / n
    return float(loss), {"p": np.exp(log_p), "target": target}


def cross_entropy_backward(dloss, cache):
    """dlogits (N, C) = dloss / N * (softmax(logits) - target)."""
    p, target = cache["p"], cache["target"]
    return (p - target) * p.dtype.type(dloss / p.shape[0])


def accuracy(logits, labels):
    """Fraction of rows whose arg-max logit equals the label."""
    return float(np.mean(np.argmax(logits, axis=1) == np.asarray(labels)))
