"""Max and average pooling: gradients, a loop-by-loop reference, ties, padding, errors."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from dynconv_np import gradcheck
from dynconv_np.functional.pool2d import (avg_pool2d_backward, avg_pool2d_forward,
                                          max_pool2d_backward, max_pool2d_forward)

from .checks import assert_upstream_checked
from ..strategies import pair

POOLS = {"max": (max_pool2d_forward, max_pool2d_backward),
         "avg": (avg_pool2d_forward, avg_pool2d_backward)}


@st.composite
def pool_configs(draw, max_extra_side=4):
    """A valid pooling: kernel, stride (None = kernel), padding <= kernel // 2, and an input at
    least as large as the kernel once padded."""
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    padding = tuple(draw(st.integers(0, k // 2)) for k in kernel)
    stride = draw(st.one_of(st.none(), st.integers(1, 3),
                            st.tuples(st.integers(1, 3), st.integers(1, 3))))
    size = tuple(draw(st.integers(max(1, k - 2 * p), max(1, k - 2 * p) + max_extra_side))
                 for k, p in zip(kernel, padding))
    return dict(n=draw(st.integers(1, 2)), c=draw(st.integers(1, 3)), size=size, kernel=kernel,
                stride=stride, padding=padding)


def _geometry(config):
    return dict(kernel_size=config["kernel"], stride=config["stride"], padding=config["padding"])


def _input(config, seed):
    return np.random.default_rng(seed).standard_normal((config["n"], config["c"]) + config["size"])


def loop_pool(x, kernel, stride, padding, reduce, pad_value):
    """Pooling written out window by window (the definition, no vectorisation)."""
    (kh, kw), (ph, pw) = kernel, padding
    sh, sw = pair(kernel if stride is None else stride)
    x_pad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=pad_value)
    out_h, out_w = (x_pad.shape[2] - kh) // sh + 1, (x_pad.shape[3] - kw) // sw + 1
    y = np.empty(x.shape[:2] + (out_h, out_w))
    for h in range(out_h):
        for w in range(out_w):
            y[:, :, h, w] = reduce(x_pad[:, :, h * sh:h * sh + kh, w * sw:w * sw + kw], axis=(2, 3))
    return y


@pytest.mark.parametrize("kind", sorted(POOLS))
@given(config=pool_configs(), seed=st.integers(0, 2**16))
def test_backward_matches_finite_differences(kind, config, seed):
    forward, backward = POOLS[kind]
    # Average pooling is linear; max pooling is linear wherever no two entries of a window are
    # within eps = 1e-6 of each other (probability ~1e-6 for normal draws), so central
    # differences are exact up to round-off.
    gradcheck(lambda x: forward(x, **_geometry(config)), {"x": _input(config, seed)},
              backward=lambda dy, cache: {"x": backward(dy, cache)})


@given(config=pool_configs(), seed=st.integers(0, 2**16))
def test_forward_matches_window_by_window_loops(config, seed):
    x = _input(config, seed)
    args = (config["kernel"], config["stride"], config["padding"])
    np.testing.assert_array_equal(max_pool2d_forward(x, *args)[0],
                                  loop_pool(x, *args, np.max, -np.inf))
    np.testing.assert_allclose(avg_pool2d_forward(x, *args)[0], loop_pool(x, *args, np.mean, 0.0),
                               rtol=1e-13, atol=1e-15)


def test_max_gradient_goes_to_the_first_maximum_on_ties():
    x = np.array([[[[1.0, 1.0, 0.0],
                    [1.0, 1.0, 0.0],
                    [0.0, 0.0, 0.0]]]])
    y, cache = max_pool2d_forward(x, kernel_size=2, stride=1)
    dx = max_pool2d_backward(np.array([[[[1.0, 2.0], [3.0, 4.0]]]]), cache)
    # windows at (0,0), (0,1), (1,0) and (1,1) have their first 1.0 at x[0,0], x[0,1], x[1,0],
    # x[1,1] respectively (row-major tap order).
    np.testing.assert_array_equal(y, np.ones((1, 1, 2, 2)))
    np.testing.assert_array_equal(dx[0, 0], [[1.0, 2.0, 0.0], [3.0, 4.0, 0.0], [0.0, 0.0, 0.0]])


def test_overlapping_max_windows_add_their_gradients():
    x = np.zeros((1, 1, 3, 3))
    x[0, 0, 1, 1] = 5.0  # the maximum of all four 2x2 windows
    _, cache = max_pool2d_forward(x, kernel_size=2, stride=1)
    dx = max_pool2d_backward(np.array([[[[1.0, 2.0], [3.0, 4.0]]]]), cache)
    assert dx[0, 0, 1, 1] == 10.0 and np.count_nonzero(dx) == 1


def test_padding_never_wins_a_max_and_counts_as_zero_in_an_average():
    x = -np.ones((1, 1, 2, 2))
    np.testing.assert_array_equal(max_pool2d_forward(x, 3, 1, 1)[0], -np.ones((1, 1, 2, 2)))
    # each 3x3 window over the 1-padded 2x2 input holds all four -1's and five zeros.
    np.testing.assert_allclose(avg_pool2d_forward(x, 3, 1, 1)[0], np.full((1, 1, 2, 2), -4 / 9))


@pytest.mark.parametrize("kind", sorted(POOLS))
def test_float32_stays_float32_and_input_is_not_modified(kind):
    forward, backward = POOLS[kind]
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 5)).astype(np.float32)
    before = x.copy()
    y, cache = forward(x, 3, 2, 1)
    dx = backward(np.ones_like(y), cache)
    assert y.dtype == np.float32 and dx.dtype == np.float32 and dx.shape == x.shape
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(kernel_size=3, padding=2), ValueError, r"padding must be at most half of kernel_size"),
    (dict(kernel_size=0), ValueError, r"kernel_size must be positive; received 0"),
    (dict(kernel_size=2.5), TypeError, r"kernel_size must be an int or a pair"),
    (dict(kernel_size=2, stride=0), ValueError, r"stride must be positive"),
    (dict(kernel_size=2, padding=-1), ValueError, r"padding must be >= 0"),
    (dict(kernel_size=(5, 1)), ValueError, r"kernel height 5 is larger than the padded input"),
])
@pytest.mark.parametrize("kind", sorted(POOLS))
def test_bad_arguments_are_named(kind, kwargs, error, message):
    with pytest.raises(error, match=message):
        POOLS[kind][0](np.ones((1, 1, 4, 4)), **kwargs)


@pytest.mark.parametrize("x, error, message", [
    (np.ones((4, 4)), ValueError, r"x must be 4-D; received shape \(4, 4\)"),
    (np.ones((1, 1, 4, 4), dtype=int), TypeError, r"x must have dtype float32 or float64"),
    (np.full((1, 1, 4, 4), np.nan), ValueError, r"x contains 16 non-finite"),
])
def test_bad_inputs_are_named(x, error, message):
    with pytest.raises(error, match=message):
        max_pool2d_forward(x, 2)


@pytest.mark.parametrize("kind", sorted(POOLS))
def test_backward_checks_dy_and_the_cache(kind):
    forward, backward = POOLS[kind]
    y, cache = forward(np.random.default_rng(0).standard_normal((2, 3, 5, 5)), 3, 2, 1)
    assert_upstream_checked(backward, cache, y)
    other = POOLS["avg" if kind == "max" else "max"][0]
    _, other_cache = other(np.zeros((2, 3, 5, 5)), 3, 2, 1)  # same output shape, other stage
    with pytest.raises(TypeError, match=rf"returned by {kind}_pool2d_forward"):
        backward(np.zeros(y.shape), other_cache)
