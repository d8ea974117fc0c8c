"""Global average pooling (functional/pooling.py), the squeeze of the attention branch: values,
gradient, every host backend, placement, argument and upstream errors."""
import inspect

import numpy as np
import pytest
from hypothesis import given, strategies as st

from dynconv_np import gradcheck
from dynconv_np.backends import DEFAULT_BACKEND
from dynconv_np.functional import global_avg_pool_backward, global_avg_pool_forward

from .checks import FakeDeviceArray, assert_upstream_checked

HOST_BACKENDS = ["numpy", "loops", "numba"]
shapes = st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 5), st.integers(1, 5))


@pytest.mark.parametrize("backend", HOST_BACKENDS)
@given(shape=shapes, seed=st.integers(0, 2**16))
def test_mean_and_backward_match_the_definition(backend, shape, seed):
    """pooled = mean over (H, W); dx = dpooled / (H W) everywhere. A sum of m = H W terms in
    any order is within (m - 1) eps sum |x| of the exact sum; after the division by m (one more
    rounding) each mean is within (m + 1) eps max |x| of it, for either evaluation."""
    x = np.random.default_rng(seed).standard_normal(shape)
    pooled, cache = global_avg_pool_forward(x, backend=backend)
    bound = 2 * (shape[2] * shape[3] + 1) * np.finfo(np.float64).eps * np.abs(x).max()
    np.testing.assert_allclose(pooled, x.mean(axis=(2, 3)), rtol=0, atol=bound)
    dpooled = np.random.default_rng(seed + 1).standard_normal(shape[:2])
    dx = global_avg_pool_backward(dpooled, cache)
    expected = np.broadcast_to((dpooled / (shape[2] * shape[3]))[:, :, None, None], shape)
    np.testing.assert_allclose(dx, expected, rtol=1e-15)


@given(shape=shapes, seed=st.integers(0, 2**16))
def test_backward_matches_finite_differences(shape, seed):
    """Linear: central differences are exact up to round-off (the other backends' forward and
    backward are compared with the definition above)."""
    gradcheck(lambda x: global_avg_pool_forward(x, backend="numpy"),
              {"x": np.random.default_rng(seed).standard_normal(shape)},
              backward=lambda dy, cache: {"x": global_avg_pool_backward(dy, cache)})


@pytest.mark.parametrize("backend", HOST_BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_kept_and_input_is_not_modified(backend, dtype):
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5)).astype(dtype)
    view = np.asfortranarray(x)
    pooled, cache = global_avg_pool_forward(view, backend=backend)
    dx = global_avg_pool_backward(np.ones_like(pooled), cache)
    assert pooled.dtype == dtype and dx.dtype == dtype and dx.shape == x.shape
    bound = 2 * (4 * 5 + 1) * np.finfo(dtype).eps * np.abs(x).max()  # as above, m = 20
    np.testing.assert_allclose(pooled, x.mean(axis=(2, 3)), rtol=0, atol=bound)
    np.testing.assert_array_equal(view, x)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match=r"x must be 4-D; received shape \(2, 3\)"):
        global_avg_pool_forward(np.ones((2, 3)))
    with pytest.raises(TypeError, match=r"x must have dtype float32 or float64; received int64"):
        global_avg_pool_forward(np.ones((1, 1, 2, 2), np.int64))
    x = np.ones((1, 2, 2, 2))
    x[0, 1, 1, 0] = np.nan
    with pytest.raises(ValueError, match=r"x contains 1 non-finite .* index \(0, 1, 1, 0\)"):
        global_avg_pool_forward(x)
    with pytest.raises(TypeError, match=r"x is a CUDA device array, but backend 'numba' runs on "
                                        r"the host"):
        global_avg_pool_forward(FakeDeviceArray(np.ones((1, 2, 2, 2))), backend="numba")
    with pytest.raises(ValueError, match=r"backend must be one of"):
        global_avg_pool_forward(np.ones((1, 1, 2, 2)), backend="torch")


def test_backward_checks_dpooled_and_the_cache():
    pooled, cache = global_avg_pool_forward(np.ones((2, 3, 2, 2)), backend="numpy")
    assert_upstream_checked(global_avg_pool_backward, cache, pooled, name="dpooled")


def test_the_default_backend_is_the_package_default():
    assert inspect.signature(global_avg_pool_forward).parameters["backend"].default == \
        DEFAULT_BACKEND
