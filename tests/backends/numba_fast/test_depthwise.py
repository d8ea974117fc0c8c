"""The depthwise path (``numba_fast/depthwise.py``, C_in/groups = 1) against the reference on
large images (long runs, odd widths) and batches larger than the thread count (shared kernels:
per-sample dW summed), channel multipliers 1 and 2 (small shapes: test_package.py)."""
from hypothesis import given, strategies as st

from dynconv_np.backends import numba_fast

from .checks import DTYPES, check_conv, large_image_configs


@given(c=large_image_configs(c_group=1), per_sample=st.booleans(), dtype=DTYPES,
       seed=st.integers(0, 2**32 - 1))
def test_conv2d_matches_reference_on_large_images(c, per_sample, dtype, seed):
    check_conv(numba_fast, c, per_sample, dtype, seed)
