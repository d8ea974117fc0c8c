"""Inverted dropout: mask values, expectation, the backward pass, the probability check."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from dynconv_np import gradcheck
from dynconv_np.functional.dropout import check_probability, dropout_backward, dropout_forward

from .checks import assert_upstream_checked


@given(p=st.sampled_from([0.0, 0.1, 0.5, 0.9]), seed=st.integers(0, 2**16))
def test_backward_matches_finite_differences_for_a_fixed_mask(p, seed):
    x = np.random.default_rng(seed).standard_normal((3, 4))
    # Re-seeding the generator on every call fixes the mask, so y is linear in x.
    gradcheck(lambda x: dropout_forward(x, p, np.random.default_rng(seed + 1)), {"x": x},
              backward=lambda dy, cache: {"x": dropout_backward(dy, cache)})


@given(p=st.floats(0.05, 0.95), seed=st.integers(0, 2**16))
def test_kept_entries_are_scaled_and_the_rest_are_zero(p, seed):
    x = np.random.default_rng(seed).uniform(1, 2, (50, 20))  # no zeros of its own
    y, cache = dropout_forward(x, p, np.random.default_rng(seed))
    kept = y != 0
    np.testing.assert_allclose(y[kept], x[kept] / (1 - p), rtol=1e-15)
    dy = np.random.default_rng(seed + 1).standard_normal(x.shape)
    np.testing.assert_allclose(dropout_backward(dy, cache), np.where(kept, dy / (1 - p), 0),
                               rtol=1e-15)


def test_expectation_is_the_input():
    """E[y] = x: the mean of 4000 independent draws per element, over 10 elements.

    Each draw is x/(1-p) with probability 1-p, else 0: variance x^2 p/(1-p) = x^2 for p = 0.5.
    The mean of 4000 draws has standard deviation |x|/sqrt(4000) ~ 0.016 |x|; 6 sigma = 0.095 |x|
    makes a false failure practically impossible while a missing 1/(1-p) (an error of 50%) fails.
    """
    rng = np.random.default_rng(0)
    x = np.linspace(0.5, 3.0, 10)
    draws = np.stack([dropout_forward(x, 0.5, rng)[0] for _ in range(4000)])
    np.testing.assert_allclose(draws.mean(axis=0), x, rtol=6 / np.sqrt(4000))
    kept_fraction = np.mean(draws != 0)  # binomial, 40000 trials: sd 0.0025
    assert abs(kept_fraction - 0.5) < 0.015


def test_p_zero_keeps_everything_and_p_one_drops_everything():
    x = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    np.testing.assert_array_equal(dropout_forward(x, 0.0, np.random.default_rng(0))[0], x)
    y, cache = dropout_forward(x, 1.0, np.random.default_rng(0))
    np.testing.assert_array_equal(y, 0)
    np.testing.assert_array_equal(dropout_backward(np.ones_like(x), cache), 0)
    assert y.dtype == np.float32


@pytest.mark.parametrize("p, error", [(-0.1, ValueError), (1.5, ValueError),
                                      (float("nan"), ValueError), ("0.5", TypeError),
                                      (True, TypeError)])
def test_bad_probability_is_named(p, error):
    with pytest.raises(error, match=r"p \(drop probability\)"):
        check_probability(p)


@pytest.mark.parametrize("rng", [0, None, np.random.RandomState(0), "seed"])
def test_rng_must_be_a_numpy_generator(rng):
    with pytest.raises(TypeError, match=rf"rng must be a numpy.random.Generator; received "
                                        rf"{type(rng).__name__}"):
        dropout_forward(np.ones(3), 0.5, rng)


def test_backward_checks_dy_and_the_cache():
    y, cache = dropout_forward(np.ones((3, 4)), 0.5, np.random.default_rng(0))
    assert_upstream_checked(dropout_backward, cache, y)
