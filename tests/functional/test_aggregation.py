"""Kernel aggregation: gradients, linearity (aggregating kernels = mixing outputs), the host
backends against the reference, argument, placement and upstream errors."""
import inspect

import numpy as np
import pytest
from hypothesis import given, strategies as st

from dynconv_np import gradcheck
from dynconv_np.backends import DEFAULT_BACKEND
from dynconv_np.functional import (aggregate_kernels_backward, aggregate_kernels_forward,
                                   conv2d_forward, per_sample_conv2d_forward, softmax_forward)

from .checks import FakeDeviceArray
from ..strategies import conv_configs


@pytest.mark.parametrize("backend", ["numpy", "numba"])  # loops: judged against numpy below
@given(n=st.integers(1, 4), k=st.integers(1, 5), c_out=st.integers(1, 4),
       bias=st.booleans(), seed=st.integers(0, 2**16))
def test_backward_matches_finite_differences(backend, n, k, c_out, bias, seed):
    rng = np.random.default_rng(seed)
    inputs = {"pi": rng.random((n, k)), "weight": rng.standard_normal((k, c_out, 2, 3, 1))}
    if bias:
        inputs["bias"] = rng.standard_normal((k, c_out))

    def forward(pi, weight, bias=None):
        (w_n, b_n), cache = aggregate_kernels_forward(pi, weight, bias, backend=backend)
        out = w_n.reshape(n, -1) if b_n is None else np.concatenate([w_n.reshape(n, -1), b_n], 1)
        return out, cache

    def backward(dout, cache):
        dw_n = dout[:, :c_out * 6].reshape(n, c_out, 2, 3, 1)
        db_n = dout[:, c_out * 6:] if bias else None
        dpi, dweight, dbias = aggregate_kernels_backward(dw_n, db_n, cache)
        return {"pi": dpi, "weight": dweight, "bias": dbias}

    # bilinear in (pi, kernels): central differences are exact up to round-off.
    gradcheck(forward, inputs, backward=backward)


@given(config=conv_configs(), k=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_conv_with_aggregated_kernel_equals_mixture_of_k_convs(config, k, seed):
    """conv(x, sum_k pi_k W_k) + sum_k pi_k b_k == sum_k pi_k (conv(x, W_k) + b_k)."""
    rng = np.random.default_rng(seed)
    c = config
    x = rng.standard_normal((c["n"], c["in_channels"]) + c["size"])
    weight = rng.standard_normal((k, c["out_channels"], c["in_channels"] // c["groups"])
                                 + c["kernel"])
    bias = rng.standard_normal((k, c["out_channels"]))
    pi, _ = softmax_forward(rng.standard_normal((c["n"], k)), 1.0)
    geometry = dict(stride=c["stride"], padding=c["padding"], dilation=c["dilation"],
                    groups=c["groups"], backend="numpy")
    (w_n, b_n), _ = aggregate_kernels_forward(pi, weight, bias)
    aggregated, _ = per_sample_conv2d_forward(x, w_n, b_n, **geometry)
    mixed = sum(pi[:, j, None, None, None] * conv2d_forward(x, weight[j], bias[j], **geometry)[0]
                for j in range(k))
    np.testing.assert_allclose(aggregated, mixed, rtol=1e-10, atol=1e-10)


def test_kernel_count_mismatch_is_named():
    with pytest.raises(ValueError, match="weight must hold K=3 kernels"):
        aggregate_kernels_forward(np.full((2, 3), 1 / 3), np.zeros((4, 2, 1, 1, 1)))


def test_bias_shape_mismatch_is_named():
    with pytest.raises(ValueError, match=r"bias must have shape \(3, 2\); received \(3, 5\)"):
        aggregate_kernels_forward(np.full((2, 3), 1 / 3), np.zeros((3, 2, 1, 1, 1)),
                                  np.zeros((3, 5)))


@pytest.mark.parametrize("backend", ["loops", "numba"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(n=st.integers(1, 4), k=st.integers(1, 5), c_out=st.integers(1, 4), bias=st.booleans(),
       seed=st.integers(0, 2**16))
def test_backends_agree_with_the_numpy_reference(backend, dtype, n, k, c_out, bias, seed):
    """w_n, b_n (sums of K <= 5 products) and dpi (inner products over <= 4 * 6 + 4 = 28
    entries), dweight, dbias (sums of N <= 4 products): at most 28 eps relative to the sum of
    |terms|, so rtol = atol = 100 eps (1.2e-5 float32, 2.2e-14 float64) of the scale holds."""
    rng = np.random.default_rng(seed)
    pi = rng.random((n, k)).astype(dtype)
    weight = rng.standard_normal((k, c_out, 2, 3, 1)).astype(dtype)
    b = rng.standard_normal((k, c_out)).astype(dtype) if bias else None
    dw_n = rng.standard_normal((n, c_out, 2, 3, 1)).astype(dtype)
    db_n = rng.standard_normal((n, c_out)).astype(dtype) if bias else None
    results = {}
    for name in ("numpy", backend):
        (w_n, b_n), cache = aggregate_kernels_forward(pi, weight, b, backend=name)
        results[name] = (w_n, b_n) + aggregate_kernels_backward(dw_n, db_n, cache)
    tolerance = 100 * np.finfo(dtype).eps
    for label, want, got in zip(("w_n", "b_n", "dpi", "dweight", "dbias"), results["numpy"],
                                results[backend]):
        if want is None:
            assert got is None, label
            continue
        assert got.dtype == dtype, label
        scale = max(1.0, float(np.abs(want).max()))
        np.testing.assert_allclose(got, want, rtol=tolerance, atol=tolerance * scale,
                                   err_msg=label)


def test_a_device_pi_given_to_a_host_backend_is_named():
    with pytest.raises(TypeError, match=r"pi is a CUDA device array, but this computation runs "
                                        r"on the host"):
        aggregate_kernels_forward(FakeDeviceArray(np.ones((2, 3))), np.zeros((3, 2, 1, 1, 1)),
                                  backend="numba")


def test_mixed_dtypes_are_named():
    with pytest.raises(TypeError, match=r"mixed dtypes.*pi=float64, weight=float32"):
        aggregate_kernels_forward(np.full((2, 3), 1 / 3), np.zeros((3, 2, 1, 1, 1), np.float32))


def test_backward_checks_both_upstream_gradients_and_the_cache():
    pi = np.full((2, 3), 1 / 3)
    (w_n, b_n), cache = aggregate_kernels_forward(pi, np.ones((3, 2, 1, 1, 1)), np.ones((3, 2)),
                                                  backend="numpy")
    with pytest.raises(ValueError, match=r"dw_n must have the shape of the forward output "
                                         r"\(2, 2, 1, 1, 1\)"):
        aggregate_kernels_backward(np.ones((2, 2, 1, 1)), b_n, cache)
    with pytest.raises(TypeError, match=r"db_n must have the dtype of the forward output"):
        aggregate_kernels_backward(w_n, b_n.astype(np.float32), cache)
    with pytest.raises(ValueError, match=r"db_n must be an array of shape \(2, 2\)"):
        aggregate_kernels_backward(w_n, None, cache)
    bad = b_n.copy()
    bad[1, 0] = np.nan
    with pytest.raises(ValueError, match=r"db_n contains 1 non-finite .* index \(1, 0\)"):
        aggregate_kernels_backward(w_n, bad, cache)
    (w_n, _), no_bias = aggregate_kernels_forward(pi, np.ones((3, 2, 1, 1, 1)), backend="numpy")
    with pytest.raises(ValueError, match=r"db_n must be None: the forward pass produced no such "
                                         r"output"):
        aggregate_kernels_backward(w_n, np.ones((2, 2)), no_bias)
    assert aggregate_kernels_backward(w_n, None, no_bias)[2] is None
    with pytest.raises(TypeError, match=r"cache must be the cache returned by "
                                        r"aggregate_kernels_forward"):
        aggregate_kernels_backward(w_n, None, {"pi": pi})


def test_the_default_backend_is_the_package_default():
    assert inspect.signature(aggregate_kernels_forward).parameters["backend"].default == \
        DEFAULT_BACKEND
