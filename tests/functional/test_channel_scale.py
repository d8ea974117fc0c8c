"""Per-channel scaling (the SE block's excite step): gradients and errors."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from dynconv_np import gradcheck
from dynconv_np.functional.channel_scale import channel_scale_backward, channel_scale_forward

from .checks import assert_upstream_checked


@given(n=st.integers(1, 3), c=st.integers(1, 4), h=st.integers(1, 4), w=st.integers(1, 4),
       seed=st.integers(0, 2**16))
def test_backward_matches_finite_differences(n, c, h, w, seed):
    rng = np.random.default_rng(seed)
    # y is bilinear in (x, s): central differences are exact up to round-off.
    gradcheck(channel_scale_forward, {"x": rng.standard_normal((n, c, h, w)),
                                      "s": rng.standard_normal((n, c))},
              backward=lambda dy, cache: dict(zip(("x", "s"), channel_scale_backward(dy, cache))))


def test_scale_shape_is_checked():
    with pytest.raises(ValueError, match=r"s must have shape \(2, 3\); received \(2, 4\)"):
        channel_scale_forward(np.ones((2, 3, 2, 2)), np.ones((2, 4)))


def test_mixed_dtypes_and_non_finite_scales_are_named():
    with pytest.raises(TypeError, match=r"mixed dtypes.*x=float64, s=float32"):
        channel_scale_forward(np.ones((2, 3, 2, 2)), np.ones((2, 3), np.float32))
    s = np.ones((2, 3))
    s[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"s contains 1 non-finite .* index \(1, 2\)"):
        channel_scale_forward(np.ones((2, 3, 2, 2)), s)


def test_backward_checks_dy_and_the_cache():
    y, cache = channel_scale_forward(np.ones((2, 3, 2, 2)), np.ones((2, 3)))
    assert_upstream_checked(channel_scale_backward, cache, y)
