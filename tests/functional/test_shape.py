"""Flatten: shape, round trip, errors."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from dynconv_np.functional.shape import flatten_backward, flatten_forward

from .checks import assert_upstream_checked


@given(shape=st.lists(st.integers(1, 4), min_size=2, max_size=5).map(tuple))
def test_flatten_keeps_the_batch_axis_and_backward_restores_the_shape(shape):
    x = np.random.default_rng(0).standard_normal(shape)
    y, cache = flatten_forward(x)
    assert y.shape == (shape[0], int(np.prod(shape[1:])))
    np.testing.assert_array_equal(y[-1], x[-1].ravel())
    np.testing.assert_array_equal(flatten_backward(y, cache), x)


def test_a_1d_input_is_rejected():
    with pytest.raises(ValueError, match=r"x must be at least 2-D.*received shape \(3,\)"):
        flatten_forward(np.ones(3))


def test_backward_checks_dy_and_the_cache():
    y, cache = flatten_forward(np.ones((2, 3, 4)))
    assert_upstream_checked(flatten_backward, cache, y)
