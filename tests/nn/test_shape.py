"""Flatten: gradient and shape."""
import numpy as np
from hypothesis import given, strategies as st

from dynconv_np import gradcheck
from dynconv_np.nn import Flatten


@given(shape=st.lists(st.integers(1, 4), min_size=2, max_size=4).map(tuple),
       seed=st.integers(0, 2**16))
def test_flatten_backward_matches_finite_differences(shape, seed):
    layer = Flatten()
    x = np.random.default_rng(seed).standard_normal(shape)
    assert layer.forward(x).shape == (shape[0], int(np.prod(shape[1:])))
    gradcheck(layer, x)  # a permutation of entries: exact up to round-off
