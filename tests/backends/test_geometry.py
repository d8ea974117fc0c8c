"""Convolution geometry (``dynconv_np/backends/geometry.py``) against a count of the positions
where the dilated kernel fits in the padded input."""
from hypothesis import given, strategies as st

from dynconv_np.backends.geometry import conv_output_shape, conv_output_size


def _count_positions(size, kernel, stride, padding, dilation):
    span = dilation * (kernel - 1) + 1
    return sum(1 for start in range(0, size + 2 * padding - span + 1, stride))


@given(size=st.integers(1, 30), kernel=st.integers(1, 7), stride=st.integers(1, 4),
       padding=st.integers(0, 3), dilation=st.integers(1, 3))
def test_output_size_counts_the_kernel_positions(size, kernel, stride, padding, dilation):
    if dilation * (kernel - 1) + 1 > size + 2 * padding:
        return  # the kernel does not fit: the front-ends refuse this before asking
    assert conv_output_size(size, kernel, stride, padding, dilation) == \
        _count_positions(size, kernel, stride, padding, dilation)


def test_output_shape_takes_batch_from_x_and_channels_from_w():
    assert conv_output_shape((2, 3, 9, 8), (1, 5, 3, 3, 2), (2, 1), (1, 0), (1, 2)) == (2, 5, 5, 6)
