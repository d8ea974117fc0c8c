"""Activation layers: gradients through the layer, agreement with the functional pairs."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from dynconv_np import gradcheck
from dynconv_np.nn import HardSigmoid, HardSwish, ReLU, ReLU6, Sigmoid

from ..functional.test_activations import PAIRS, away_from_kinks, shapes

LAYERS = {"relu": ReLU, "relu6": ReLU6, "hardsigmoid": HardSigmoid, "hardswish": HardSwish,
          "sigmoid": Sigmoid}


@pytest.mark.parametrize("name", sorted(LAYERS))
@given(shape=shapes, seed=st.integers(0, 2**16))
def test_backward_matches_finite_differences(name, shape, seed):
    x = away_from_kinks(4 * np.random.default_rng(seed).standard_normal(shape), PAIRS[name][2])
    gradcheck(LAYERS[name](), x)  # tolerances: see tests/functional/test_activations.py


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_is_its_functional_pair(name, mode):
    """In both modes (in eval mode ReLU and ReLU6 keep x and form their mask in backward):
    bitwise the functional pair, kinks (x = 0, 6, -3, 3) included."""
    forward, backward, _ = PAIRS[name]
    x = np.linspace(-7, 7, 29)
    dy = np.random.default_rng(0).standard_normal(29)
    layer = LAYERS[name]().train(mode == "train")
    y_expected, cache = forward(x)
    np.testing.assert_array_equal(layer.forward(x), y_expected)
    np.testing.assert_array_equal(layer.backward(dy), backward(dy, cache))
