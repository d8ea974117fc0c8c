"""Kernel aggregation and the per-plane sums (``numba_fast/reductions.py``) against the
reference, to the rounding bound of ``checks.py``."""
import numpy as np
from hypothesis import given, strategies as st

from dynconv_np.backends import numba_fast, reference

from .checks import DTYPES, absolute, assert_within_rounding, up


@given(n=st.integers(1, 4), k=st.integers(1, 5), shape=st.lists(st.integers(1, 4), min_size=1,
       max_size=4), bias=st.booleans(), dtype=DTYPES, seed=st.integers(0, 2**32 - 1))
def test_aggregation_matches_reference(n, k, shape, bias, dtype, seed):
    """W_n = sum_k pi[n,k] weight[k] (and b_n), and its backward (dpi, dweight, dbias).

    Terms: W_n and b_n K each; dpi[n, k] the F = prod(shape) products of <dW_n, weight[k]>
    plus the C_out of <db_n, bias[k]>; dweight and dbias N each.
    """
    rng = np.random.default_rng(seed)
    pi = rng.dirichlet(np.ones(k), size=n).astype(dtype)
    weight = rng.standard_normal((k,) + tuple(shape)).astype(dtype)
    b = rng.standard_normal((k, shape[0])).astype(dtype) if bias else None
    inputs = [a.copy() for a in (pi, weight) + ((b,) if bias else ())]
    w_n, b_n = numba_fast.aggregate_forward(pi, weight, b)
    for name, got, want, scale in zip(
            ("W_n", "b_n"), (w_n, b_n), reference.aggregate_forward(up(pi), up(weight), up(b)),
            reference.aggregate_forward(absolute(pi), absolute(weight), absolute(b))):
        if want is None:
            assert got is None
        else:
            assert_within_rounding(got, want, scale, k, dtype, name)

    dw_n = rng.standard_normal(w_n.shape).astype(dtype)
    db_n = rng.standard_normal(b_n.shape).astype(dtype) if bias else None
    got = numba_fast.aggregate_backward(dw_n, db_n, pi, weight, b)
    want = reference.aggregate_backward(up(dw_n), up(db_n), up(pi), up(weight), up(b))
    scales = reference.aggregate_backward(absolute(dw_n), absolute(db_n), absolute(pi),
                                          absolute(weight), absolute(b))
    terms = {"dpi": int(np.prod(shape)) + (shape[0] if bias else 0), "dweight": n, "dbias": n}
    for name, g, e, s in zip(("dpi", "dweight", "dbias"), got, want, scales):
        if e is None:
            assert g is None
        else:
            assert_within_rounding(g, e, s, terms[name], dtype, name)
    for before, after in zip(inputs, (pi, weight) + ((b,) if bias else ())):
        np.testing.assert_array_equal(before, after, err_msg="an input was modified")


@given(shape=st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 9),
                       st.integers(1, 9)), dtype=DTYPES, seed=st.integers(0, 2**32 - 1))
def test_spatial_mean_and_its_gradient_match_reference(shape, dtype, seed):
    """pooled[n, c] = mean_{h,w} x (H*W terms, then one division: within the bound of H*W
    terms); backward adds dpooled / (H W) into dx in place (a division and an addition: 2)."""
    rng = np.random.default_rng(seed)
    h_w = shape[2] * shape[3]
    x = rng.standard_normal(shape).astype(dtype)
    x_before = x.copy()
    pooled = numba_fast.spatial_mean(x)
    assert_within_rounding(pooled, reference.spatial_mean(up(x)),
                           reference.spatial_mean(absolute(x)), h_w, dtype, "pooled")
    np.testing.assert_array_equal(x, x_before, err_msg="spatial_mean modified x")

    dpooled = rng.standard_normal(shape[:2]).astype(dtype)
    dx = rng.standard_normal(shape).astype(dtype)
    expected = up(dx)
    reference.add_spatial_mean_grad(expected, up(dpooled))
    scale = absolute(dx) + absolute(dpooled)[:, :, None, None] / h_w
    numba_fast.add_spatial_mean_grad(dx, dpooled)
    assert_within_rounding(dx, expected, scale, 2, dtype, "dx (in place)")
