"""The attention branch: gradient, uniform attention when FC2 is zero, errors."""
import numpy as np
from hypothesis import given, strategies as st

from dynconv_np import gradcheck
from dynconv_np.functional import attention_backward, attention_forward

from ..strategies import temperatures

NAMES = ("pooled", "fc1_weight", "fc1_bias", "fc2_weight", "fc2_bias")


def _params(rng, n, c, hidden, k):
    shapes = ((n, c), (hidden, c), (hidden,), (k, hidden), (k,))
    return {name: rng.standard_normal(shape) for name, shape in zip(NAMES, shapes)}


@given(n=st.integers(1, 4), c=st.integers(1, 6), hidden=st.integers(1, 5), k=st.integers(1, 5),
       tau=temperatures, seed=st.integers(0, 2**16))
def test_backward_matches_finite_differences(n, c, hidden, k, tau, seed):
    inputs = _params(np.random.default_rng(seed), n, c, hidden, k)

    def backward(dpi, cache):
        dpooled, grads = attention_backward(dpi, cache)
        return {"pooled": dpooled, **grads}

    gradcheck(lambda **p: attention_forward(*(p[name] for name in NAMES), tau), inputs,
              backward=backward)


@given(n=st.integers(1, 5), k=st.integers(1, 6), tau=temperatures, seed=st.integers(0, 2**16))
def test_zero_fc2_gives_uniform_attention_for_any_input(n, k, tau, seed):
    p = _params(np.random.default_rng(seed), n, 5, 3, k)
    p["pooled"] = p["pooled"] * 100
    p["fc2_weight"][...] = 0
    p["fc2_bias"][...] = 0
    pi, _ = attention_forward(*(p[name] for name in NAMES), tau)
    np.testing.assert_allclose(pi, 1.0 / k, rtol=1e-14)
