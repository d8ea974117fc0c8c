"""Argument checks, used only at the public boundary.

Every public function (each functional ``*_forward`` and ``*_backward``, every layer method)
checks its own arguments with these helpers, once, and then calls a private implementation that
trusts them; compositions call the private implementations. Every check raises ``TypeError``
(wrong kind) or ``ValueError`` (wrong value or shape) with a message that names the argument,
what was expected and what was received.

Backward passes check their upstream gradients against the forward's outputs: a public forward
records, in its cache, the stage's name and the shape and dtype of each output
(``stage_cache``), and its backward calls ``check_upstream`` before doing any work.
"""
import math
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


def check_float_array(a, name, ndim=None, finite=True, host=False):
    """Validate a floating array: type, ndim, dtype float32/float64, and (host arrays) finiteness.

    Device arrays (anything with ``__cuda_array_interface__``) are checked by shape and dtype
    only, since reading their values would cost a host round trip; ``host=True`` (a stage that
    computes with NumPy only) refuses them, naming ``name``.
    """
    if (type(a) is np.ndarray and a.dtype.char in "fd" and a.dtype.isnative
            and (ndim is None or a.ndim == ndim)):
        if finite:  # the common case, tested first: a layer checks a dozen arrays a call
            check_finite(a, name)
        return a
    if host and is_device_array(a):
        raise TypeError(f"{name} is a CUDA device array, but this computation runs on the host "
                        f"(NumPy); copy it to the host first; received {type(a).__name__}")
    if not is_host_array(a) and not is_device_array(a):
        raise TypeError(f"{name} must be a numpy.ndarray (or a CUDA device array); "
                        f"received {type(a).__name__}")
    if not is_host_array(a) and not (hasattr(a, "shape") and hasattr(a, "dtype")):
        raise TypeError(f"{name} is a CUDA device array without shape/dtype attributes; "
                        f"received {type(a).__name__}")
    if ndim is not None and len(a.shape) != ndim:
        raise ValueError(f"{name} must be {ndim}-D; received shape {tuple(a.shape)} ({len(a.shape)}-D)")
    if np.dtype(a.dtype) not in FLOAT_DTYPES:
        raise TypeError(f"{name} must have dtype float32 or float64; received {np.dtype(a.dtype)}")
    if finite and is_host_array(a):
        check_finite(a, name)
    return a


# Largest array (elements) a public function will allocate for an output, a padded input or a
# parameter: a typo in padding or kernel_size must fail with a message naming it, not by
# allocating (or trying to allocate) tens of gigabytes.
MAX_ELEMENTS = 2 ** 31


def check_size(shape, what, culprits):
    """ValueError when an array of ``shape`` (``what``) would exceed MAX_ELEMENTS elements;
    the message names ``culprits``, the arguments that set the size."""
    elements = 1
    for extent in shape:
        elements *= int(extent)
    if elements > MAX_ELEMENTS:
        raise ValueError(f"{what} would have shape {tuple(int(e) for e in shape)} ({elements:.3g} "
                         f"elements, more than the limit {MAX_ELEMENTS:.3g}); check {culprits}")


def check_float_dtype(dtype, name="dtype"):
    """A dtype argument -> np.dtype float32 or float64, else TypeError (``"flaot32"`` too;
    None too, which ``np.dtype`` would silently read as float64)."""
    try:
        resolved = None if dtype is None else np.dtype(dtype)
    except (TypeError, ValueError):
        resolved = None
    # ``None in FLOAT_DTYPES`` is True (np.dtype(None) is float64): test for None first
    if resolved is None or resolved not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64; received {dtype!r}")
    return resolved


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
    """All named arrays (None ones skipped) must share one dtype; raise TypeError naming them
    (and naming any that is no array at all)."""
    for name, a in arrays.items():
        if a is not None and not is_host_array(a) and not is_device_array(a):
            raise TypeError(f"{name} must be a numpy.ndarray (or a CUDA device array); "
                            f"received {type(a).__name__}")
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


def check_named_arrays(arrays, shapes, dtype):
    """Each ``arrays[name]`` for ``name, shape`` in ``shapes``: a float array of that shape,
    finite, of ``dtype`` (x's, said so in the message)."""
    for name, shape in shapes.items():
        array = check_float_array(arrays[name], name, ndim=len(shape))
        check_shape(array, name, shape)
        if array.dtype != dtype:
            raise TypeError(f"{name} has dtype {array.dtype} but x is {dtype}; mixed dtypes are "
                            "not supported")


def check_param_names(params, names, what, optional=("bias",)):
    """``params`` must be a dict holding every name of ``names`` but the ``optional`` ones;
    TypeError / ValueError naming ``what`` (e.g. "DCD") and the missing keys."""
    if not isinstance(params, dict):
        raise TypeError(f"params must be a dict of the {what} parameters {names}; received "
                        f"{type(params).__name__}")
    missing = [name for name in names if name not in optional and name not in params]
    if missing:
        raise ValueError(f"params is missing the {what} parameter(s) {missing}; it has "
                         f"{sorted(params)}")


def check_host_backend(backend, what, why=""):
    """The backend module called ``backend``; ValueError for a device backend ("cuda"), refused
    before importing it: ``what`` (a layer or stage name) computes on the host (``why``)."""
    from .backends import get_backend, runs_on_device  # backends import this module
    module = None if backend == "cuda" else get_backend(backend)
    if module is None or runs_on_device(module):
        raise ValueError(f"{what} runs on a host backend (numpy, loops or numba{why}); "
                         f"received backend={backend!r}")
    return module


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


def check_real(value, name, low, high=np.inf, low_open=False, high_open=False):
    """A finite real number in the interval given (ends open or closed); else TypeError or
    ValueError naming ``name`` and the interval."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number; received {type(value).__name__}")
    below = value <= low if low_open else value < low
    above = value >= high if high_open else value > high
    if not _finite(value) or below or above:
        closing = ")" if high_open or high == np.inf else "]"
        interval = f"{'(' if low_open else '['}{low}, {high}{closing}"
        raise ValueError(f"{name} must be finite and in {interval}; received {value!r}")
    return float(value)


def check_temperature(tau, dtype=None):
    """tau must be a finite real number > 0 (the softmax temperature) and, for a computation in
    ``dtype``, at least that dtype's smallest normal number (so that 1 / tau is finite)."""
    if isinstance(tau, bool) or not isinstance(tau, numbers.Real):
        raise TypeError(f"temperature (tau) must be a real number; received {type(tau).__name__}")
    if not _finite(tau) or tau <= 0:
        raise ValueError(f"temperature (tau) must be finite and > 0; received {tau!r}")
    if dtype is not None:
        info = np.finfo(dtype)
        usable = f"the usable range for {np.dtype(dtype)} is [{info.tiny:.3g}, {info.max:.3g}]"
        if tau < info.tiny:
            raise ValueError(f"temperature (tau) = {tau!r} is below the smallest normal "
                             f"{np.dtype(dtype)} ({info.tiny:.3g}): 1 / tau would overflow; "
                             f"{usable}")
        if tau > info.max:
            raise ValueError(f"temperature (tau) = {tau!r} is above the largest "
                             f"{np.dtype(dtype)} ({info.max:.3g}); {usable}")
    return float(tau)


def _finite(value):
    """math.isfinite for any real, an int too large for a float (10**400) included (False)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _is_int(value):
    # type(...) is int first: the ABC check alone costs microseconds per call
    return type(value) is int or (isinstance(value, numbers.Integral)
                                  and not isinstance(value, bool))


def check_finite_via(a, name, reduced, reduction):
    """The NaN/inf screen of large activations: ValueError unless ``a`` (N, C, H, W) is finite,
    judged by ``reduced`` (N, C), its per-plane mean or sum, which the computation makes anyway.

    A NaN or inf anywhere in a plane makes that plane's mean or sum NaN or inf, so only a
    non-finite ``reduced`` costs an element-wise search of ``a`` (which names the first bad
    element). A finite plane whose sum overflows is rejected too: its result would be inf.
    Device arrays are judged by ``reduced`` alone.
    """
    if np.isfinite(reduced).all():
        return
    if is_host_array(a):
        check_finite(a, name)  # raises, naming the first NaN/inf, if there is one
    n, c = np.argwhere(~np.isfinite(reduced))[0]
    raise ValueError(f"{name} must be finite; the {reduction} of {name}[{n}, {c}] over (H, W) is "
                     f"{float(reduced[n, c])} (a NaN or inf in that plane, or values whose sum "
                     f"overflows {np.dtype(a.dtype)})")


def check_finite_through(a, name, derived, what):
    """ValueError unless ``a`` is finite, judged by ``derived``, a smaller array computed from
    it (``what``, e.g. "the per-sample kernels W_n = pi W") in which any NaN or inf of ``a``
    shows as a NaN or inf. Only a non-finite ``derived`` costs a search of ``a``, which names
    the first bad element; a finite ``a`` whose ``derived`` overflowed is rejected too."""
    if np.isfinite(derived).all():
        return
    check_finite(a, name)
    raise ValueError(f"{name} is finite, but {what} overflows {np.dtype(a.dtype)}")


def screened_backward(backward, dy, cache, reduction="sum"):
    """``backward(dy, cache)``, whose last result is a reduction of dy that the pass makes anyway
    (the bias gradient db_n: per-plane sums; or None), with dy screened for NaN/inf through it
    (``check_finite_via``), or scanned when there is none; NumPy's warnings about a NaN/inf in
    dy are silenced (the screen reports it). Returns the other results; raises before the caller
    can use or accumulate any of them."""
    with np.errstate(invalid="ignore", over="ignore"):
        *results, reduced = backward(dy, cache)
    if is_host_array(reduced):
        check_finite_via(dy, "dy", reduced, reduction)
    elif is_host_array(dy):
        check_finite(dy, "dy")
    return tuple(results)


def stage_cache(stage, cache, *outputs):
    """Mark ``cache`` as the cache of public ``stage``'s forward, with its outputs' shapes and
    dtypes (None for an output the call did not produce), for ``check_upstream``."""
    cache["stage"] = stage
    cache["outputs"] = tuple(None if out is None else (tuple(out.shape), np.dtype(out.dtype))
                             for out in outputs)
    return cache


def check_upstream(cache, stage, finite=True, **grads):
    """A public backward's arguments: ``cache`` must come from ``stage``'s forward, and each
    upstream gradient (in the order of the forward's outputs) must be an array of that output's
    shape and dtype, finite unless ``finite=False`` (a caller that screens it itself), or None
    where the forward produced no such output. Returns the gradients, C-contiguous."""
    if not isinstance(cache, dict) or cache.get("stage") != stage:
        received = cache.get("stage") if isinstance(cache, dict) else type(cache).__name__
        raise TypeError(f"cache must be the cache returned by {stage}_forward; received "
                        f"{received!r}")
    outputs = cache.get("outputs")
    if not isinstance(outputs, tuple) or len(outputs) != len(grads):
        raise TypeError(f"cache must be the cache returned by {stage}_forward, unchanged; "
                        f"received a dict whose 'outputs' entry is {outputs!r}")
    on_device = _cache_on_device(cache)
    checked = []
    for (name, grad), spec in zip(grads.items(), outputs):
        if spec is None:
            if grad is not None:
                raise ValueError(f"{name} must be None: the forward pass produced no such output "
                                 f"(received shape {getattr(grad, 'shape', type(grad).__name__)})")
            checked.append(None)
            continue
        shape, dtype = spec
        if grad is None:
            raise ValueError(f"{name} must be an array of shape {shape} (the forward output's); "
                             "received None")
        check_float_array(grad, name, finite=False)
        if is_device_array(grad) and not on_device:
            raise TypeError(f"{name} is a CUDA device array, but the forward pass ran on a host "
                            "backend; copy it to the host first (or run the forward with "
                            "backend='cuda')")
        if tuple(grad.shape) != shape:
            raise ValueError(f"{name} must have the shape of the forward output {shape}; "
                             f"received {tuple(grad.shape)}")
        if np.dtype(grad.dtype) != dtype:
            raise TypeError(f"{name} must have the dtype of the forward output ({dtype}); "
                            f"received {np.dtype(grad.dtype)}")
        if finite and is_host_array(grad):
            check_finite(grad, name)
        checked.append(contiguous(grad))
    return checked[0] if len(checked) == 1 else tuple(checked)


def _cache_on_device(cache):
    """True when the forward that made ``cache`` ran on a device backend (its cache, or a
    layer's wrapped cache, names the backend module); every other stage computes on the host."""
    from .backends import runs_on_device
    for inner in (cache, cache.get("cache")):
        module = inner.get("backend") if isinstance(inner, dict) else None
        if module is not None and getattr(module, "NAME", None) is not None and \
                runs_on_device(module):
            return True
    return False


def contiguous(a):
    """A C-contiguous, writeable host array, copied only when ``a`` is not one already (a
    read-only input, e.g. from ``np.load(..., mmap_mode="r")``, is copied: Numba kernels are
    compiled for writeable arrays); device arrays as they are."""
    if is_host_array(a) and not (a.flags.c_contiguous and a.flags.writeable):
        return np.array(a, order="C")
    return a
