"""The pointwise path (``numba_fast/pointwise.py``: 1 x 1 kernels, stride 1, no padding,
C_in/groups > 1) against the reference: output-channel blocks, per-sample and shared kernels
(shared ones on small maps summed over the batch inside the kernel), and the np.dot fallback
used when no CBLAS gemm is found."""
import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

from dynconv_np.backends import numba_fast
from dynconv_np.backends.numba_fast import batched, blas, planes, pointwise

from .checks import DTYPES, check_conv


@st.composite
def pointwise_configs(draw):
    """1 x 1 convolutions the pointwise path takes: batches from 1 (output channels split into
    blocks across the threads) to more than the threads, grouped or not, any dilation."""
    groups = draw(st.sampled_from([1, 2, 3]))
    return dict(n=draw(st.integers(1, 5)), in_channels=groups * draw(st.integers(2, 5)),
                out_channels=groups * draw(st.integers(1, 9)), kernel=(1, 1), stride=(1, 1),
                padding=(0, 0), dilation=(draw(st.integers(1, 2)), draw(st.integers(1, 2))),
                groups=groups, size=(draw(st.integers(1, 20)), draw(st.integers(1, 20))),
                bias=draw(st.booleans()))


@given(c=pointwise_configs(), per_sample=st.booleans(), dtype=DTYPES,
       seed=st.integers(0, 2**32 - 1))
def test_conv2d_matches_reference_on_the_pointwise_path(c, per_sample, dtype, seed):
    assert pointwise.applies((1, c["out_channels"], c["in_channels"] // c["groups"], 1, 1),
                             c["stride"], c["padding"])
    check_conv(numba_fast, c, per_sample, dtype, seed)


@pytest.mark.parametrize("shape, stride, padding, expected", [
    ((1, 4, 3, 1, 1), (1, 1), (0, 0), True),
    ((1, 4, 1, 1, 1), (1, 1), (0, 0), False),   # depthwise: C_in/groups = 1
    ((1, 4, 3, 1, 1), (2, 1), (0, 0), False),   # strided
    ((1, 4, 3, 1, 1), (1, 1), (0, 1), False),   # padded
    ((1, 4, 3, 1, 3), (1, 1), (0, 0), False),   # not 1 x 1
])
def test_pointwise_path_is_taken_exactly_for_unpadded_unit_stride_1x1(shape, stride, padding,
                                                                      expected):
    assert pointwise.applies(shape, stride, padding) is expected


@st.composite
def small_map_shared_configs(draw):
    """Shared kernels with many channels on maps just larger than the batched path takes
    (``batched.BATCHED_UP_TO``): the weight gradient is summed over the batch inside the kernel
    (``planes.sums_batch_in_kernel``), by blocks of output channels."""
    groups = draw(st.sampled_from([1, 2]))
    return dict(n=draw(st.integers(2, 4)), in_channels=groups * draw(st.integers(56, 64)),
                out_channels=groups * draw(st.integers(56, 64)), kernel=(1, 1), stride=(1, 1),
                padding=(0, 0), dilation=(1, 1), groups=groups,
                size=(draw(st.integers(17, 20)), 1), bias=draw(st.booleans()))


@given(c=small_map_shared_configs(), dtype=DTYPES, seed=st.integers(0, 2**32 - 1))
def test_shared_kernel_gradient_summed_in_the_kernel_matches_reference(c, dtype, seed):
    c_group = c["in_channels"] // c["groups"]
    positions = c["size"][0] * c["size"][1]
    w_size = c["out_channels"] * c_group
    assume(planes.sums_batch_in_kernel(1, c["n"], w_size, c["n"] * c["out_channels"] * positions,
                                       c["n"] * c["in_channels"] * positions))
    assert not batched.applies(c["n"], (1, c["out_channels"], c_group, 1, 1), positions)
    check_conv(numba_fast, c, False, dtype, seed)


@st.composite
def single_large_image_configs(draw):
    """One or two large images with many output channels: the forward splits each (sample,
    group) into blocks of output channels and of positions (``planes.block_shape``), with
    shorter last blocks."""
    return dict(n=draw(st.integers(1, 2)), in_channels=draw(st.integers(2, 4)),
                out_channels=draw(st.integers(32, 40)), kernel=(1, 1), stride=(1, 1),
                padding=(0, 0), dilation=(1, 1), groups=1,
                size=(draw(st.integers(23, 40)), draw(st.integers(23, 40))),
                bias=draw(st.booleans()))


@settings(max_examples=10)
@given(c=single_large_image_configs(), per_sample=st.booleans(), dtype=DTYPES,
       seed=st.integers(0, 2**32 - 1))
def test_conv2d_matches_reference_on_blocks_of_rows_and_columns(c, per_sample, dtype, seed):
    rows, columns = planes.block_shape(c["out_channels"], c["size"][0] * c["size"][1], c["n"])
    assert rows < c["out_channels"] and columns < c["size"][0] * c["size"][1]
    check_conv(numba_fast, c, per_sample, dtype, seed)


@settings(max_examples=10)
@given(c=st.one_of(pointwise_configs(), single_large_image_configs()), per_sample=st.booleans(),
       dtype=DTYPES, seed=st.integers(0, 2**32 - 1))
def test_pointwise_path_without_cblas_uses_np_dot(c, per_sample, dtype, seed):
    """With no CBLAS gemm (NumPy linked to another BLAS) the same kernels go through np.dot,
    also on blocks of rows and of columns (copied contiguous first)."""
    original = blas.cblas_gemm
    pointwise.cblas_gemm = lambda dtype: None
    try:
        check_conv(numba_fast, c, per_sample, dtype, seed)
    finally:
        pointwise.cblas_gemm = original
