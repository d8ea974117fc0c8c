"""Matrix products for the GEMM kernels, called straight through CBLAS, and BLAS's threads.

Inside jitted code ``np.dot`` reaches BLAS through SciPy's Fortran wrappers, which is slower
on the convolution shapes than a direct ``cblas_?gemm`` call into the OpenBLAS that NumPy
ships. ``cblas_gemm(dtype)`` finds that routine and returns it as a ctypes function, which the
kernels take as an argument (an argument, not a global: Numba can then still cache the kernels
on disk, since the address is not compiled in) and pass to ``matmul``.

Where to look: the BLAS libraries loaded in this process (threadpoolctl lists them; NumPy's
own is tried first), by the symbol names whose integer width is known from their name: OpenBLAS
builds for NumPy and SciPy ("scipy_openblas") export ``scipy_cblas_sgemm64_`` (64-bit integers)
or ``scipy_cblas_sgemm`` (32-bit), and 64-bit-integer OpenBLAS builds ``cblas_sgemm64_``. A
plain ``cblas_sgemm`` is not used: its integer width cannot be told from outside. Each candidate
must reproduce a small product before it is used. When none is found (NumPy linked to another
BLAS, say), ``cblas_gemm`` returns None and ``matmul`` falls back to ``np.dot``.

BLAS runs single-threaded inside the kernels' ``prange`` loops (``single_threaded_blas``, from
``backends/blas_threads.py``): a multi-threaded BLAS called from Numba's threads (or alternating
with them) makes both thread pools spin against each other, which on a small machine is many
times slower.
"""
import ctypes
import functools
import os

import numpy as np
from numba import njit, types
from numba.extending import overload

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112

# (symbol name pattern, C type of its integer arguments); {} is "s" or "d"
_CANDIDATES = (("scipy_cblas_{}gemm64_", ctypes.c_int64),
               ("cblas_{}gemm64_", ctypes.c_int64),
               ("scipy_cblas_{}gemm", ctypes.c_int))
_SCALAR = {np.dtype(np.float32): ("s", ctypes.c_float),
           np.dtype(np.float64): ("d", ctypes.c_double)}


def ensure_available():
    """Numba's ``np.dot`` calls BLAS through SciPy; fail early with a clear message."""
    try:
        import scipy.linalg.cython_blas  # noqa: F401
    except ImportError as error:
        raise ImportError("the 'numba' backend needs SciPy (Numba calls BLAS through it): "
                          "pip install scipy") from error


def _blas_library_paths():
    """Paths of the BLAS libraries loaded in this process: NumPy's own first (the wheels keep
    it in numpy.libs/), then the others by path. threadpoolctl lists them in no fixed order,
    and a choice that changed from process to process would also change the kernels'
    argument types, so Numba would recompile them instead of loading them from its cache."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    numpy_dir = os.path.dirname(np.__file__)
    paths = [info["filepath"] for info in threadpool_info() if info.get("user_api") == "blas"]
    return sorted(paths, key=lambda path: (not path.startswith(numpy_dir), path))


def _reproduces_a_product(gemm, dtype):
    """True if ``gemm`` computes a small non-square product with a transposed operand right."""
    a = np.arange(6, dtype=dtype).reshape(2, 3) - 2
    b = np.arange(12, dtype=dtype).reshape(4, 3) / 4
    c = np.full((2, 4), np.nan, dtype)
    pointer = ctypes.c_void_p
    gemm(_ROW_MAJOR, _NO_TRANS, _TRANS, 2, 4, 3, 1.0, a.ctypes.data_as(pointer), 3,
         b.ctypes.data_as(pointer), 3, 0.0, c.ctypes.data_as(pointer), 4)
    return np.array_equal(c, a @ b.T)


@functools.lru_cache(maxsize=None)
def cblas_gemm(dtype):
    """cblas_?gemm for float32 or float64 as a ctypes function, or None if none was found."""
    letter, scalar = _SCALAR[np.dtype(dtype)]
    for path in _blas_library_paths():
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        for pattern, integer in _CANDIDATES:
            name = pattern.format(letter)
            if not hasattr(library, name):
                continue
            prototype = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                                         integer, integer, integer, scalar, ctypes.c_void_p,
                                         integer, ctypes.c_void_p, integer, scalar,
                                         ctypes.c_void_p, integer)
            gemm = prototype((name, library))
            if _reproduces_a_product(gemm, dtype):
                return gemm
    return None


@njit(cache=True)
def _np_dot_into(a, transpose_a, b, transpose_b, c, accumulate):
    """``matmul`` through ``np.dot`` (no CBLAS found)."""
    product = _np_dot(a, transpose_a, b, transpose_b)
    for i in range(c.shape[0]):
        for j in range(c.shape[1]):
            c[i, j] = c[i, j] + product[i, j] if accumulate else product[i, j]


@njit(cache=True)
def _np_dot(a, transpose_a, b, transpose_b):
    """op(a) @ op(b) through ``np.dot``, on contiguous copies (blocks of columns are not), one
    call per layout (so each is typed contiguous)."""
    a, b = _copy(a), _copy(b)
    if transpose_a and transpose_b:
        return np.dot(a.T, b.T)
    if transpose_a:
        return np.dot(a.T, b)
    if transpose_b:
        return np.dot(a, b.T)
    return np.dot(a, b)


@njit(cache=True)
def _copy(m):
    """A C-contiguous copy of a 2-D array, by loops (cheap to compile)."""
    out = np.empty(m.shape, m.dtype)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            out[i, j] = m[i, j]
    return out


@njit(cache=True)
def matmul(gemm, a, transpose_a, b, transpose_b, c, accumulate):
    """c = op(a) @ op(b), or c += op(a) @ op(b) with ``accumulate``; op(m) = m.T if its flag is
    set, else m.

    a, b and c are 2-D arrays of one dtype whose rows are contiguous (C-contiguous arrays, or
    blocks of columns of them: the row pitch is read from the strides). ``gemm`` comes from
    ``cblas_gemm``; when it is None (no CBLAS found) the product goes through ``np.dot``
    instead. Which of the two is chosen by the type of ``gemm`` when compiling (``_product``),
    so a kernel compiles only the one it uses: an ``if gemm is None`` branch here would be
    compiled into every kernel (Numba does not prune it), seconds of a cold start.
    """
    _product(gemm, a, transpose_a, b, transpose_b, c, accumulate)


def _product(gemm, a, transpose_a, b, transpose_b, c, accumulate):
    """``matmul``'s two implementations, chosen by ``_choose_product`` (jitted code only)."""
    raise NotImplementedError("_product is called from jitted code only")


@overload(_product)
def _choose_product(gemm, a, transpose_a, b, transpose_b, c, accumulate):
    if isinstance(gemm, types.NoneType):
        return lambda gemm, a, transpose_a, b, transpose_b, c, accumulate: _np_dot_into(
            a, transpose_a, b, transpose_b, c, accumulate)
    return _cblas_product


def _cblas_product(gemm, a, transpose_a, b, transpose_b, c, accumulate):
    rows, cols = c.shape
    inner = a.shape[0] if transpose_a else a.shape[1]
    gemm(_ROW_MAJOR, _TRANS if transpose_a else _NO_TRANS, _TRANS if transpose_b else _NO_TRANS,
         rows, cols, inner, 1.0, a.ctypes.data, _pitch(a), b.ctypes.data, _pitch(b),
         1.0 if accumulate else 0.0, c.ctypes.data, _pitch(c))


@njit(cache=True)
def _pitch(m):
    """The row pitch of a 2-D array with contiguous rows, in elements. A single row's stride
    means nothing (NumPy leaves any value on axes of length 1, 0 included): its width then."""
    return m.strides[0] // m.itemsize if m.shape[0] > 1 else max(1, m.shape[1])
