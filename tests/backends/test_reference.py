"""The judge (``dynconv_np/backends/reference.py``) against independent computations:
scipy.signal.correlate for the convolution, finite differences for its backward, explicit sums
for the aggregation and the spatial mean. Every other backend is tested against this one."""
import numpy as np
from hypothesis import given, strategies as st

from dynconv_np.backends import reference
from dynconv_np.gradcheck import gradcheck

from ..scipy_conv import scipy_conv2d
from ..strategies import conv_configs, pair, random_array


def _case(config, seed, shared):
    rng = np.random.default_rng(seed)
    n, groups = config["n"], config["groups"]
    nw = 1 if shared else n
    x = random_array(rng, (n, config["in_channels"]) + config["size"])
    w = random_array(rng, (nw, config["out_channels"], config["in_channels"] // groups)
                     + config["kernel"])
    b = random_array(rng, (nw, config["out_channels"])) if config["bias"] else None
    geometry = (pair(config["stride"]), pair(config["padding"]), pair(config["dilation"]), groups)
    return x, w, b, geometry


@given(config=conv_configs(), seed=st.integers(0, 2**16), shared=st.booleans())
def test_forward_matches_scipy(config, seed, shared):
    """Both are float64 sums of the same <= 36 products of O(1) terms: 1e-12 is ~100 ulps."""
    x, w, b, geometry = _case(config, seed, shared)
    y = reference.conv2d_forward(x, w, b, *geometry)
    for n in range(x.shape[0]):
        k = 0 if shared else n
        expected = scipy_conv2d(x[n:n + 1], w[k], None if b is None else b[k], *geometry)
        np.testing.assert_allclose(y[n:n + 1], expected, rtol=0, atol=1e-12)


@given(config=conv_configs(max_batch=2, max_extra_side=2), seed=st.integers(0, 2**16),
       shared=st.booleans())
def test_backward_matches_finite_differences(config, seed, shared):
    x, w, b, geometry = _case(config, seed, shared)
    inputs = {"x": x, "w": w} if b is None else {"x": x, "w": w, "b": b}

    def forward(x, w, b=None):
        return reference.conv2d_forward(x, w, b, *geometry), (x, w)

    def backward(dy, cache):
        dx, dw, db = reference.conv2d_backward(dy, *cache, *geometry, b is not None)
        return {"x": dx, "w": dw, **({} if db is None else {"b": db})}

    assert gradcheck(forward, inputs, backward=backward).passed


@given(n=st.integers(1, 3), k=st.integers(1, 4), seed=st.integers(0, 2**16),
       bias=st.booleans())
def test_aggregation_is_the_weighted_sum_of_kernels(n, k, seed, bias):
    rng = np.random.default_rng(seed)
    pi, weight = rng.random((n, k)), rng.standard_normal((k, 3, 2, 2, 2))
    b = rng.standard_normal((k, 3)) if bias else None
    w_n, b_n = reference.aggregate_forward(pi, weight, b)
    expected = sum(pi[:, j, None, None, None, None] * weight[j] for j in range(k))
    np.testing.assert_allclose(w_n, expected, rtol=0, atol=1e-13)
    if bias:
        np.testing.assert_allclose(b_n, pi @ b, rtol=0, atol=1e-13)
    dw_n, db_n = rng.standard_normal(w_n.shape), (rng.standard_normal((n, 3)) if bias else None)
    dpi, dweight, dbias = reference.aggregate_backward(dw_n, db_n, pi, weight, b)
    want_dpi = np.einsum("nabcd,kabcd->nk", dw_n, weight) + (db_n @ b.T if bias else 0)
    np.testing.assert_allclose(dpi, want_dpi, rtol=0, atol=1e-12)
    np.testing.assert_allclose(dweight, np.einsum("nk,nabcd->kabcd", pi, dw_n), rtol=0,
                               atol=1e-12)
    assert (dbias is None) == (not bias)


def test_spatial_mean_and_its_adjoint():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4, 5))
    np.testing.assert_allclose(reference.spatial_mean(x), x.sum(axis=(2, 3)) / 20, atol=1e-15)
    dpooled = rng.standard_normal((2, 3))
    dx = np.zeros_like(x)
    reference.add_spatial_mean_grad(dx, dpooled)
    # adjoint identity: <mean(x), dpooled> = <x, dx>
    assert np.isclose(np.sum(reference.spatial_mean(x) * dpooled), np.sum(x * dx), atol=1e-13)


class _cols_budget:
    """Set ``reference.COLS_BUDGET_BYTES`` for a block (hypothesis tests cannot take the
    function-scoped monkeypatch fixture)."""

    def __init__(self, budget):
        self.budget = budget

    def __enter__(self):
        self.saved, reference.COLS_BUDGET_BYTES = reference.COLS_BUDGET_BYTES, self.budget

    def __exit__(self, *exc):
        reference.COLS_BUDGET_BYTES = self.saved


@given(config=conv_configs(max_batch=5), seed=st.integers(0, 2**16), shared=st.booleans(),
       samples_per_chunk=st.integers(1, 3))
def test_chunked_batch_equals_the_whole_batch(config, seed, shared, samples_per_chunk):
    """im2col a few samples at a time (a budget of 1 to 3 samples' cols, so the last chunk may
    be short) gives the whole-batch result: the same products sample by sample, bit for bit;
    only a shared kernel's dW is summed chunk by chunk (another summation order)."""
    x, w, b, geometry = _case(config, seed, shared)
    y = reference.conv2d_forward(x, w, b, *geometry)   # the default budget: one chunk here
    dy = np.random.default_rng(seed + 1).standard_normal(y.shape)
    dx, dw, db = reference.conv2d_backward(dy, x, w, *geometry, b is not None)
    kh, kw = w.shape[3:]
    out_h, out_w = y.shape[2:]
    per_sample = x.shape[1] * kh * kw * out_h * out_w * x.itemsize
    with _cols_budget(samples_per_chunk * per_sample):
        assert len(reference._sample_chunks(x, kh, kw, out_h, out_w)) == \
            -(-x.shape[0] // samples_per_chunk)
        y_chunked = reference.conv2d_forward(x, w, b, *geometry)
        dx_chunked, dw_chunked, db_chunked = reference.conv2d_backward(dy, x, w, *geometry,
                                                                       b is not None)
    np.testing.assert_array_equal(y_chunked, y)
    np.testing.assert_array_equal(dx_chunked, dx)
    if shared:
        np.testing.assert_allclose(dw_chunked, dw, rtol=1e-13, atol=1e-13)
    else:
        np.testing.assert_array_equal(dw_chunked, dw)
    if b is None:
        assert db_chunked is None
    else:
        np.testing.assert_array_equal(db_chunked, db)


def test_a_tiny_budget_still_takes_one_sample_per_chunk():
    x = np.zeros((3, 2, 5, 5))
    with _cols_budget(1):
        assert reference._sample_chunks(x, 3, 3, 5, 5) == [slice(0, 1), slice(1, 2), slice(2, 3)]
    assert reference._sample_chunks(x, 3, 3, 5, 5) == [slice(0, 3)]   # the default: one chunk


def test_peak_memory_is_bounded_by_one_chunk_of_cols():
    """8 samples, 16 -> 16 channels, 3x3 on 64 x 64, float64, per-sample kernels: cols are
    4.5 MiB a sample, 36 MiB for the batch. With a 4 MiB budget (one sample per chunk) the
    forward holds y and one chunk's cols (+ its padded input), the backward dx, dW, one chunk's
    cols and dcols (+ its padded gradient); NumPy allocations, tracemalloc."""
    import tracemalloc
    rng = np.random.default_rng(0)
    n, c, size = 8, 16, 64
    x = rng.standard_normal((n, c, size, size))
    w = rng.standard_normal((n, c, c, 3, 3))
    b = rng.standard_normal((n, c))
    geometry = ((1, 1), (1, 1), (1, 1), 1)
    chunk_cols = c * 9 * size * size * x.itemsize
    padded = c * (size + 2) ** 2 * x.itemsize

    def peak(fn):
        tracemalloc.start()
        try:
            fn()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    with _cols_budget(4 * 2**20):
        y = reference.conv2d_forward(x, w, b, *geometry)
        forward = peak(lambda: reference.conv2d_forward(x, w, b, *geometry))
        backward = peak(lambda: reference.conv2d_backward(y, x, w, *geometry, True))
    # slack: a tenth of a chunk and a second padded chunk for the small temporaries
    assert forward <= y.nbytes + 1.1 * chunk_cols + 2 * padded
    assert backward <= x.nbytes + w.nbytes + 2.1 * chunk_cols + 2 * padded
    assert backward < n * chunk_cols / 2   # the whole batch's cols alone would be 36 MiB
