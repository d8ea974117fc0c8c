"""Element-wise activations: gradients away from the kinks, values at known points, dtypes."""
import warnings

import numpy as np
import pytest
from hypothesis import given, strategies as st
from scipy.special import expit

from dynconv_np import gradcheck
from dynconv_np.functional.activations import (hardsigmoid_backward, hardsigmoid_forward,
                                               hardswish_backward, hardswish_forward,
                                               relu6_backward, relu6_forward, relu_backward,
                                               relu_forward, sigmoid_backward, sigmoid_forward)

from .checks import assert_upstream_checked

PAIRS = {"relu": (relu_forward, relu_backward, (0.0,)),
         "relu6": (relu6_forward, relu6_backward, (0.0, 6.0)),
         "hardsigmoid": (hardsigmoid_forward, hardsigmoid_backward, (-3.0, 3.0)),
         "hardswish": (hardswish_forward, hardswish_backward, (-3.0, 3.0)),
         "sigmoid": (sigmoid_forward, sigmoid_backward, ())}

shapes = st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple)


def away_from_kinks(x, kinks, gap=1e-3):
    """Move entries within ``gap`` of a kink to kink +- gap, so central differences (step 1e-6)
    never straddle a point where the function is not differentiable."""
    x = x.copy()
    for kink in kinks:
        near = np.abs(x - kink) < gap
        x[near] = kink + np.where(x[near] >= kink, gap, -gap)
    return x


@pytest.mark.parametrize("name", sorted(PAIRS))
@given(shape=shapes, scale=st.sampled_from([1.0, 4.0]), seed=st.integers(0, 2**16))
def test_backward_matches_finite_differences(name, shape, scale, seed):
    forward, backward, kinks = PAIRS[name]
    # scale 4 puts a good share of the points beyond +-3 and 6, on every linear piece.
    x = away_from_kinks(scale * np.random.default_rng(seed).standard_normal(shape), kinks)
    # Each function is piecewise linear, quadratic (hardswish) or smooth (sigmoid, third
    # derivative <= 1/8): central differences with eps = 1e-6 are exact up to round-off on
    # the linear and quadratic pieces, and within 1e-13 for the sigmoid.
    gradcheck(lambda x: forward(x), {"x": x}, backward=lambda dy, cache: {"x": backward(dy, cache)})


KNOWN = {"relu": ([-2.0, 0.0, 1.5, 7.0], [0.0, 0.0, 1.5, 7.0]),
         "relu6": ([-2.0, 0.0, 1.5, 7.0], [0.0, 0.0, 1.5, 6.0]),
         "hardsigmoid": ([-4.0, -3.0, 0.0, 1.5, 3.0, 5.0], [0.0, 0.0, 0.5, 0.75, 1.0, 1.0]),
         "hardswish": ([-4.0, -3.0, -1.5, 0.0, 1.5, 3.0, 5.0],
                       [0.0, 0.0, -0.375, 0.0, 1.125, 3.0, 5.0])}


@pytest.mark.parametrize("name", sorted(KNOWN))
def test_values_at_known_points(name):
    x, expected = (np.array(v) for v in KNOWN[name])
    np.testing.assert_allclose(PAIRS[name][0](x)[0], expected, rtol=0, atol=1e-15)


@pytest.mark.parametrize("name, x, expected", [
    ("relu6", [-1.0, 3.0, 7.0], [0.0, 1.0, 0.0]),
    ("hardsigmoid", [-4.0, 0.0, 4.0], [0.0, 1 / 6, 0.0]),
    ("hardswish", [-4.0, -1.5, 0.0, 1.5, 4.0], [0.0, 0.0, 0.5, 1.0, 1.0])])
def test_derivatives_at_known_points(name, x, expected):
    forward, backward, _ = PAIRS[name]
    _, cache = forward(np.array(x))
    np.testing.assert_allclose(backward(np.ones(len(x)), cache), expected, atol=1e-15)


def test_sigmoid_matches_scipy_and_never_overflows():
    x = np.array([-1e4, -745.0, -30.0, -1.0, 0.0, 1.0, 30.0, 1e4])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an overflow in exp would raise here
        y, cache = sigmoid_forward(x)
        dx = sigmoid_backward(np.ones_like(x), cache)
    np.testing.assert_allclose(y, expit(x), rtol=1e-15, atol=1e-300)  # subnormals may differ
    assert np.all(np.isfinite(dx)) and np.all(dx >= 0)


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_float32_stays_float32_and_input_is_not_modified(name):
    forward, backward, _ = PAIRS[name]
    x = np.linspace(-8, 8, 33, dtype=np.float32)
    before = x.copy()
    y, cache = forward(x)
    dx = backward(np.ones_like(y), cache)
    assert y.dtype == np.float32 and dx.dtype == np.float32
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("name", sorted(PAIRS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_backward_checks_dy_and_the_cache(name, dtype):
    forward, backward, _ = PAIRS[name]
    y, cache = forward(np.linspace(-4, 4, 12, dtype=dtype).reshape(3, 4))
    assert_upstream_checked(backward, cache, y)
    if name != "relu":  # a cache of another stage, even of the same layout, is refused
        _, relu_cache = PAIRS["relu"][0](np.zeros((3, 4), dtype))
        with pytest.raises(TypeError, match=rf"returned by {name}_forward; received 'relu'"):
            backward(np.zeros((3, 4), dtype), relu_cache)


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_modifying_the_returned_output_does_not_change_the_backward(name):
    """y is the caller's: no cache aliases it (sigmoid keeps its own copy of y)."""
    forward, backward = PAIRS[name][:2]
    rng = np.random.default_rng(1)
    x, dy = rng.standard_normal((4, 5)), rng.standard_normal((4, 5))
    y, cache = forward(x)
    expected = backward(dy, forward(x)[1])
    y[...] = 7.0
    np.testing.assert_array_equal(backward(dy, cache), expected)
