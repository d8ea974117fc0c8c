"""nn/_attention_state.py, over every layer that uses it: the attention is a copy; a refused
(non-finite) dy consumes no forward call and accumulates nothing; the temperature is checked
against the layer's dtype, and a state dict with a temperature the layer cannot take is refused
before anything is loaded (all or nothing); branch BatchNorms' running statistics follow the
momentum rule."""
import numpy as np
import pytest

from dynconv_np.nn import (CondConv2d, DCDConv2d, DynamicConv2d, FDYConv2d, ODConv2d,
                           is_dynamic)

LAYERS = {
    "DynamicConv2d": lambda: DynamicConv2d(4, 6, 3, padding=1, num_kernels=3, backend="numpy",
                                           rng=0),
    "CondConv2d": lambda: CondConv2d(4, 6, 3, padding=1, num_experts=3, backend="numpy", rng=0),
    "ODConv2d": lambda: ODConv2d(4, 6, 3, padding=1, num_kernels=3, hidden=4, backend="numpy",
                                 rng=0),
    "DCDConv2d": lambda: DCDConv2d(4, 6, 3, backend="numpy", rng=0),
    "FDYConv2d": lambda: FDYConv2d(4, 6, 3, padding=1, num_kernels=3, backend="numpy", rng=0),
}


def _x():
    return np.random.default_rng(1).standard_normal((2, 4, 5, 5)).astype(np.float32)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_the_attention_is_a_copy(name):
    layer = LAYERS[name]()
    assert layer.attention is None
    layer(_x())
    attention = layer.attention
    arrays = attention.values() if isinstance(attention, dict) else [attention]
    for array in arrays:
        array[...] = np.nan
    again = layer.attention
    assert all(np.isfinite(a).all() for a in (again.values() if isinstance(again, dict)
                                              else [again]))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_a_refused_dy_consumes_no_call_and_accumulates_nothing(name, bad):
    """(ODConv2d and CondConv2d consumed the call before screening dy: a valid dy afterwards
    found no forward to match.)"""
    layer = LAYERS[name]()
    y = layer(_x())
    dy = np.random.default_rng(2).standard_normal(y.shape).astype(np.float32)
    dy[1, 2, 3, 4] = bad
    with pytest.raises(ValueError, match=rf"dy contains 1 non-finite value\(s\); the first is "
                                         rf"{bad} at index \(1, 2, 3, 4\)"):
        layer.backward(dy)
    assert not any(grad.any() for _, _, grad in layer.named_parameters())
    dy[1, 2, 3, 4] = 0
    assert np.isfinite(layer.backward(dy)).all()
    with pytest.raises(ValueError, match=r"without a matching forward"):
        layer.backward(dy)


TEMPERED = ["DynamicConv2d", "ODConv2d", "FDYConv2d"]


@pytest.mark.parametrize("name", TEMPERED)
def test_the_temperature_is_a_checked_state_scalar(name):
    layer = LAYERS[name]()
    assert is_dynamic(layer) and layer.state_scalars() == {"temperature": layer.temperature}
    layer.temperature = 2.0
    assert layer.temperature == 2.0
    with pytest.raises(ValueError, match=r"below the smallest normal float32"):
        layer.temperature = 1e-40  # fine in float64, 1 / tau overflows in float32
    with pytest.raises(KeyError):
        layer.load_state_scalar("tau", 1.0)


@pytest.mark.parametrize("name", TEMPERED)
def test_a_state_dict_with_an_unusable_temperature_loads_nothing(name):
    """The temperature is checked with every other entry before anything is loaded (ODConv2d
    and FDYConv2d checked it only while loading, after the arrays)."""
    layer = LAYERS[name]()
    state = layer.state_dict()
    state["weight"] = state["weight"] + 1
    state["temperature"] = np.array(1e-40)
    before = layer.params["weight"].copy()
    with pytest.raises(ValueError, match=r"temperature \(tau\) = 1e-40 is below"):
        layer.load_state_dict(state)
    np.testing.assert_array_equal(layer.params["weight"], before)
    state["temperature"] = np.array(3.0)
    layer.load_state_dict(state)
    assert layer.temperature == 3.0
    np.testing.assert_array_equal(layer.params["weight"], before + 1)


@pytest.mark.parametrize("name", ["ODConv2d", "DCDConv2d", "FDYConv2d"])
def test_branch_norms_update_their_running_statistics_in_training_mode_only(name):
    layer = LAYERS[name]()
    assert layer.eps == 1e-5 and layer.momentum == 0.1
    means = [key for key in layer.buffers if key.endswith("_running_mean")]
    assert means and all(np.all(layer.buffers[key] == 0) for key in means)
    layer(_x())
    changed = {key: value.copy() for key, value in layer.buffers.items()}
    assert all(np.any(changed[key] != 0) for key in means)
    assert all(np.all(changed[key] > 0) for key in changed if key.endswith("_running_var"))
    layer.eval()
    layer(_x())
    for key, value in layer.buffers.items():
        np.testing.assert_array_equal(value, changed[key])
