"""Argument checks used at the public boundary (functional front-ends and layer constructors).

Every check raises ``TypeError`` (wrong kind) or ``ValueError`` (wrong value or shape) with a
message that names the argument, what was expected and what was received. Kernels and backends
trust their inputs; nothing below them validates again.
"""
import numbers

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def is_host_array(a):
    """True for a NumPy array (host memory); False for device arrays (``__cuda_array_interface__``)."""
    return isinstance(a, np.ndarray)


def is_device_array(a):
    """True for CUDA device arrays: ``__cuda_array_interface__`` (CuPy, PyTorch, Numba) or a Numba
    device array (``__cuda_ndarray__``; the CUDA simulator's arrays have only that one)."""
    return hasattr(a, "__cuda_array_interface__") or bool(getattr(a, "__cuda_ndarray__", False))


def check_float_array(a, name, ndim=None, finite=True):
    """Validate a floating array: type, ndim, dtype float32/float64, and (host arrays) finiteness.

    Device arrays (anything with ``__cuda_array_interface__``) are checked by shape and dtype
    only, since reading their values would cost a host round trip.
    """
    if not is_host_array(a) and not is_device_array(a):
        raise TypeError(f"{name} must be a numpy.ndarray (or a CUDA device array); "
                        f"received {type(a).__name__}")
    if ndim is not None and len(a.shape) != ndim:
        raise ValueError(f"{name} must be {ndim}-D; received shape {tuple(a.shape)} ({len(a.shape)}-D)")
    if np.dtype(a.dtype) not in FLOAT_DTYPES:
        raise TypeError(f"{name} must have dtype float32 or float64; received {np.dtype(a.dtype)}")
    if finite and is_host_array(a):
        check_finite(a, name)
    return a


def check_finite(a, name):
    """Raise ValueError naming the first non-finite element of ``a`` (NaN or inf)."""
    if np.isfinite(a).all():  # the common case: one test, no index search
        return
    bad = ~np.isfinite(a)
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{name} contains {int(bad.sum())} non-finite value(s); the first is "
                         f"{float(a[index])} at index {index}")


def check_same_dtype(**arrays):
    """All named arrays (None ones skipped) must share one dtype; raise TypeError naming them."""
    present = {name: np.dtype(a.dtype) for name, a in arrays.items() if a is not None}
    if len(set(present.values())) > 1:
        listing = ", ".join(f"{name}={dtype}" for name, dtype in present.items())
        raise TypeError(f"mixed dtypes are not supported; received {listing} "
                        "(cast them all to float32 or all to float64)")


def check_shape(a, name, expected):
    """a.shape must equal ``expected`` (a tuple; None entries match anything)."""
    shape = tuple(a.shape)
    if len(shape) != len(expected) or any(e is not None and e != s for e, s in zip(expected, shape)):
        pretty = tuple("*" if e is None else e for e in expected)
        raise ValueError(f"{name} must have shape {pretty}; received {shape}")


def as_pair(value, name, minimum):
    """An int or a pair of ints -> a tuple of two ints, each >= ``minimum``."""
    pair = (value, value) if _is_int(value) else value
    if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and all(_is_int(v) for v in pair)):
        raise TypeError(f"{name} must be an int or a pair of ints; received {value!r}")
    pair = (int(pair[0]), int(pair[1]))
    if min(pair) < minimum:
        kind = "positive" if minimum == 1 else f">= {minimum}"
        raise ValueError(f"{name} must be {kind}; received {value!r}")
    return pair


def check_positive_int(value, name):
    """value must be an int >= 1."""
    if not _is_int(value) or value < 1:
        raise ValueError(f"{name} must be a positive int; received {value!r}")
    return int(value)


def check_temperature(tau):
    """tau must be a finite real number > 0 (the softmax temperature)."""
    if isinstance(tau, bool) or not isinstance(tau, numbers.Real):
        raise TypeError(f"temperature (tau) must be a real number; received {type(tau).__name__}")
    if not np.isfinite(tau) or tau <= 0:
        raise ValueError(f"temperature (tau) must be finite and > 0; received {tau!r}")
    return float(tau)


def _is_int(value):
    # type(...) is int first: the ABC check alone costs microseconds per call
    return type(value) is int or (isinstance(value, numbers.Integral)
                                  and not isinstance(value, bool))
