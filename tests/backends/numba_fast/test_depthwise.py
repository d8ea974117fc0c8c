"""The depthwise path (``numba_fast/depthwise.py``, C_in/groups = 1) against the reference on
large images (long runs, odd widths) and batches larger than the thread count (shared kernels:
per-sample dW summed), channel multipliers 1 and 2, and on small maps (the direct loops)."""
from hypothesis import assume, given, strategies as st

from dynconv_np.backends import numba_fast
from dynconv_np.backends.numba_fast import depthwise

from .checks import DTYPES, check_conv, large_image_configs


@given(c=large_image_configs(c_group=1), per_sample=st.booleans(), dtype=DTYPES,
       seed=st.integers(0, 2**32 - 1))
def test_conv2d_matches_reference_on_large_images(c, per_sample, dtype, seed):
    check_conv(numba_fast, c, per_sample, dtype, seed)


@st.composite
def small_map_configs(draw):
    """Depthwise convolutions with at most DIRECT_UP_TO output positions (the direct loops):
    every stride, padding and dilation, taps that fall outside the image, multipliers 1, 2."""
    channels = draw(st.integers(1, 4))
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    size = tuple(draw(st.integers(max(1, (k - 1) * d + 1 - 2 * p), 7))
                 for k, d, p in zip(kernel, dilation, padding))
    out = [(s + 2 * p - (k - 1) * d - 1) // st_ + 1
           for s, p, k, d, st_ in zip(size, padding, kernel, dilation, stride)]
    assume(out[0] * out[1] <= depthwise.DIRECT_UP_TO)
    return dict(n=draw(st.integers(1, 5)), in_channels=channels,
                out_channels=channels * draw(st.integers(1, 2)), kernel=kernel, stride=stride,
                padding=padding, dilation=dilation, groups=channels, size=size,
                bias=draw(st.booleans()))


@given(c=small_map_configs(), per_sample=st.booleans(), dtype=DTYPES,
       seed=st.integers(0, 2**32 - 1))
def test_conv2d_matches_reference_on_small_maps(c, per_sample, dtype, seed):
    check_conv(numba_fast, c, per_sample, dtype, seed)


def test_direct_loops_take_maps_up_to_their_limit_and_no_larger():
    assert depthwise.is_direct((1, 1, 4, 4)) and depthwise.is_direct((1, 1, 16, 1))
    assert not depthwise.is_direct((1, 1, 17, 1)) and not depthwise.is_direct((1, 1, 5, 4))
