"""Whole networks: torchvision's static ResNet / MobileNetV2 / MobileNetV3 into ours (and
back), networks of kaijieshi7 layers, our own names, and static -> dynamic initialisation."""
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the interop tests compare against PyTorch")

from dynconv_np.interop import (conform, export_model, load_model,  # noqa: E402
                                static_to_dynamic)
from dynconv_np.models import (mobilenet_v2, mobilenet_v3_large, mobilenet_v3_small,  # noqa: E402
                               resnet10, resnet18)
from dynconv_np.models.small import small_cnn  # noqa: E402

from .torch_layers import (KaijieLayout, TVMobileNetV2, TVMobileNetV3, TVResNet,  # noqa: E402
                           randomize_batchnorm)

X = np.random.default_rng(0).standard_normal((2, 3, 32, 32))
F64 = dict(num_classes=10, dtype=np.float64, backend="numpy")
CASES = {
    "resnet10": (lambda: TVResNet((1, 1, 1, 1)), lambda: resnet10(**F64)),
    "resnet18": (lambda: TVResNet((2, 2, 2, 2)), lambda: resnet18(**F64)),
    "mobilenet_v2": (lambda: TVMobileNetV2(0.5), lambda: mobilenet_v2(0.5, **F64)),
    "mobilenet_v3_small": (lambda: TVMobileNetV3(True), lambda: mobilenet_v3_small(**F64)),
    "mobilenet_v3_large": (lambda: TVMobileNetV3(False), lambda: mobilenet_v3_large(**F64)),
}


def _torch_net(make, seed=0):
    torch.manual_seed(seed)
    return randomize_batchnorm(make(), seed).double().eval()


@pytest.mark.parametrize("name", list(CASES))
def test_torchvision_state_dicts_load_into_our_static_models(name):
    make_theirs, make_ours = CASES[name]
    theirs = _torch_net(make_theirs)
    ours = load_model(make_ours(), theirs.state_dict(), "torchvision").eval()
    with torch.no_grad():
        expected = theirs(torch.tensor(X)).numpy()
    np.testing.assert_allclose(ours(X), expected, rtol=1e-10, atol=1e-12 * np.abs(expected).max())
    # and back: the exported state loads into the torch net (strict) and is the same
    exported = export_model(ours, "torchvision", template=theirs, tensors=True)
    assert list(exported) == list(theirs.state_dict())
    fresh = _torch_net(make_theirs, seed=1)
    fresh.load_state_dict(exported)
    for key, value in theirs.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(fresh.state_dict()[key], value), key


def test_a_float32_torchvision_state_needs_cast_for_a_float64_model(tmp_path):
    theirs = _torch_net(CASES["mobilenet_v3_small"][0]).float()
    with pytest.raises(ValueError, match=r"state\['features.0.0.weight'\].*float32, expected "
                                         r"float64"):
        load_model(mobilenet_v3_small(**F64), theirs.state_dict(), "torchvision")
    torch.save(theirs.state_dict(), tmp_path / "w.pth")
    load_model(mobilenet_v3_small(**F64), tmp_path / "w.pth", "torchvision", cast=True)


def test_mismatched_architectures_name_the_first_layer_that_does_not_fit():
    theirs = _torch_net(CASES["resnet10"][0])
    with pytest.raises(ValueError, match=r"(state\[|unit|layers).*"):
        load_model(mobilenet_v2(0.5, **F64), theirs.state_dict(), "torchvision")
    state = theirs.state_dict()
    state["layer1.0.conv1.weight"] = torch.zeros(64, 64, 3, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"state\['layer1.0.conv1.weight'\].*\(64, 64, 3, 3\)"):
        load_model(resnet10(**F64), state, "torchvision")
    with pytest.raises(ValueError, match="static layer.*DynamicConv2d.*static_to_dynamic"):
        load_model(resnet10(dynamic=True, **F64), theirs.state_dict(), "torchvision")


def test_our_own_names_round_trip_through_a_pt_file(tmp_path):
    model = small_cnn(dynamic=True, dtype=np.float64, rng=0, backend="numpy")
    path = tmp_path / "m.pt"
    torch.save(export_model(model, tensors=True), path)
    other = small_cnn(dynamic=True, dtype=np.float64, rng=1, backend="numpy")
    load_model(other, path)
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(other.state_dict()[key], value)
    state = export_model(model)
    del state["3.fc2_bias"]
    with pytest.raises(ValueError, match="3.fc2_bias"):
        load_model(other, state)


def _torch_kaijie_cnn():
    torch.manual_seed(0)
    nn = torch.nn
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
                        KaijieLayout(4, 8, 3, stride=2, padding=1, bias=False),
                        nn.BatchNorm2d(8), nn.ReLU(),
                        KaijieLayout(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8),
                        nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
    return randomize_batchnorm(net).double().eval()


def test_a_network_of_kaijieshi7_layers_loads_into_our_conformed_dy_cnn():
    theirs = _torch_kaijie_cnn()
    ours = conform(small_cnn(width=4, dynamic=True, dtype=np.float64, backend="numpy", rng=0),
                   "kaijieshi7")
    load_model(ours, theirs, "kaijieshi7", temperature=34.0).eval()
    x = np.random.default_rng(1).standard_normal((3, 1, 8, 8))
    with torch.no_grad():
        expected = theirs(torch.tensor(x)).numpy()
    np.testing.assert_allclose(ours(x), expected, rtol=1e-11, atol=1e-13)
    exported = export_model(ours, "kaijieshi7", template=theirs, tensors=True)
    theirs.load_state_dict(exported)
    unconformed = small_cnn(width=4, dynamic=True, dtype=np.float64, backend="numpy", rng=0)
    with pytest.raises(ValueError, match="fc1_bias"):
        load_model(unconformed, theirs, "kaijieshi7")


@pytest.mark.parametrize("make", [
    lambda **kw: small_cnn(image_shape=(3, 16, 16), **kw),
    lambda **kw: mobilenet_v3_small(num_classes=10, **kw)])
def test_static_to_dynamic_starts_the_dy_net_at_the_static_function(make):
    static = make(dynamic=False, dtype=np.float64, backend="numpy", rng=0).eval()
    for module in static.modules():          # non-trivial statistics, as a trained net has
        if "running_var" in module.buffers:
            module.buffers["running_var"][...] = 1.5
    dynamic = static_to_dynamic(static, make(dynamic=True, dtype=np.float64, backend="numpy",
                                             rng=1)).eval()
    x = np.random.default_rng(2).standard_normal((2, 3, 16, 16))
    np.testing.assert_allclose(dynamic(x), static(x), rtol=1e-10, atol=1e-13)


def test_static_to_dynamic_noise_is_seeded_and_scaled():
    static = small_cnn(dtype=np.float64, rng=0)
    make = lambda: small_cnn(dynamic=True, dtype=np.float64, rng=1)  # noqa: E731
    a = static_to_dynamic(static, make(), noise=0.1, seed=5)
    b = static_to_dynamic(static, make(), noise=0.1, seed=5)
    c = static_to_dynamic(static, make(), noise=0.1, seed=6)
    bank, base = a.state_dict()["3.weight"], static.state_dict()["3.weight"]
    np.testing.assert_array_equal(bank, b.state_dict()["3.weight"])
    assert not np.array_equal(bank, c.state_dict()["3.weight"])
    spread = (bank - base).std() / base.std()
    assert 0.05 < spread < 0.2
    assert not np.allclose(bank[0], bank[1])         # kernels differ from each other
    with pytest.raises(ValueError, match="not twins|is a"):
        static_to_dynamic(static, mobilenet_v2(0.5, dynamic=True, dtype=np.float64))
