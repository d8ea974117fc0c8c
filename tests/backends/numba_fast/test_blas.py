"""The CBLAS matrix product the GEMM kernels call, and BLAS held to one thread while they run
(``numba_fast/blas.py``)."""
import ctypes

import numpy as np
import pytest
from hypothesis import given, strategies as st

from dynconv_np.backends.numba_fast import blas

from .checks import REFERENCE, assert_within_rounding

DTYPES = [np.float32, np.float64]


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_cblas_gemm_is_found_where_numpy_ships_openblas(dtype):
    """NumPy's wheels ship OpenBLAS built as "scipy_openblas"; there the fast path must be
    taken (without it every product silently falls back to np.dot)."""
    from threadpoolctl import threadpool_info
    shipped = any("scipy_openblas" in info.get("filepath", "") for info in threadpool_info())
    if not shipped:
        pytest.skip("no scipy_openblas loaded: NumPy uses another BLAS here")
    assert blas.cblas_gemm(dtype) is not None


@given(rows=st.integers(1, 7), inner=st.integers(1, 7), cols=st.integers(1, 7),
       transpose_a=st.booleans(), transpose_b=st.booleans(), accumulate=st.booleans(),
       dtype=st.sampled_from(DTYPES), use_cblas=st.booleans(),
       seed=st.integers(0, 2**32 - 1))
def test_matmul_matches_numpy_for_every_transpose(rows, inner, cols, transpose_a, transpose_b,
                                                  accumulate, dtype, use_cblas, seed):
    """c = op(a) @ op(b), or c += op(a) @ op(b), through CBLAS and through the np.dot fallback
    (gemm=None).

    Tolerance: a sum of `inner` products (and c's former value), ``checks.bound``.
    """
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((inner, rows) if transpose_a else (rows, inner)).astype(dtype)
    b = rng.standard_normal((cols, inner) if transpose_b else (inner, cols)).astype(dtype)
    before = rng.standard_normal((rows, cols)).astype(dtype) if accumulate else None
    c = before.copy() if accumulate else np.full((rows, cols), np.nan, dtype)
    inputs = (a.copy(), b.copy())
    blas.matmul(blas.cblas_gemm(dtype) if use_cblas else None, a, transpose_a, b,
                transpose_b, c, accumulate)
    op_a, op_b = (a.T if transpose_a else a), (b.T if transpose_b else b)
    want = op_a.astype(REFERENCE) @ op_b.astype(REFERENCE)
    scale = np.abs(op_a).astype(REFERENCE) @ np.abs(op_b).astype(REFERENCE)
    if accumulate:
        want, scale = want + before.astype(REFERENCE), scale + np.abs(before).astype(REFERENCE)
    assert_within_rounding(c, want, scale, inner + accumulate, dtype, "c")
    np.testing.assert_array_equal(a, inputs[0])
    np.testing.assert_array_equal(b, inputs[1])


def test_a_library_whose_gemm_gives_wrong_results_is_not_used(monkeypatch):
    """The candidate check catches a wrong ABI (say, the wrong integer width): a function
    that leaves c untouched must be rejected, and with no other candidate None comes back."""
    def broken_gemm(*args):
        return None

    class FakeLibrary:
        scipy_cblas_sgemm64_ = object()

    monkeypatch.setattr(blas, "_blas_library_paths", lambda: ["fake"])
    monkeypatch.setattr(ctypes, "CDLL", lambda path: FakeLibrary())
    monkeypatch.setattr(ctypes, "CFUNCTYPE", lambda *types: lambda spec: broken_gemm)
    blas.cblas_gemm.cache_clear()
    try:
        assert blas.cblas_gemm(np.float32) is None
    finally:
        blas.cblas_gemm.cache_clear()


def test_numpys_own_blas_is_tried_first_whatever_order_threadpoolctl_gives(monkeypatch):
    """threadpoolctl's order changes from process to process; the choice must not (a different
    library means different kernel argument types and a recompile instead of a cache load)."""
    import os
    import threadpoolctl
    numpy_lib = os.path.join(os.path.dirname(np.__file__) + ".libs", "libopenblas.so")
    infos = [{"user_api": "blas", "filepath": "/opt/other/libblas.so"},
             {"user_api": "openmp", "filepath": "/opt/omp/libgomp.so"},
             {"user_api": "blas", "filepath": numpy_lib}]
    for order in (infos, infos[::-1]):
        monkeypatch.setattr(threadpoolctl, "threadpool_info", lambda order=order: order)
        assert blas._blas_library_paths() == [numpy_lib, "/opt/other/libblas.so"]
