"""Fully connected products (functional/linear.py), shared and per sample: gradients, values,
argument and upstream errors."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from dynconv_np import gradcheck
from dynconv_np.functional import (linear_backward, linear_forward, per_sample_linear_backward,
                                   per_sample_linear_forward)

from .checks import assert_upstream_checked

shapes = dict(n=st.integers(1, 4), features=st.integers(1, 6), out=st.integers(1, 5),
              bias=st.booleans(), seed=st.integers(0, 2**16))


def _triple(backward, names):
    return lambda dy, cache: dict(zip(names, backward(dy, cache)))


@pytest.mark.parametrize("per_sample", [False, True], ids=["shared", "per-sample"])
@given(**shapes)
def test_backward_matches_finite_differences(per_sample, n, features, out, bias, seed):
    # y is bilinear in (x, weights): central differences are exact up to round-off.
    rng = np.random.default_rng(seed)
    lead = (n,) if per_sample else ()
    names = ("x", "weights", "biases") if per_sample else ("x", "weight", "bias")
    inputs = {names[0]: rng.standard_normal((n, features)),
              names[1]: rng.standard_normal(lead + (out, features))}
    if bias:
        inputs[names[2]] = rng.standard_normal(lead + (out,))
    forward, backward = ((per_sample_linear_forward, per_sample_linear_backward) if per_sample
                         else (linear_forward, linear_backward))
    report = gradcheck(forward, inputs, backward=_triple(backward, names))
    assert {r.name for r in report.results} == set(inputs)
    _, cache = forward(**inputs)
    assert (backward(np.ones((n, out)), cache)[2] is None) == (not bias)


@given(**shapes)
def test_values_are_the_definitions(n, features, out, bias, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, features))
    weight, weights = rng.standard_normal((out, features)), rng.standard_normal((n, out, features))
    b, bs = (rng.standard_normal(out), rng.standard_normal((n, out))) if bias else (None, None)
    y, _ = linear_forward(x, weight, b)
    np.testing.assert_allclose(y, x @ weight.T + (0 if b is None else b), rtol=1e-14, atol=1e-14)
    y, _ = per_sample_linear_forward(x, weights, bs)
    for i in range(n):
        np.testing.assert_allclose(y[i], weights[i] @ x[i] + (0 if bs is None else bs[i]),
                                   rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_kept_and_inputs_are_not_modified(dtype):
    rng = np.random.default_rng(0)
    x, w, b = (rng.standard_normal(s).astype(dtype) for s in ((3, 4), (2, 4), (2,)))
    before = [a.copy() for a in (x, w, b)]
    y, cache = linear_forward(x, w, b)
    grads = linear_backward(np.ones_like(y), cache)
    assert y.dtype == dtype and all(g.dtype == dtype for g in grads)
    for a, a_before in zip((x, w, b), before):
        np.testing.assert_array_equal(a, a_before)


@pytest.mark.parametrize("call, error, message", [
    (lambda: linear_forward(np.ones((2, 3)), np.ones((4, 5))), ValueError,
     r"x must have shape \('\*', 5\); received \(2, 3\)"),
    (lambda: linear_forward(np.ones(3), np.ones((4, 3))), ValueError, r"x must be 2-D"),
    (lambda: linear_forward(np.ones((2, 3)), np.ones((4, 3)), np.ones(3)), ValueError,
     r"bias must have shape \(4,\); received \(3,\)"),
    (lambda: linear_forward(np.ones((2, 3)), np.ones((4, 3), np.float32)), TypeError,
     r"mixed dtypes.*x=float64, weight=float32"),
    (lambda: linear_forward(np.ones((2, 3)), np.full((4, 3), np.nan)), ValueError,
     r"weight contains 12 non-finite"),
    (lambda: per_sample_linear_forward(np.ones((2, 3)), np.ones((3, 4, 3))), ValueError,
     r"weights must have shape \(2, '\*', 3\); received \(3, 4, 3\)"),
    (lambda: per_sample_linear_forward(np.ones((2, 3)), np.ones((2, 4, 3)), np.ones((2, 5))),
     ValueError, r"biases must have shape \(2, 4\); received \(2, 5\)"),
])
def test_bad_arguments_are_named(call, error, message):
    with pytest.raises(error, match=message):
        call()


@pytest.mark.parametrize("per_sample", [False, True], ids=["shared", "per-sample"])
def test_backward_checks_dy_and_the_cache(per_sample):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4))
    if per_sample:
        y, cache = per_sample_linear_forward(x, rng.standard_normal((3, 2, 4)))
        assert_upstream_checked(per_sample_linear_backward, cache, y)
    else:
        y, cache = linear_forward(x, rng.standard_normal((2, 4)))
        assert_upstream_checked(linear_backward, cache, y)
