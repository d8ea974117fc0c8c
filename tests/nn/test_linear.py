"""Linear: gradients, values, initialisation, errors."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from dynconv_np import gradcheck
from dynconv_np.nn import Linear


@given(n=st.integers(1, 4), features=st.integers(1, 6), out=st.integers(1, 5),
       bias=st.booleans(), seed=st.integers(0, 2**16))
def test_backward_matches_finite_differences(n, features, out, bias, seed):
    layer = Linear(features, out, bias=bias, dtype=np.float64, rng=seed)
    # Linear in x, weight and bias: central differences are exact up to round-off.
    report = gradcheck(layer, np.random.default_rng(seed).standard_normal((n, features)))
    assert {r.name for r in report.results} == {"x", *layer.params}


def test_forward_is_x_times_weight_transposed_plus_bias():
    layer = Linear(3, 2, dtype=np.float64, rng=0)
    layer.params["weight"][...] = [[1.0, 2.0, 3.0], [0.0, -1.0, 0.5]]
    layer.params["bias"][...] = [10.0, 20.0]
    np.testing.assert_allclose(layer.forward(np.array([[1.0, 1.0, 2.0]])), [[19.0, 20.0]])


def test_parameters_are_initialised_like_pytorch():
    layer = Linear(16, 4, rng=1)
    assert layer.params["weight"].shape == (4, 16) and layer.params["bias"].shape == (4,)
    assert max(np.abs(v).max() for v in layer.params.values()) <= 1 / 4


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(in_features=0), ValueError, r"in_features must be a positive int; received 0"),
    (dict(out_features=-2), ValueError, r"out_features must be a positive int; received -2"),
    (dict(bias=None), TypeError, r"bias must be True or False; received None"),
    (dict(dtype="float16"), TypeError, r"dtype must be float32 or float64; received 'float16'"),
])
def test_bad_constructor_arguments_are_named(kwargs, error, message):
    args = dict(in_features=4, out_features=3)
    args.update(kwargs)
    with pytest.raises(error, match=message):
        Linear(**args)


def test_wrong_rank_is_named():
    with pytest.raises(ValueError, match=r"x must be 2-D; received shape \(2, 4, 1\)"):
        Linear(4, 3).forward(np.ones((2, 4, 1), dtype=np.float32))
