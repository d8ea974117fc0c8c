"""Batch normalisation: both backward passes, the statistics, the running-average update,
argument and upstream errors."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from dynconv_np import gradcheck
from dynconv_np.functional.batchnorm import (batchnorm2d_eval_backward, batchnorm2d_eval_forward,
                                             batchnorm2d_train_backward,
                                             batchnorm2d_train_forward, running_stats_update)

from .checks import assert_upstream_checked


@st.composite
def bn_shapes(draw):
    """(N, C, H, W) with at least two values per channel (training mode needs a variance)."""
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3)),
             draw(st.integers(1, 3)))
    return shape if shape[0] * shape[2] * shape[3] > 1 else (2,) + shape[1:]


def _affine(rng, c):
    return rng.standard_normal(c), rng.standard_normal(c)


def _triple(backward):
    return lambda dy, cache: dict(zip(("x", "weight", "bias"), backward(dy, cache)))


@given(shape=bn_shapes(), eps=st.sampled_from([1e-5, 1e-3, 0.1]), seed=st.integers(0, 2**16))
def test_train_backward_matches_finite_differences(shape, eps, seed):
    rng = np.random.default_rng(seed)
    weight, bias = _affine(rng, shape[1])
    x = rng.standard_normal(shape)
    # Smooth in x; with standard-normal x the batch variance is rarely below ~1e-4, where the
    # third derivative grows like var^-3/2: truncation eps^2 var^-3/2 ~ 1e-6 * 1e-6 stays far
    # below the default atol 1e-7 + rtol 1e-5.
    gradcheck(lambda x, weight, bias: batchnorm2d_train_forward(x, weight, bias, eps),
              {"x": x, "weight": weight, "bias": bias}, backward=_triple(batchnorm2d_train_backward))


@given(shape=bn_shapes(), seed=st.integers(0, 2**16))
def test_eval_backward_matches_finite_differences(shape, seed):
    rng = np.random.default_rng(seed)
    weight, bias = _affine(rng, shape[1])
    mean, var = rng.standard_normal(shape[1]), rng.uniform(0.1, 3.0, shape[1])
    # y is linear in x, weight and bias: central differences are exact up to round-off.
    gradcheck(lambda x, weight, bias: batchnorm2d_eval_forward(x, weight, bias, mean, var),
              {"x": rng.standard_normal(shape), "weight": weight, "bias": bias},
              backward=_triple(batchnorm2d_eval_backward))


@given(shape=bn_shapes(), seed=st.integers(0, 2**16))
def test_train_output_is_normalised_per_channel(shape, seed):
    rng = np.random.default_rng(seed)
    x = 3 + 2 * rng.standard_normal(shape)
    c = shape[1]
    eps = 1e-5
    y, cache = batchnorm2d_train_forward(x, np.ones(c), np.zeros(c), eps)
    var = x.var(axis=(0, 2, 3))
    np.testing.assert_allclose(cache["mean"], x.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(cache["var"], var, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=(0, 2, 3)), var / (var + eps), rtol=1e-10, atol=1e-12)


def test_eval_forward_uses_the_given_statistics():
    x = np.arange(8.0).reshape(1, 2, 2, 2)
    y, _ = batchnorm2d_eval_forward(x, np.array([2.0, 1.0]), np.array([0.5, 0.0]),
                                    np.array([1.0, 5.0]), np.array([4.0, 0.25]), eps=0.0)
    np.testing.assert_allclose(y[0, 0], 2.0 * (x[0, 0] - 1.0) / 2.0 + 0.5)
    np.testing.assert_allclose(y[0, 1], (x[0, 1] - 5.0) / 0.5)


def test_running_update_matches_hand_computation():
    x = np.random.default_rng(3).standard_normal((4, 2, 3, 3))
    _, cache = batchnorm2d_train_forward(x, np.ones(2), np.zeros(2))
    mean, var = running_stats_update(np.array([1.0, -1.0]), np.array([2.0, 0.5]),
                                     cache["mean"], cache["var"], cache["count"], 0.25)
    values = x.transpose(1, 0, 2, 3).reshape(2, -1)
    np.testing.assert_allclose(mean, 0.75 * np.array([1.0, -1.0]) + 0.25 * values.mean(axis=1))
    np.testing.assert_allclose(var, 0.75 * np.array([2.0, 0.5]) + 0.25 * values.var(axis=1, ddof=1))


def test_one_value_per_channel_is_rejected_in_training():
    with pytest.raises(ValueError, match=r"more than one value per channel.*\(1, 3, 1, 1\)"):
        batchnorm2d_train_forward(np.ones((1, 3, 1, 1)), np.ones(3), np.zeros(3))


def test_parameter_shapes_are_checked():
    with pytest.raises(ValueError, match=r"weight must have shape \(3,\); received \(2,\)"):
        batchnorm2d_train_forward(np.ones((2, 3, 2, 2)), np.ones(2), np.zeros(3))
    with pytest.raises(ValueError, match="running_var"):
        batchnorm2d_eval_forward(np.ones((2, 3, 2, 2)), np.ones(3), np.zeros(3), np.zeros(3),
                                 np.ones(4))


@pytest.mark.parametrize("eps, error, message", [
    (-1e-5, ValueError, r"eps must be finite and in \[0, inf\); received -1e-05"),
    (np.nan, ValueError, r"eps must be finite and in \[0, inf\); received nan"),
    (np.inf, ValueError, r"eps must be finite and in \[0, inf\); received inf"),
    ("0.1", TypeError, r"eps must be a real number; received str"),
    (True, TypeError, r"eps must be a real number; received bool"),
    (None, TypeError, r"eps must be a real number; received NoneType"),
])
def test_eps_must_be_a_finite_real_at_least_zero(eps, error, message):
    x = np.ones((2, 3, 2, 2))
    with pytest.raises(error, match=message):
        batchnorm2d_train_forward(x, np.ones(3), np.zeros(3), eps)
    with pytest.raises(error, match=message):
        batchnorm2d_eval_forward(x, np.ones(3), np.zeros(3), np.zeros(3), np.ones(3), eps)


def test_eps_zero_is_allowed():
    x = np.random.default_rng(0).standard_normal((2, 3, 2, 2))
    y, _ = batchnorm2d_eval_forward(x, np.ones(3), np.zeros(3), np.zeros(3), np.ones(3), 0.0)
    np.testing.assert_array_equal(y, x)


def test_a_negative_running_variance_is_named():
    with pytest.raises(ValueError, match=r"running_var must be >= 0 \(a variance\); received "
                                         r"-0.5 at index 2"):
        batchnorm2d_eval_forward(np.ones((2, 3, 2, 2)), np.ones(3), np.zeros(3), np.zeros(3),
                                 np.array([1.0, 0.0, -0.5]))
    with pytest.raises(ValueError, match=r"running_mean contains 1 non-finite"):
        batchnorm2d_eval_forward(np.ones((2, 3, 2, 2)), np.ones(3), np.zeros(3),
                                 np.array([0.0, np.inf, 0.0]), np.ones(3))


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_backward_checks_dy_and_the_cache(training):
    x = np.random.default_rng(0).standard_normal((2, 3, 2, 2))
    if training:
        y, cache = batchnorm2d_train_forward(x, np.ones(3), np.zeros(3))
        assert_upstream_checked(batchnorm2d_train_backward, cache, y)
    else:
        y, cache = batchnorm2d_eval_forward(x, np.ones(3), np.zeros(3), np.zeros(3), np.ones(3))
        assert_upstream_checked(batchnorm2d_eval_backward, cache, y)
    # the two modes' caches are not interchangeable
    _, train_cache = batchnorm2d_train_forward(x, np.ones(3), np.zeros(3))
    with pytest.raises(TypeError, match=r"returned by batchnorm2d_eval_forward; received "
                                        r"'batchnorm2d_train'"):
        batchnorm2d_eval_backward(y, train_cache)
