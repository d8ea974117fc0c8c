"""Layer import/export for the presets: round trips through real torch layers, and every
check naming the key that does not fit."""
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the interop tests compare against PyTorch")

from dynconv_np.interop import (  # noqa: E402
    export_layer, get_preset, layer_from_state, load_layer, make_layer)

from .torch_layers import KaijieLayout, TardeleanLayout  # noqa: E402

X = np.random.default_rng(0).standard_normal((3, 6, 8, 8))


def _kaijie(**options):
    torch.manual_seed(0)
    return KaijieLayout(6, 4, 3, **options).double()


def _tardelean(**options):
    torch.manual_seed(0)
    return TardeleanLayout(3, 2, 6, 4, 3, **options).double()


@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("bias", [True, False])
def test_kaijieshi7_import_computes_what_the_torch_layer_computes(groups, bias):
    theirs = _kaijie(stride=2, padding=1, dilation=1, groups=groups, bias=bias)
    ours = layer_from_state(theirs.state_dict(), "kaijieshi7", stride=2, padding=1,
                            temperature=34.0, backend="numpy")
    assert (ours.hidden, ours.groups, "fc1_bias" in ours.params) == (int(6 * .25) + 1, groups,
                                                                     False)
    assert ("bias" in ours.params) == bias
    with torch.no_grad():
        expected = theirs(torch.tensor(X)).numpy()
    np.testing.assert_allclose(ours(X), expected, rtol=1e-12, atol=1e-14)


def test_tardelean_import_and_temperature_argument():
    theirs = _tardelean(padding=(1, 0), dilation=2)
    ours = layer_from_state(theirs, "tardelean", padding=(1, 0), dilation=2, temperature=0.5,
                            backend="numpy")
    assert ours.hidden == max(1, 6 // 2) and "fc1_bias" in ours.params
    with torch.no_grad():
        expected = theirs(torch.tensor(X), 0.5).numpy()
    np.testing.assert_allclose(ours(X), expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("preset,make", [("kaijieshi7", _kaijie), ("tardelean", _tardelean)])
def test_export_round_trip_through_the_torch_module(preset, make):
    theirs = make()
    ours = make_layer(preset, 6, 4, 3, num_kernels=3 if preset == "tardelean" else 4,
                      reduce=2, dtype=np.float64, rng=1)
    exported = export_layer(ours, preset, tensors=True)
    assert list(exported) == list(theirs.state_dict())
    theirs.load_state_dict(exported)                     # strict: names and shapes fit
    back = layer_from_state(theirs, preset)
    for name, value in ours.params.items():
        np.testing.assert_array_equal(back.params[name], value)


def test_dynconv_np_preset_keeps_our_names_and_temperature(tmp_path):
    ours = make_layer("dynconv_np", 4, 4, 3, dtype=np.float64, temperature=7.0, rng=0)
    state = export_layer(ours, "dynconv_np", prefix="block.")
    assert "block.temperature" in state and "block.fc1_bias" in state
    back = layer_from_state(state, "dynconv_np", prefix="block.")
    assert back.temperature == 7.0
    np.testing.assert_array_equal(back.params["fc2_weight"], ours.params["fc2_weight"])


def test_hidden_rules():
    assert get_preset("kaijieshi7").hidden(3, num_kernels=4) == 4          # RGB input: K
    assert get_preset("kaijieshi7").hidden(64) == 17                      # int(64 * .25) + 1
    assert get_preset("tardelean").hidden(3, reduce=4) == 1               # max(1, 3 // 4)
    assert make_layer("kaijieshi7", 3, 8, 3, num_kernels=5).hidden == 5


def test_errors_name_the_key():
    theirs = _kaijie()
    state = {k: v.numpy() for k, v in theirs.state_dict().items()}
    layer = make_layer("kaijieshi7", 6, 4, 3, dtype=np.float64)
    bad = dict(state, **{"attention.fc2.weight": np.zeros((4, 5, 1, 1))})
    with pytest.raises(ValueError, match=r"state\['attention.fc2.weight'\].*shape \(4, 2\)"):
        load_layer(layer, bad, "kaijieshi7")
    missing = {k: v for k, v in state.items() if k != "bias"}
    with pytest.raises(ValueError, match=r"state has no 'bias'"):
        load_layer(layer, missing, "kaijieshi7")
    with pytest.raises(ValueError, match=r"state\['weight'\].*float32, expected float64"):
        load_layer(layer, {k: v.astype(np.float32) for k, v in state.items()}, "kaijieshi7")
    load_layer(layer, {k: v.astype(np.float32) for k, v in state.items()}, "kaijieshi7",
               cast=True)
    with_bias = make_layer("dynconv_np", 6, 4, 3, dtype=np.float64)   # has fc1_bias
    with pytest.raises(ValueError, match="fc1_bias.*attention_bias=False"):
        load_layer(with_bias, state, "kaijieshi7")
    no_bias = make_layer("kaijieshi7", 6, 4, 3, dtype=np.float64, bias=False)
    with pytest.raises(ValueError, match=r"\['bias'\].*no parameter for"):
        load_layer(no_bias, state, "kaijieshi7")
    with pytest.raises(ValueError, match="preset must be one of"):
        get_preset("kaijie")


def test_a_failed_load_changes_nothing():
    layer = make_layer("kaijieshi7", 6, 4, 3, dtype=np.float64, rng=0)
    before = {k: v.copy() for k, v in layer.params.items()}
    state = {k: v.numpy() for k, v in _kaijie().state_dict().items()}
    state["attention.fc2.bias"] = np.zeros(3)
    with pytest.raises(ValueError):
        load_layer(layer, state, "kaijieshi7")
    for name, value in before.items():
        np.testing.assert_array_equal(layer.params[name], value)


def test_a_custom_layout_through_name_map():
    theirs = _tardelean()
    state = {k.replace("kernels_", "bank_"): v for k, v in theirs.state_dict().items()}
    name_map = {"weight": "bank_weights", "bias": "bank_bias",
                "fc1_weight": "attention.to_scores.0.weight",
                "fc1_bias": "attention.to_scores.0.bias",
                "fc2_weight": "attention.to_scores.2.weight",
                "fc2_bias": "attention.to_scores.2.bias"}
    ours = layer_from_state(state, None, name_map=name_map)
    np.testing.assert_array_equal(ours.params["weight"], state["bank_weights"].numpy())
