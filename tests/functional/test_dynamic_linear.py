"""The dynamic perceptron (functional/dynamic_linear.py): the public pair against central
differences, the composition it is, the host backends against the NumPy reference, and
argument and upstream errors."""
import inspect

import numpy as np
import pytest
from hypothesis import given, strategies as st

from dynconv_np import gradcheck
from dynconv_np.backends import DEFAULT_BACKEND
from dynconv_np.functional import (aggregate_kernels_forward, attention_forward,
                                   dynamic_linear_backward, dynamic_linear_forward,
                                   per_sample_linear_forward)
from dynconv_np.functional.attention import ATTENTION_PARAMS

from .checks import FakeDeviceArray, assert_upstream_checked
from ..strategies import temperatures


def _params(rng, features, out, k, hidden, bias=True, fc1_bias=True, dtype=np.float64):
    p = {"weight": rng.standard_normal((k, out, features)),
         "fc1_weight": rng.standard_normal((hidden, features)),
         "fc1_bias": rng.standard_normal(hidden),
         "fc2_weight": 3 * rng.standard_normal((k, hidden)),  # pi far from uniform
         "fc2_bias": rng.standard_normal(k)}
    if bias:
        p["bias"] = rng.standard_normal((k, out))
    if not fc1_bias:
        del p["fc1_bias"]
    return {name: value.astype(dtype) for name, value in p.items()}


def _small(dtype=np.float64):
    rng = np.random.default_rng(0)
    return rng.standard_normal((2, 4)).astype(dtype), _params(rng, 4, 6, 3, 2, dtype=dtype)


configs = dict(n=st.integers(1, 4), features=st.integers(1, 6), out=st.integers(1, 5),
               k=st.integers(1, 4), hidden=st.integers(1, 4), tau=temperatures,
               bias=st.booleans(), fc1_bias=st.booleans(), seed=st.integers(0, 2**16))


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@given(**configs)
def test_backward_matches_finite_differences(backend, n, features, out, k, hidden, tau, bias,
                                             fc1_bias, seed):
    """float64, with respect to x and every parameter, through the composition ("numpy") and
    the numba engine's one-call attention branch. x reaches y twice (through W(x) and
    directly), so dx sums both paths. Smooth except at the ReLU's kinks (probability ~eps);
    tolerances as in tests/functional/test_dynamic_conv.py."""
    rng = np.random.default_rng(seed)
    inputs = {"x": rng.standard_normal((n, features)),
              **_params(rng, features, out, k, hidden, bias, fc1_bias)}

    def backward(dy, cache):
        dx, grads = dynamic_linear_backward(dy, cache)
        return {"x": dx, **grads}

    report = gradcheck(lambda x, **p: dynamic_linear_forward(x, p, tau, backend=backend),
                       inputs, backward=backward)
    assert {r.name for r in report.results} == set(inputs)


@given(**configs)
def test_forward_is_the_composition_of_the_public_stages(n, features, out, k, hidden, tau,
                                                         bias, fc1_bias, seed):
    """attention(x) -> aggregation -> per-sample product, each stage public: bitwise equal."""
    rng = np.random.default_rng(seed)
    x, params = rng.standard_normal((n, features)), _params(rng, features, out, k, hidden, bias,
                                                            fc1_bias)
    pi, _ = attention_forward(x, *(params.get(name) for name in ATTENTION_PARAMS), tau)
    (w_n, b_n), _ = aggregate_kernels_forward(pi, params["weight"], params.get("bias"),
                                              backend="numpy")
    expected, _ = per_sample_linear_forward(x, w_n, b_n)
    y, cache = dynamic_linear_forward(x, params, tau, backend="numpy")
    np.testing.assert_array_equal(y, expected)
    np.testing.assert_array_equal(cache["pi"], pi)


@pytest.mark.parametrize("backend", ["numba", "loops"])
@pytest.mark.parametrize("dtype, tolerance", [(np.float64, 1e-10), (np.float32, 2e-4)])
@given(**configs)
def test_backends_agree_with_the_numpy_reference(backend, dtype, tolerance, n, features, out, k,
                                                 hidden, tau, bias, fc1_bias, seed):
    """y, pi, dx and every gradient; dtypes kept; inputs untouched. Each entry is a sum of at
    most ~30 products (worst-case round-off 30 eps relative to the output's scale
    max(1, max |reference|)), then the softmax, which can scale an error in the logits by
    |W2| / tau <= ~50: 30 * 50 eps = 1.8e-4 in float32, the worst case that 2e-4 covers
    (typical errors are ~100 times smaller), and 3e-13 in float64, where 1e-10 leaves a margin
    of 300; an indexing error changes results by O(1)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, features)).astype(dtype)
    params = _params(rng, features, out, k, hidden, bias, fc1_bias, dtype)
    before = {"x": x.copy(), **{name: value.copy() for name, value in params.items()}}
    dy = rng.standard_normal((n, out)).astype(dtype)
    results = {}
    for name in ("numpy", backend):
        y, cache = dynamic_linear_forward(x, params, tau, backend=name)
        dx, grads = dynamic_linear_backward(dy, cache)
        results[name] = {"y": y, "pi": cache["pi"], "dx": dx, **grads}
    want, got = results["numpy"], results[backend]
    assert got.keys() == want.keys() == {"y", "pi", "dx", *params}
    for name, value in want.items():
        assert got[name].dtype == dtype, name
        scale = max(1.0, float(np.abs(value).max()))
        np.testing.assert_allclose(got[name], value, rtol=tolerance, atol=tolerance * scale,
                                   err_msg=name)
    for name, value in before.items():
        np.testing.assert_array_equal({"x": x, **params}[name], value, err_msg=f"{name} modified")


@pytest.mark.parametrize("backend", ["numpy", "loops", "numba"])
def test_non_contiguous_and_read_only_inputs_work(backend):
    x, params = _small()
    y_ref, _ = dynamic_linear_forward(x, params, 2.0, backend="numpy")
    x_view = np.stack([x, -x], axis=-1)[..., 0]
    frozen = {name: value.copy() for name, value in params.items()}
    for value in frozen.values():
        value.flags.writeable = False
    frozen["weight"] = np.asfortranarray(params["weight"])
    y, cache = dynamic_linear_forward(x_view, frozen, 2.0, backend=backend)
    dynamic_linear_backward(np.ones_like(y), cache)
    np.testing.assert_allclose(y, y_ref, rtol=1e-13, atol=1e-13)  # ~10 products per entry


@pytest.mark.parametrize("name, value, error, message", [
    ("weight", np.zeros((3, 6)), ValueError, r"weight must be 3-D"),
    ("weight", np.zeros((3, 6, 4), np.float32), TypeError, r"mixed dtypes.*weight=float32"),
    ("bias", np.zeros((3, 7)), ValueError, r"bias must have shape \(3, 6\); received \(3, 7\)"),
    ("fc1_weight", np.zeros((2, 5)), ValueError,
     r"fc1_weight must have shape \(2, 4\); received \(2, 5\)"),
    ("fc1_bias", np.zeros(3), ValueError, r"fc1_bias must have shape \(2,\); received \(3,\)"),
    ("fc2_weight", np.zeros((2, 2)), ValueError, r"fc2_weight must have shape \(3, 2\)"),
    ("fc2_bias", np.array([0.0, np.nan, 0.0]), ValueError, r"fc2_bias contains 1 non-finite"),
    ("fc2_bias", np.zeros(3, np.float32), TypeError,
     r"fc2_bias has dtype float32 but x is float64"),
])
def test_a_bad_parameter_is_named(name, value, error, message):
    x, params = _small()
    params[name] = value
    with pytest.raises(error, match=message):
        dynamic_linear_forward(x, params, 1.0, backend="numpy")


def test_bad_inputs_and_arguments_are_named():
    x, params = _small()
    with pytest.raises(ValueError, match=r"x must have shape \('\*', 4\); received \(2, 5\)"):
        dynamic_linear_forward(np.zeros((2, 5)), params, 1.0)
    with pytest.raises(ValueError, match=r"x contains 1 non-finite .* index \(1, 3\)"):
        dynamic_linear_forward(np.where(np.arange(8).reshape(2, 4) == 7, np.inf, x), params, 1.0)
    with pytest.raises(TypeError, match=r"params must be a dict holding at least 'weight'"):
        dynamic_linear_forward(x, None, 1.0)
    with pytest.raises(ValueError, match=r"missing the attention parameter\(s\) \['fc2_weight'\]"):
        dynamic_linear_forward(x, {k: v for k, v in params.items() if k != "fc2_weight"}, 1.0)
    with pytest.raises(ValueError, match=r"below the smallest normal float64"):
        dynamic_linear_forward(x, params, 1e-320)
    with pytest.raises(TypeError, match=r"x is a CUDA device array, but this computation runs"):
        dynamic_linear_forward(FakeDeviceArray(x), params, 1.0, backend="numba")
    with pytest.raises(ValueError, match=r"backend must be one of"):
        dynamic_linear_forward(x, params, 1.0, backend="torch")


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_backward_checks_dy_and_the_cache(backend):
    x, params = _small()
    y, cache = dynamic_linear_forward(x, params, 1.0, backend=backend)
    assert_upstream_checked(dynamic_linear_backward, cache, y)


def test_the_default_backend_is_the_package_default():
    assert inspect.signature(dynamic_linear_forward).parameters["backend"].default == \
        DEFAULT_BACKEND
