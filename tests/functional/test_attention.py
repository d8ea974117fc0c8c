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
       tau=temperatures, backend=st.sampled_from([None, "numba"]), seed=st.integers(0, 2**16))
def test_backward_matches_finite_differences(n, c, hidden, k, tau, backend, seed):
    """The composition (backend None) and the numba backend's one-call branch alike."""
    inputs = _params(np.random.default_rng(seed), n, c, hidden, k)

    def backward(dpi, cache):
        dpooled, grads = attention_backward(dpi, cache)
        return {"pooled": dpooled, **grads}

    gradcheck(lambda **p: attention_forward(*(p[name] for name in NAMES), tau, backend=backend),
              inputs, backward=backward)


@given(n=st.integers(1, 5), c=st.integers(1, 9), hidden=st.integers(1, 6), k=st.integers(1, 6),
       tau=temperatures, dtype=st.sampled_from([np.float32, np.float64]),
       seed=st.integers(0, 2**32 - 1))
def test_numba_branch_matches_the_composition(n, c, hidden, k, tau, dtype, seed):
    """The numba backend's one-call branch against the NumPy composition (the judge), forward
    and backward, in both dtypes; dtypes kept, inputs untouched.

    Tolerance: every output is a short sum (at most 9 terms) of O(1) products passed through
    exp and a division; the two orders of evaluation differ by a few units of eps relative to
    the terms' magnitude, so rtol = atol = 200 eps (2.4e-5 in float32, 4.4e-14 in float64)
    leaves a margin of ~10 over that; a wrong index changes results by O(1).
    """
    rng = np.random.default_rng(seed)
    p = {name: value.astype(dtype) for name, value in _params(rng, n, c, hidden, k).items()}
    before = {name: value.copy() for name, value in p.items()}
    args = [p[name] for name in NAMES]
    want_pi, want_cache = attention_forward(*args, tau)
    got_pi, got_cache = attention_forward(*args, tau, backend="numba")
    tolerance = 200 * np.finfo(dtype).eps
    assert got_pi.dtype == dtype
    np.testing.assert_allclose(got_pi, want_pi, rtol=tolerance, atol=tolerance)
    dpi = rng.standard_normal((n, k)).astype(dtype)
    want_dpooled, want_grads = attention_backward(dpi, want_cache)
    got_dpooled, got_grads = attention_backward(dpi, got_cache)
    np.testing.assert_allclose(got_dpooled, want_dpooled, rtol=tolerance, atol=tolerance)
    for name, grad in want_grads.items():
        assert got_grads[name].dtype == dtype, name
        np.testing.assert_allclose(got_grads[name], grad, rtol=tolerance, atol=tolerance,
                                   err_msg=name)
    for name, value in p.items():
        np.testing.assert_array_equal(value, before[name], err_msg=f"{name} was modified")


@given(n=st.integers(1, 5), k=st.integers(1, 6), tau=temperatures, seed=st.integers(0, 2**16))
def test_zero_fc2_gives_uniform_attention_for_any_input(n, k, tau, seed):
    p = _params(np.random.default_rng(seed), n, 5, 3, k)
    p["pooled"] = p["pooled"] * 100
    p["fc2_weight"][...] = 0
    p["fc2_bias"][...] = 0
    pi, _ = attention_forward(*(p[name] for name in NAMES), tau)
    np.testing.assert_allclose(pi, 1.0 / k, rtol=1e-14)
