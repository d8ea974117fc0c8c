"""The GEMM path (``numba_fast/gemm.py``, C_in/groups > 1) against the reference: row blocks,
shared-kernel gradients (per-sample parts, or summed over the batch inside the kernel on small
maps), and both product orientations."""
from hypothesis import assume, given, strategies as st

from dynconv_np.backends import numba_fast
from dynconv_np.backends.numba_fast import batched, gemm, planes

from .checks import DTYPES, check_conv, large_image_configs


@given(c=large_image_configs(c_group=2), per_sample=st.booleans(), dtype=DTYPES,
       seed=st.integers(0, 2**32 - 1))
def test_conv2d_matches_reference_on_row_blocks(c, per_sample, dtype, seed):
    check_conv(numba_fast, c, per_sample, dtype, seed)


@st.composite
def wide_output_configs(draw):
    """At least gemm.TRANSPOSED_BELOW output channels per group, so the forward forms its
    product as W @ cols (narrower groups take the transposed product, cols^T @ W^T)."""
    groups = draw(st.sampled_from([1, 2]))
    c_out_group = draw(st.sampled_from([gemm.TRANSPOSED_BELOW, gemm.TRANSPOSED_BELOW + 3]))
    return dict(n=draw(st.integers(1, 3)), in_channels=groups * draw(st.integers(2, 3)),
                out_channels=groups * c_out_group,
                kernel=(draw(st.integers(1, 3)), draw(st.integers(1, 3))),
                stride=(draw(st.integers(1, 2)), draw(st.integers(1, 2))),
                padding=(draw(st.integers(0, 1)), draw(st.integers(0, 1))),
                dilation=(1, draw(st.integers(1, 2))), groups=groups,
                size=(draw(st.integers(5, 12)), draw(st.integers(5, 12))),
                bias=draw(st.booleans()))


@given(c=wide_output_configs(), per_sample=st.booleans(), dtype=DTYPES,
       seed=st.integers(0, 2**32 - 1))
def test_conv2d_matches_reference_with_wide_output_groups(c, per_sample, dtype, seed):
    check_conv(numba_fast, c, per_sample, dtype, seed)


@st.composite
def small_map_shared_configs(draw):
    """Shared 3 x 3 kernels with many channels on maps just larger than the batched path takes
    (``batched.BATCHED_UP_TO``): the weight gradient is summed over the batch inside the kernel
    (``planes.sums_batch_in_kernel``), by blocks of output channels."""
    groups = draw(st.sampled_from([1, 2]))
    return dict(n=draw(st.integers(2, 4)), in_channels=groups * draw(st.integers(8, 12)),
                out_channels=groups * draw(st.integers(12, 20)), kernel=(3, 3),
                stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=groups,
                size=(draw(st.integers(4, 6)), draw(st.integers(5, 6))),
                bias=draw(st.booleans()))


@given(c=small_map_shared_configs(), dtype=DTYPES, seed=st.integers(0, 2**32 - 1))
def test_shared_kernel_gradient_summed_in_the_kernel_matches_reference(c, dtype, seed):
    c_group = c["in_channels"] // c["groups"]
    positions = c["size"][0] * c["size"][1]
    w_size = c["out_channels"] * c_group * 9
    assume(planes.sums_batch_in_kernel(1, c["n"], w_size, c["n"] * c["out_channels"] * positions,
                                       c["n"] * c["in_channels"] * positions))
    assert not batched.applies(c["n"], (1, c["out_channels"], c_group, 3, 3), positions)
    check_conv(numba_fast, c, False, dtype, seed)
