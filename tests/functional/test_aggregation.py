"""Kernel aggregation: gradients, and linearity (aggregating kernels = mixing outputs)."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from dynconv_np import gradcheck
from dynconv_np.functional import (aggregate_kernels_backward, aggregate_kernels_forward,
                                   conv2d_forward, per_sample_conv2d_forward, softmax_forward)

from ..strategies import conv_configs


@given(n=st.integers(1, 4), k=st.integers(1, 5), c_out=st.integers(1, 4),
       bias=st.booleans(), seed=st.integers(0, 2**16))
def test_backward_matches_finite_differences(n, k, c_out, bias, seed):
    rng = np.random.default_rng(seed)
    inputs = {"pi": rng.random((n, k)), "weight": rng.standard_normal((k, c_out, 2, 3, 1))}
    if bias:
        inputs["bias"] = rng.standard_normal((k, c_out))

    def forward(pi, weight, bias=None):
        (w_n, b_n), cache = aggregate_kernels_forward(pi, weight, bias)
        out = w_n.reshape(n, -1) if b_n is None else np.concatenate([w_n.reshape(n, -1), b_n], 1)
        return out, cache

    def backward(dout, cache):
        dw_n = dout[:, :c_out * 6].reshape(n, c_out, 2, 3, 1)
        db_n = dout[:, c_out * 6:] if bias else None
        dpi, dweight, dbias = aggregate_kernels_backward(dw_n, db_n, cache)
        return {"pi": dpi, "weight": dweight, "bias": dbias}

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
