"""The numba backend against the NumPy reference (the judge), for every contract function.

Tolerances. Both backends compute the same sums of products in a different order (BLAS
blocking, per-thread partial sums, direct loops), so they differ by rounding only. A sum
of D products has a rounding error of at most about D * eps * sum |products|, so each
difference is measured against that magnitude: the same function evaluated on |inputs|
(a sum of |products|, computed by the reference). Sums here have D <= a few hundred
terms; with typical errors growing like sqrt(D) * eps, the bounds are
    float64: 1e-10 * scale   (eps = 2.2e-16: a margin of ~1e4 over worst-case D * eps),
    float32: 1e-4 * scale    (eps = 1.2e-7: a margin of ~10 over D * eps for D = 100).
A wrong index or a missed term changes a result by the order of the scale itself.
"""
import numpy as np
from hypothesis import given, strategies as st

from dynconv_np.backends import cpu, reference

from ..strategies import conv_configs, pair

TOLERANCE = {np.float32: 1e-4, np.float64: 1e-10}
DTYPES = st.sampled_from([np.float32, np.float64])


def assert_close_to_scale(actual, expected, scale, dtype, name):
    """|actual - expected| <= tol(dtype) * scale element-wise, and actual keeps the dtype."""
    assert actual.dtype == dtype, f"{name}: dtype {actual.dtype}, expected {np.dtype(dtype)}"
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != {expected.shape}"
    bound = TOLERANCE[dtype] * (scale + np.finfo(dtype).tiny)
    excess = np.abs(actual.astype(np.float64) - expected) - bound
    worst = np.unravel_index(np.argmax(excess), excess.shape) if excess.size else ()
    assert excess.size == 0 or excess[worst] <= 0, (
        f"{name} mismatch at {worst}: numba {actual[worst]!r}, reference {expected[worst]!r}, "
        f"allowed {bound[worst]!r}")


def _conv_arrays(rng, c, per_sample, dtype):
    n = c["n"]
    nw = n if per_sample else 1
    x = rng.standard_normal((n, c["in_channels"]) + tuple(c["size"])).astype(dtype)
    w = rng.standard_normal((nw, c["out_channels"], c["in_channels"] // c["groups"])
                            + tuple(c["kernel"])).astype(dtype)
    b = rng.standard_normal((nw, c["out_channels"])).astype(dtype) if c["bias"] else None
    return x, w, b


def _geometry(c):
    return pair(c["stride"]), pair(c["padding"]), pair(c["dilation"]), c["groups"]


def _abs_or_none(a):
    return None if a is None else np.abs(a)


def _check_conv(c, per_sample, dtype, seed):
    """numba forward and backward == reference, to rounding; inputs untouched; dtypes kept."""
    rng = np.random.default_rng(seed)
    x, w, b = _conv_arrays(rng, c, per_sample, dtype)
    geometry = _geometry(c)
    originals = [a.copy() for a in (x, w, b) if a is not None]

    y = cpu.conv2d_forward(x, w, b, *geometry)
    as64 = [None if a is None else a.astype(np.float64) for a in (x, w, b)]
    expected = reference.conv2d_forward(*as64, *geometry)
    scale = reference.conv2d_forward(*[_abs_or_none(a) for a in as64], *geometry)
    assert_close_to_scale(y, expected, scale, dtype, "y")

    dy = rng.standard_normal(y.shape).astype(dtype)
    grads = cpu.conv2d_backward(dy, x, w, *geometry, b is not None)
    dy64 = dy.astype(np.float64)
    expected = reference.conv2d_backward(dy64, as64[0], as64[1], *geometry, b is not None)
    scales = reference.conv2d_backward(np.abs(dy64), np.abs(as64[0]), np.abs(as64[1]),
                                       *geometry, b is not None)
    for name, got, want, scale in zip(("dx", "dw", "db"), grads, expected, scales):
        if want is None:
            assert got is None, f"{name} should be None without a bias"
        else:
            assert_close_to_scale(got, want, scale, dtype, name)
    for before, after in zip(originals, [a for a in (x, w, b) if a is not None]):
        np.testing.assert_array_equal(before, after, err_msg="an input was modified")


@given(c=conv_configs(max_batch=3), per_sample=st.booleans(), dtype=DTYPES,
       seed=st.integers(0, 2**32 - 1))
def test_conv2d_matches_reference(c, per_sample, dtype, seed):
    """Dense, grouped, depthwise (with multiplier); any stride/padding/dilation pairs;
    kernels incl. 1x1 and non-square; N incl. 1; Nw = N (dynamic) and Nw = 1 (shared)."""
    _check_conv(c, per_sample, dtype, seed)


@st.composite
def large_image_configs(draw):
    """Images with more output pixels than one forward work unit holds, so the forward
    splits samples into several row blocks (with a shorter last block), and batches larger
    than the thread count, so shared-kernel gradients go through per-thread partial sums."""
    groups = draw(st.sampled_from([1, 2]))
    c_group = draw(st.sampled_from([1, 2]))
    c_out_group = draw(st.integers(1, 2))
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    return dict(n=draw(st.integers(1, 5)), in_channels=groups * c_group,
                out_channels=groups * c_out_group, kernel=kernel,
                stride=(draw(st.integers(1, 2)), 1), padding=(1, draw(st.integers(0, 1))),
                dilation=(1, draw(st.integers(1, 2))), groups=groups,
                size=(draw(st.integers(17, 40)), draw(st.integers(5, 40))),
                bias=draw(st.booleans()))


@given(c=large_image_configs(), per_sample=st.booleans(), dtype=DTYPES,
       seed=st.integers(0, 2**32 - 1))
def test_conv2d_matches_reference_on_row_blocks(c, per_sample, dtype, seed):
    _check_conv(c, per_sample, dtype, seed)


@given(n=st.integers(1, 4), k=st.integers(1, 5), shape=st.lists(st.integers(1, 4), min_size=1,
       max_size=4), bias=st.booleans(), dtype=DTYPES, seed=st.integers(0, 2**32 - 1))
def test_aggregation_matches_reference(n, k, shape, bias, dtype, seed):
    """W_n = sum_k pi[n,k] weight[k] (and b_n), and its backward (dpi, dweight, dbias)."""
    rng = np.random.default_rng(seed)
    pi = rng.dirichlet(np.ones(k), size=n).astype(dtype)
    weight = rng.standard_normal((k,) + tuple(shape)).astype(dtype)
    b = rng.standard_normal((k, shape[0])).astype(dtype) if bias else None
    inputs = [a.copy() for a in (pi, weight) + ((b,) if bias else ())]
    w_n, b_n = cpu.aggregate_forward(pi, weight, b)
    as64 = [None if a is None else a.astype(np.float64) for a in (pi, weight, b)]
    for name, got, want, scale in zip(
            ("W_n", "b_n"), (w_n, b_n), reference.aggregate_forward(*as64),
            reference.aggregate_forward(*[_abs_or_none(a) for a in as64])):
        if want is None:
            assert got is None
        else:
            assert_close_to_scale(got, want, scale, dtype, name)

    dw_n = rng.standard_normal(w_n.shape).astype(dtype)
    db_n = rng.standard_normal(b_n.shape).astype(dtype) if bias else None
    got = cpu.aggregate_backward(dw_n, db_n, pi, weight, b)
    d64 = [None if a is None else a.astype(np.float64) for a in (dw_n, db_n)]
    want = reference.aggregate_backward(*d64, *as64)
    scales = reference.aggregate_backward(*[_abs_or_none(a) for a in d64],
                                          *[_abs_or_none(a) for a in as64])
    for name, g, e, s in zip(("dpi", "dweight", "dbias"), got, want, scales):
        if e is None:
            assert g is None
        else:
            assert_close_to_scale(g, e, s, dtype, name)
    for before, after in zip(inputs, (pi, weight) + ((b,) if bias else ())):
        np.testing.assert_array_equal(before, after, err_msg="an input was modified")


@given(shape=st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 9),
                       st.integers(1, 9)), dtype=DTYPES, seed=st.integers(0, 2**32 - 1))
def test_spatial_mean_and_its_gradient_match_reference(shape, dtype, seed):
    """pooled[n, c] = mean_{h,w} x; backward adds dpooled / (H W) into dx in place."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    x_before = x.copy()
    pooled = cpu.spatial_mean(x)
    x64 = x.astype(np.float64)
    assert_close_to_scale(pooled, reference.spatial_mean(x64),
                          reference.spatial_mean(np.abs(x64)), dtype, "pooled")
    np.testing.assert_array_equal(x, x_before, err_msg="spatial_mean modified x")

    dpooled = rng.standard_normal(shape[:2]).astype(dtype)
    dx = rng.standard_normal(shape).astype(dtype)
    expected = dx.astype(np.float64)
    reference.add_spatial_mean_grad(expected, dpooled.astype(np.float64))
    scale = np.abs(dx.astype(np.float64)) + np.abs(dpooled.astype(np.float64))[:, :, None, None]
    cpu.add_spatial_mean_grad(dx, dpooled)
    assert_close_to_scale(dx, expected, scale, dtype, "dx (in place)")


@st.composite
def wide_output_configs(draw):
    """At least cpu._TRANSPOSED_BELOW output channels per group, so the forward forms its
    product as W @ cols (narrower groups take the transposed product, cols^T @ W^T)."""
    groups = draw(st.sampled_from([1, 2]))
    c_out_group = draw(st.sampled_from([cpu._TRANSPOSED_BELOW, cpu._TRANSPOSED_BELOW + 3]))
    return dict(n=draw(st.integers(1, 3)), in_channels=groups * draw(st.integers(2, 3)),
                out_channels=groups * c_out_group,
                kernel=(draw(st.integers(1, 3)), draw(st.integers(1, 3))),
                stride=(draw(st.integers(1, 2)), draw(st.integers(1, 2))),
                padding=(draw(st.integers(0, 1)), draw(st.integers(0, 1))),
                dilation=(1, draw(st.integers(1, 2))), groups=groups,
                size=(draw(st.integers(5, 12)), draw(st.integers(5, 12))),
                bias=draw(st.booleans()))


@given(c=wide_output_configs(), per_sample=st.booleans(), dtype=DTYPES,
       seed=st.integers(0, 2**32 - 1))
def test_conv2d_matches_reference_with_wide_output_groups(c, per_sample, dtype, seed):
    _check_conv(c, per_sample, dtype, seed)
