"""The batched path (``numba_fast/batched.py``: a kernel shared by the batch on maps of at most
BATCHED_UP_TO output positions, C_in/groups > 1) against the reference: every stride, padding
and dilation, taps outside the image, groups, 1 x 1 kernels."""
import pytest
from hypothesis import given, strategies as st

from dynconv_np.backends import numba_fast
from dynconv_np.backends.numba_fast import batched

from .checks import DTYPES, check_conv, small_map_geometry


@st.composite
def small_map_configs(draw):
    kernel, stride, padding, dilation, size = draw(small_map_geometry(batched.BATCHED_UP_TO,
                                                                      max_stride=2, max_side=6))
    groups = draw(st.sampled_from([1, 2, 3]))
    return dict(n=draw(st.integers(2, 5)), in_channels=groups * draw(st.integers(2, 4)),
                out_channels=groups * draw(st.integers(1, 20)), kernel=kernel, stride=stride,
                padding=padding, dilation=dilation, groups=groups, size=size,
                bias=draw(st.booleans()))


@given(c=small_map_configs(), dtype=DTYPES, seed=st.integers(0, 2**32 - 1))
def test_conv2d_matches_reference_on_small_maps_with_a_shared_kernel(c, dtype, seed):
    check_conv(numba_fast, c, False, dtype, seed)


@pytest.mark.parametrize("n, w_shape, positions, expected", [
    (4, (1, 8, 3, 3, 3), 16, True),
    (4, (1, 8, 3, 3, 3), 17, False),   # a larger map
    (4, (4, 8, 3, 3, 3), 4, False),    # per-sample kernels
    (1, (1, 8, 3, 3, 3), 4, False),    # one sample
    (4, (1, 8, 1, 3, 3), 4, False),    # depthwise
])
def test_batched_path_is_taken_for_shared_kernels_on_small_maps_only(n, w_shape, positions,
                                                                    expected):
    assert batched.applies(n, w_shape, positions) is expected
