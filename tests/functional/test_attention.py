"""The attention branch (the composition of stages): gradient, uniform attention when FC2 is
zero, the optional FC1 bias, the temperature's range, argument and upstream errors.

Whether a backend's one-call branch replaces this composition is the dynamic convolution's
choice (``dynamic_conv._attention_stage``): the fused-vs-composition tests live in
``tests/functional/test_dynamic_conv.py``.
"""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from dynconv_np import gradcheck
from dynconv_np.functional import attention_backward, attention_forward

from .checks import assert_upstream_checked
from ..strategies import temperatures

NAMES = ("pooled", "fc1_weight", "fc1_bias", "fc2_weight", "fc2_bias")


def _params(rng, n, c, hidden, k):
    shapes = ((n, c), (hidden, c), (hidden,), (k, hidden), (k,))
    return {name: rng.standard_normal(shape) for name, shape in zip(NAMES, shapes)}


def _backward(dpi, cache):
    dpooled, grads = attention_backward(dpi, cache)
    return {"pooled": dpooled, **grads}


@given(n=st.integers(1, 4), c=st.integers(1, 6), hidden=st.integers(1, 5), k=st.integers(1, 5),
       tau=temperatures, fc1_bias=st.booleans(), seed=st.integers(0, 2**16))
def test_backward_matches_finite_differences(n, c, hidden, k, tau, fc1_bias, seed):
    """With and without the FC1 bias (then no "fc1_bias" gradient is returned).

    Smooth except at the ReLU's kink (met with probability ~eps = 1e-6); the softmax's third
    derivative is O(1 / tau^3) <= 125 for tau >= 0.2, so the truncation error eps^2 * 125 ~ 1e-10
    stays far below the default atol 1e-7 + rtol 1e-5."""
    inputs = _params(np.random.default_rng(seed), n, c, hidden, k)
    if not fc1_bias:
        del inputs["fc1_bias"]
    report = gradcheck(lambda **p: attention_forward(*(p.get(name) for name in NAMES), tau),
                       inputs, backward=_backward)
    assert {r.name for r in report.results} == set(inputs)
    if not fc1_bias:
        _, cache = attention_forward(*(inputs.get(name) for name in NAMES), tau)
        assert "fc1_bias" not in attention_backward(np.ones((n, k)), cache)[1]


@given(n=st.integers(1, 5), k=st.integers(1, 6), tau=temperatures, seed=st.integers(0, 2**16))
def test_zero_fc2_gives_uniform_attention_for_any_input(n, k, tau, seed):
    p = _params(np.random.default_rng(seed), n, 5, 3, k)
    p["pooled"] = p["pooled"] * 100
    p["fc2_weight"][...] = 0
    p["fc2_bias"][...] = 0
    pi, _ = attention_forward(*(p[name] for name in NAMES), tau)
    np.testing.assert_allclose(pi, 1.0 / k, rtol=1e-14)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # (z - max) / tau -> -inf
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_smallest_usable_temperature_gives_one_hot_attention(dtype):
    """tau = the dtype's smallest normal: exp((z - max z) / tau) is 1 at the argmax and 0
    elsewhere, never inf - inf; a tau below it is refused, naming the usable range."""
    p = {name: value.astype(dtype) for name, value in
         _params(np.random.default_rng(0), 6, 4, 3, 5).items()}
    p["fc2_weight"] *= 10
    tiny = float(np.finfo(dtype).tiny)
    pi, cache = attention_forward(*(p[name] for name in NAMES), tiny)
    hidden = np.maximum(p["pooled"] @ p["fc1_weight"].T + p["fc1_bias"], 0)
    logits = hidden @ p["fc2_weight"].T + p["fc2_bias"]
    np.testing.assert_array_equal(pi, np.eye(5)[np.argmax(logits, axis=1)])
    dpooled, grads = attention_backward(np.ones_like(pi), cache)
    assert np.isfinite(dpooled).all() and all(np.isfinite(g).all() for g in grads.values())
    with pytest.raises(ValueError, match=rf"temperature \(tau\) = {tiny / 2!r} is below the "
                                         rf"smallest normal {np.dtype(dtype)}.*usable range"):
        attention_forward(*(p[name] for name in NAMES), tiny / 2)


@pytest.mark.parametrize("name, shape, error, message", [
    ("pooled", (3, 4, 1), ValueError, r"pooled must be 2-D"),
    ("fc1_weight", (2, 5), ValueError, r"fc1_weight must have shape \(2, 4\); received \(2, 5\)"),
    ("fc1_bias", (3,), ValueError, r"fc1_bias must have shape \(2,\); received \(3,\)"),
    ("fc2_weight", (3, 3), ValueError, r"fc2_weight must have shape \(3, 2\); received \(3, 3\)"),
    ("fc2_bias", (2,), ValueError, r"fc2_bias must have shape \(3,\); received \(2,\)"),
])
def test_a_parameter_of_the_wrong_shape_is_named(name, shape, error, message):
    p = _params(np.random.default_rng(0), 3, 4, 2, 3)
    p[name] = np.zeros(shape)
    with pytest.raises(error, match=message):
        attention_forward(*(p[n] for n in NAMES), 1.0)


@pytest.mark.parametrize("name", NAMES)
def test_a_parameter_of_another_dtype_or_with_a_nan_is_named(name):
    p = _params(np.random.default_rng(0), 3, 4, 2, 3)
    p[name] = p[name].astype(np.float32)
    # the parameters are judged against the input's dtype: a float32 input names the first
    # float64 parameter and the input's dtype
    message = (r"fc1_weight has dtype float64 but pooled is float32" if name == "pooled"
               else rf"{name} has dtype float32 but pooled is float64")
    with pytest.raises(TypeError, match=message):
        attention_forward(*(p[n] for n in NAMES), 1.0)
    p[name] = p[name].astype(np.float64)
    p[name].flat[-1] = np.nan
    with pytest.raises(ValueError, match=rf"{name} contains 1 non-finite"):
        attention_forward(*(p[n] for n in NAMES), 1.0)


def test_backward_checks_the_upstream_gradient_and_the_cache():
    p = _params(np.random.default_rng(0), 3, 4, 2, 5)
    pi, cache = attention_forward(*(p[name] for name in NAMES), 2.0)
    assert_upstream_checked(attention_backward, cache, pi, name="dpi")
