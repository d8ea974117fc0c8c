"""The GEMM path (``numba_fast/gemm.py``, C_in/groups > 1) against the reference: row blocks,
per-thread partial sums of shared-kernel gradients, and both product orientations."""
from hypothesis import given, strategies as st

from dynconv_np.backends import numba_fast
from dynconv_np.backends.numba_fast import gemm

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
