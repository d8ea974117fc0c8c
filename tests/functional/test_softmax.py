"""Softmax with temperature: gradient, stability, limits and argument errors."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from dynconv_np import gradcheck
from dynconv_np.functional import softmax_backward, softmax_forward

from .checks import assert_upstream_checked
from ..strategies import temperatures


@given(n=st.integers(1, 4), k=st.integers(1, 6), tau=temperatures, seed=st.integers(0, 2**16),
       scale=st.floats(0.1, 10.0))
def test_backward_matches_finite_differences(n, k, tau, seed, scale):
    z = np.random.default_rng(seed).standard_normal((n, k)) * scale
    # Tolerances: the loss is O(sqrt(N K)); central differences with eps=1e-6 have round-off
    # ~1e-16 * |L| / 1e-6 ~ 1e-9 and truncation O(eps^2) ~ 1e-12, well inside atol 1e-7.
    gradcheck(lambda z: softmax_forward(z, tau), {"z": z}, backward=softmax_backward)


@given(tau=st.floats(1e-3, 1e4), k=st.integers(2, 8), seed=st.integers(0, 2**16))
def test_extreme_logits_and_temperatures_stay_finite(tau, k, seed):
    z = np.random.default_rng(seed).uniform(-1e4, 1e4, size=(3, k))
    pi, cache = softmax_forward(z, tau)
    assert np.all(np.isfinite(pi)) and np.all(pi >= 0)
    np.testing.assert_allclose(pi.sum(axis=1), 1.0, rtol=1e-12)
    dz = softmax_backward(np.random.default_rng(seed + 1).standard_normal(pi.shape), cache)
    assert np.all(np.isfinite(dz))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rows_sum_to_one_and_dtype_is_kept(dtype):
    z = np.random.default_rng(0).standard_normal((5, 4)).astype(dtype)
    pi, _ = softmax_forward(z, 3.0)
    assert pi.dtype == dtype
    np.testing.assert_allclose(pi.sum(axis=1), 1.0, rtol=1e-6)


def test_large_temperature_gives_uniform_and_small_gives_one_hot():
    z = np.random.default_rng(1).standard_normal((6, 4))
    uniform, _ = softmax_forward(z, 1e6)
    np.testing.assert_allclose(uniform, 0.25, atol=1e-6)
    sharp, _ = softmax_forward(z, 1e-4)
    np.testing.assert_array_equal(sharp, np.eye(4)[np.argmax(z, axis=1)])


def test_temperature_scales_the_logits():
    z = np.array([[1.0, 2.0, 4.0]])
    np.testing.assert_allclose(softmax_forward(z, 2.0)[0], softmax_forward(z / 2.0, 1.0)[0])


@pytest.mark.parametrize("tau, error", [(0.0, ValueError), (-1.0, ValueError),
                                        (np.nan, ValueError), (np.inf, ValueError),
                                        ("1", TypeError), (True, TypeError)])
def test_bad_temperature_is_named(tau, error):
    with pytest.raises(error, match="temperature"):
        softmax_forward(np.zeros((1, 3)), tau)


def test_integer_logits_are_rejected():
    with pytest.raises(TypeError, match="z must have dtype float32 or float64; received int64"):
        softmax_forward(np.zeros((1, 3), dtype=np.int64), 1.0)


def test_nan_logit_is_located():
    z = np.zeros((2, 3))
    z[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"z contains 1 non-finite.*index \(1, 2\)"):
        softmax_forward(z, 1.0)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # (z - max) / tau -> -inf
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_smallest_normal_temperature_is_exact_and_below_it_is_refused(dtype):
    """Shifting before dividing, exp((z - max z) / tau): at tau = the dtype's smallest normal
    every non-maximal exponent is -inf (weight 0) and the maximal one 0, never inf - inf; a
    smaller tau is refused with the usable range (1 / tau would not be finite)."""
    z = (np.random.default_rng(2).standard_normal((5, 4)) * 10).astype(dtype)
    tiny = float(np.finfo(dtype).tiny)
    pi, cache = softmax_forward(z, tiny)
    np.testing.assert_array_equal(pi, np.eye(4, dtype=dtype)[np.argmax(z, axis=1)])
    assert pi.dtype == dtype
    assert np.isfinite(softmax_backward(np.ones_like(pi), cache)).all()
    with pytest.raises(ValueError, match=rf"temperature \(tau\) = {tiny / 2!r} is below the "
                                         rf"smallest normal {np.dtype(dtype)} .*the usable range"):
        softmax_forward(z, tiny / 2)


def test_backward_checks_dpi_and_the_cache():
    pi, cache = softmax_forward(np.random.default_rng(0).standard_normal((3, 4)), 2.0)
    assert_upstream_checked(softmax_backward, cache, pi, name="dpi")


def test_modifying_the_returned_pi_does_not_change_the_backward():
    """pi is the caller's: the cache keeps its own copy."""
    rng = np.random.default_rng(0)
    z, dpi = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    pi, cache = softmax_forward(z, 0.7)
    expected = softmax_backward(dpi, softmax_forward(z, 0.7)[1])
    pi[...] = 0.0
    np.testing.assert_array_equal(softmax_backward(dpi, cache), expected)
