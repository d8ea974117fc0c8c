"""The depthwise path (``numba_fast/depthwise.py``, C_in/groups = 1) against the reference on
large images (long runs, odd widths) and batches larger than the thread count (shared kernels:
per-sample dW summed), channel multipliers 1 and 2, and on small maps (the direct loops)."""
from hypothesis import given, strategies as st

from dynconv_np.backends import numba_fast
from dynconv_np.backends.numba_fast import depthwise

from .checks import DTYPES, check_conv, large_image_configs, small_map_geometry


@given(c=large_image_configs(c_group=1), per_sample=st.booleans(), dtype=DTYPES,
       seed=st.integers(0, 2**32 - 1))
def test_conv2d_matches_reference_on_large_images(c, per_sample, dtype, seed):
    check_conv(numba_fast, c, per_sample, dtype, seed)


@st.composite
def small_map_configs(draw):
    """Depthwise convolutions with at most DIRECT_UP_TO output positions (the direct loops),
    channel multipliers 1 and 2."""
    kernel, stride, padding, dilation, size = draw(small_map_geometry(depthwise.DIRECT_UP_TO))
    channels = draw(st.integers(1, 4))
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
