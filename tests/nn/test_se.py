"""SqueezeExcite: channel rounding, values, gradients with both gates, errors."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from dynconv_np import gradcheck
from dynconv_np.nn import SqueezeExcite, make_divisible


@pytest.mark.parametrize("value, expected", [
    (0, 8), (4, 8), (10, 16),  # 10 -> 8 would lose more than 10%, so one step up
    (12, 16), (16, 16), (24, 24), (28, 32), (144, 144), (60, 64)])
def test_make_divisible_follows_the_mobilenet_rule(value, expected):
    assert make_divisible(value, 8) == expected


def test_squeezed_channels_are_those_of_mobilenet_v3():
    # MobileNetV3-Small's SE blocks: 16 -> 8, 96 -> 24, 240 -> 64, 576 -> 144
    for channels, squeezed in [(16, 8), (96, 24), (240, 64), (576, 144)]:
        assert SqueezeExcite(channels).squeeze_channels == squeezed


def _manual(layer, x):
    fc1, fc2 = layer.excite[1].params, layer.excite[3].params
    pooled = x.mean(axis=(2, 3))
    hidden = np.maximum(pooled @ fc1["weight"].T + fc1["bias"], 0)
    logits = hidden @ fc2["weight"].T + fc2["bias"]
    gate = (np.clip(logits + 3, 0, 6) / 6 if layer.gate == "hardsigmoid"
            else 1 / (1 + np.exp(-logits)))
    return x * gate[:, :, None, None]


@pytest.mark.parametrize("gate", ["hardsigmoid", "sigmoid"])
@given(n=st.integers(1, 3), c=st.integers(1, 6), h=st.integers(1, 3), w=st.integers(1, 3),
       reduction=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_values_and_gradients(gate, n, c, h, w, reduction, seed):
    layer = SqueezeExcite(c, reduction, gate=gate, dtype=np.float64, rng=seed)
    for _, param, _ in layer.named_parameters():
        param *= 4  # push gate inputs across the hard sigmoid's pieces
    x = np.random.default_rng(seed).standard_normal((n, c, h, w))
    np.testing.assert_allclose(layer.forward(x), _manual(layer, x), rtol=1e-13, atol=1e-14)
    # Piecewise smooth (ReLU and hard-sigmoid kinks are met with probability ~eps); otherwise
    # as the activation tests: round-off-level agreement.
    report = gradcheck(layer, x)
    assert [r.name for r in report.results] == ["x", "excite.1.weight", "excite.1.bias",
                                                "excite.3.weight", "excite.3.bias"]


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(gate="relu"), ValueError, r"gate must be one of \['hardsigmoid', 'sigmoid'\]; "
                                    r"received 'relu'"),
    (dict(channels=0), ValueError, r"channels must be a positive int; received 0"),
    (dict(reduction=0), ValueError, r"reduction must be a positive int; received 0"),
])
def test_bad_constructor_arguments_are_named(kwargs, error, message):
    args = dict(channels=16)
    args.update(kwargs)
    with pytest.raises(error, match=message):
        SqueezeExcite(**args)


def test_the_excite_branch_is_a_named_child():
    layer = SqueezeExcite(16, dtype=np.float64, rng=0)
    assert layer.named_children() == [("excite", layer.excite)]
    assert sorted(layer.state_dict()) == ["excite.1.bias", "excite.1.weight", "excite.3.bias",
                                          "excite.3.weight"]
