"""Pooling layers: gradients, default stride, global average pooling, constructor errors."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from dynconv_np import gradcheck
from dynconv_np.nn import AvgPool2d, GlobalAvgPool2d, MaxPool2d

from ..functional.test_pool2d import pool_configs

LAYERS = {"max": MaxPool2d, "avg": AvgPool2d}


@pytest.mark.parametrize("kind", sorted(LAYERS))
@given(config=pool_configs(), seed=st.integers(0, 2**16))
def test_backward_matches_finite_differences(kind, config, seed):
    layer = LAYERS[kind](config["kernel"], config["stride"], config["padding"])
    x = np.random.default_rng(seed).standard_normal((config["n"], config["c"]) + config["size"])
    gradcheck(layer, x)  # tolerances: see tests/functional/test_pool2d.py


@pytest.mark.parametrize("kind", sorted(LAYERS))
def test_stride_defaults_to_the_kernel_size(kind):
    layer = LAYERS[kind]((2, 3))
    assert layer.stride == (2, 3)
    assert layer.forward(np.ones((1, 1, 8, 9))).shape == (1, 1, 4, 3)


def test_max_and_average_of_a_known_input():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    np.testing.assert_array_equal(MaxPool2d(2).forward(x)[0, 0], [[5.0, 7.0], [13.0, 15.0]])
    np.testing.assert_array_equal(AvgPool2d(2).forward(x)[0, 0], [[2.5, 4.5], [10.5, 12.5]])


@given(n=st.integers(1, 3), c=st.integers(1, 4), h=st.integers(1, 4), w=st.integers(1, 4),
       seed=st.integers(0, 2**16))
def test_global_average_pooling(n, c, h, w, seed):
    x = np.random.default_rng(seed).standard_normal((n, c, h, w))
    layer = GlobalAvgPool2d()
    y = layer.forward(x)
    assert y.shape == (n, c)
    np.testing.assert_allclose(y, x.mean(axis=(2, 3)), rtol=1e-14)
    gradcheck(layer, x)  # linear: exact up to round-off


@pytest.mark.parametrize("kind", sorted(LAYERS))
def test_bad_constructor_arguments_are_named(kind):
    with pytest.raises(ValueError, match=r"padding must be at most half of kernel_size"):
        LAYERS[kind](2, padding=2)
    with pytest.raises(TypeError, match=r"kernel_size must be an int or a pair"):
        LAYERS[kind]("3")
    with pytest.raises(ValueError, match=r"stride must be positive"):
        LAYERS[kind](3, stride=(1, 0))
