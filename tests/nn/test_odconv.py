"""ODConv2d: gradients in training and evaluation mode, the running statistics, the official
hidden width, heads and initialisation, the backends against NumPy, an own PyTorch
implementation over training steps and evaluation, the module contract, costs and errors."""
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

from dynconv_np import gradcheck
from dynconv_np.nn import ODConv2d, Sequential, is_dynamic
from dynconv_np.nn.odconv import extra_costs, odconv_hidden
from dynconv_np.train.schedules import apply_temperature

from ..functional.test_odconv import torch_odconv2d
from ..strategies import conv_configs, temperatures


def _layer(c, k, tau, backend="numpy", dtype=np.float64, seed=0, hidden=3):
    layer = ODConv2d(c["in_channels"], c["out_channels"], c["kernel"], stride=c["stride"],
                     padding=c["padding"], dilation=c["dilation"], groups=c["groups"],
                     num_kernels=k, hidden=hidden, temperature=tau, backend=backend,
                     dtype=dtype, rng=seed)
    rng = np.random.default_rng(seed + 1)
    for name, value in layer.params.items():  # away from the zero biases and unit gamma
        if name.endswith("bias") or name == "bn_weight":
            value[...] = (name == "bn_weight") + 0.5 * rng.standard_normal(value.shape)
    layer.params["fc_weight"] *= 2
    return layer


def _input(c, seed, dtype=np.float64):
    """Standard normal plus per-(sample, channel) offsets (tests/functional/test_odconv.py)."""
    rng = np.random.default_rng(seed)
    shape = (c["n"], c["in_channels"]) + c["size"]
    return (rng.standard_normal(shape) + rng.standard_normal(shape[:2] + (1, 1))).astype(dtype)


# -- gradients -----------------------------------------------------------------------------------
@pytest.mark.parametrize("training", [True, False])
@given(config=conv_configs(), n=st.integers(3, 4), k=st.integers(1, 3), tau=temperatures,
       seed=st.integers(0, 2**16))
def test_backward_matches_finite_differences(training, config, n, k, tau, seed):
    """x and every parameter (the heads this configuration has), training mode with N = 3 or
    4 (each forward of the check also updates the running statistics, which training mode does
    not read) and evaluation mode with random running statistics (N = 1 included)."""
    config = dict(config, n=n) if training else config
    layer = _layer(config, k, tau, seed=seed)
    if not training:
        rng = np.random.default_rng(seed + 2)
        layer.buffers["bn_running_mean"][...] = rng.standard_normal(layer.hidden)
        layer.buffers["bn_running_var"][...] = rng.uniform(0.5, 2.0, layer.hidden)
        layer.eval()
    report = gradcheck(layer, _input(config, seed))
    assert {r.name for r in report.results} == {"x", *layer.params}


# -- the backends ---------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["numba", "loops"])
@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-10), (np.float32, 5e-4)])
@given(config=conv_configs(), k=st.integers(1, 3), tau=temperatures, seed=st.integers(0, 2**16))
def test_backends_agree_with_the_numpy_reference(backend, dtype, rtol, config, k, tau, seed):
    """A training step then an evaluation step on each backend: y, dx, every parameter
    gradient and the running statistics agree (tolerances as in the functional tests)."""
    config = dict(config, n=max(config["n"], 2))
    layers = {b: _layer(config, k, tau, backend=b, dtype=dtype, seed=seed)
              for b in ("numpy", backend)}
    x = _input(config, seed, dtype)
    values = {}
    for b, layer in layers.items():
        y = layer(x)
        dy = np.random.default_rng(seed + 1).standard_normal(y.shape).astype(dtype)
        dx = layer.backward(dy)
        layer.eval()
        y_eval = layer(x)
        values[b] = {"y": y, "dx": dx, "y_eval": y_eval, "dx_eval": layer.backward(dy),
                     **layer.grads, **layer.buffers}
    for name, value in values["numpy"].items():
        got = values[backend][name]
        assert got.dtype == dtype, name
        scale = max(1.0, float(np.abs(value).max()))
        np.testing.assert_allclose(got, value, rtol=rtol, atol=rtol * scale, err_msg=name)


# -- PyTorch: two training steps, then evaluation ------------------------------------------------
@pytest.mark.parametrize("c_in, c_out, kernel, groups, k", [
    (4, 6, 3, 2, 4), (6, 6, 3, 6, 2), (4, 8, 1, 1, 1)])
def test_matches_an_own_pytorch_implementation_over_training_and_evaluation(c_in, c_out, kernel,
                                                                            groups, k):
    """float64: per training step (on two different batches) y, dx and every gradient, and
    the running statistics (F.batch_norm's momentum update, unbiased variance) after each;
    then evaluation mode's y and dx from those statistics. Max error ~1e-14; asserted 1e-11."""
    torch = pytest.importorskip(
        "torch", reason="the cross-check runs our PyTorch version of the formula")
    layer = ODConv2d(c_in, c_out, kernel, padding=kernel // 2, groups=groups, num_kernels=k,
                     hidden=5, temperature=0.9, momentum=0.2, backend="numpy",
                     dtype=np.float64, rng=3)
    t = {name: torch.tensor(value.copy(), requires_grad=True)
         for name, value in layer.params.items()}
    running = {"running_mean": torch.zeros(5, dtype=torch.float64),
               "running_var": torch.ones(5, dtype=torch.float64)}
    rng = np.random.default_rng(4)
    for step in range(3):
        training = step < 2
        layer.train(training)
        x = rng.standard_normal((3, c_in, 5, 6)) + rng.standard_normal((3, c_in, 1, 1))
        layer.zero_grad()
        y = layer(x)
        dy = rng.standard_normal(y.shape)
        dx = layer.backward(dy)
        t_x = torch.tensor(x, requires_grad=True)
        for value in t.values():
            value.grad = None
        y_t = torch_odconv2d(t_x, t, 0.9, 1, kernel // 2, 1, groups, training, momentum=0.2,
                             **running)
        y_t.backward(torch.tensor(dy))
        np.testing.assert_allclose(y, y_t.detach().numpy(), rtol=1e-11, atol=1e-11)
        np.testing.assert_allclose(dx, t_x.grad.numpy(), rtol=1e-11, atol=1e-11)
        for name, grad in layer.grads.items():
            np.testing.assert_allclose(grad, t[name].grad.numpy(), rtol=1e-11, atol=1e-11,
                                       err_msg=f"step {step}: {name}")
        for name in ("running_mean", "running_var"):
            np.testing.assert_allclose(layer.buffers[f"bn_{name}"], running[name].numpy(),
                                       rtol=1e-12, atol=1e-14, err_msg=f"step {step}: {name}")


# -- the official hyper-parameters ----------------------------------------------------------------
def test_hidden_width_heads_and_parameter_shapes_follow_the_official_code():
    assert [odconv_hidden(c) for c in (3, 64, 256, 512, 1000)] == [16, 16, 16, 32, 62]
    assert odconv_hidden(64, reduction=0.25) == 16 and odconv_hidden(128, reduction=0.25) == 32
    assert odconv_hidden(8, hidden=5) == 5
    layer = ODConv2d(32, 64, 3, padding=1, rng=0)
    assert layer.hidden == 16 and layer.num_kernels == 4
    assert {name: value.shape for name, value in layer.params.items()} == {
        "weight": (4, 64, 32, 3, 3), "fc_weight": (16, 32), "bn_weight": (16,),
        "bn_bias": (16,), "channel_fc_weight": (32, 16), "channel_fc_bias": (32,),
        "filter_fc_weight": (64, 16), "filter_fc_bias": (64,), "spatial_fc_weight": (9, 16),
        "spatial_fc_bias": (9,), "kernel_fc_weight": (4, 16), "kernel_fc_bias": (4,)}
    assert ODConv2d(32, 32, 3, groups=32).heads == ("channel", "spatial", "kernel")
    assert ODConv2d(32, 64, 1, num_kernels=1).heads == ("channel", "filter")
    assert "bias" not in ODConv2d(4, 4, 3).params  # no convolution bias
    assert {name: value.shape for name, value in layer.buffers.items()} == {
        "bn_running_mean": (16,), "bn_running_var": (16,)}


def test_initialisation_is_the_official_kaiming_normal_fan_out():
    layer = ODConv2d(64, 128, 3, num_kernels=2, rng=0)
    np.testing.assert_allclose(layer.params["weight"].std(), math.sqrt(2 / (128 * 9)), rtol=0.02)
    np.testing.assert_allclose(layer.params["fc_weight"].std(), math.sqrt(2 / 16), rtol=0.05)
    np.testing.assert_allclose(layer.params["filter_fc_weight"].std(), math.sqrt(2 / 128),
                               rtol=0.05)
    assert not np.allclose(layer.params["weight"][0], layer.params["weight"][1])
    for head in layer.heads:
        assert not layer.params[f"{head}_fc_bias"].any()
    np.testing.assert_array_equal(layer.params["bn_weight"], 1)
    assert not layer.params["bn_bias"].any()
    assert all(v.dtype == np.float32 for v in layer.params.values())


# -- modes, state and the module contract ----------------------------------------------------------
def test_training_updates_the_running_statistics_and_evaluation_reads_them():
    layer = ODConv2d(4, 4, 3, padding=1, hidden=4, momentum=0.5, backend="numpy",
                     dtype=np.float64, rng=0)
    x = np.random.default_rng(0).standard_normal((4, 4, 5, 5))
    layer(x)
    pre = x.mean(axis=(2, 3)) @ layer.params["fc_weight"].T
    np.testing.assert_allclose(layer.buffers["bn_running_mean"], 0.5 * pre.mean(axis=0))
    np.testing.assert_allclose(layer.buffers["bn_running_var"],
                               0.5 + 0.5 * pre.var(axis=0, ddof=1))
    layer.eval()
    before = {name: value.copy() for name, value in layer.buffers.items()}
    y0 = layer(x[:1])  # one sample: fine in evaluation mode
    y_all = layer(x)
    np.testing.assert_allclose(y0, y_all[:1], rtol=1e-13, atol=1e-13)  # no batch coupling
    for name, value in before.items():
        np.testing.assert_array_equal(layer.buffers[name], value)
    layer.train()
    with pytest.raises(ValueError, match=r"needs N >= 2 samples; received x shape "
                                         r"\(1, 4, 5, 5\)"):
        layer(x[:1])


def test_attentions_state_dict_and_temperature():
    layer = ODConv2d(4, 6, 3, padding=1, num_kernels=3, temperature=2.0, backend="numpy", rng=0)
    x = np.random.default_rng(1).standard_normal((2, 4, 5, 5)).astype(np.float32)
    layer(x)
    att = layer.attentions
    assert {h: a.shape for h, a in att.items()} == {"channel": (2, 4), "filter": (2, 6),
                                                    "spatial": (2, 9), "kernel": (2, 3)}
    np.testing.assert_allclose(att["kernel"].sum(axis=1), 1, rtol=1e-6)
    att["kernel"][...] = 0
    assert layer.attentions["kernel"].any()  # a copy
    state = layer.state_dict()
    assert {"bn_running_mean", "bn_running_var", "temperature", "kernel_fc_bias"} <= set(state)
    other = ODConv2d(4, 6, 3, padding=1, num_kernels=3, backend="numpy", rng=5)
    other.load_state_dict(state)
    assert other.temperature == 2.0
    layer.eval(), other.eval()
    np.testing.assert_array_equal(other(x), layer(x))
    assert is_dynamic(layer)
    assert apply_temperature(Sequential(layer, other), 7.0) == 2 and layer.temperature == 7.0
    with pytest.raises(ValueError, match=r"temperature \(tau\) must be finite and > 0"):
        layer.temperature = 0.0


def test_grads_accumulate_over_calls_and_a_layer_used_twice_is_right():
    layer = ODConv2d(3, 3, 3, padding=1, num_kernels=2, hidden=3, backend="numpy",
                     dtype=np.float64, rng=0)
    twice = dict(n=3, in_channels=3, size=(4, 4))  # training mode (eval keeps one call only)
    gradcheck(Sequential(layer, layer), _input(twice, 1))
    x = _input(twice, 2)
    dy = np.random.default_rng(3).standard_normal((3, 3, 4, 4))
    layer.zero_grad()
    layer(x)
    layer.backward(dy)
    once = {name: g.copy() for name, g in layer.grads.items()}
    layer(x)
    layer.backward(dy)
    for name, grad in layer.grads.items():
        np.testing.assert_allclose(grad, 2 * once[name], rtol=1e-12, err_msg=name)


# -- costs -----------------------------------------------------------------------------------------
def test_extra_costs_follow_the_formulas():
    layer = ODConv2d(32, 64, 3, stride=2, padding=1, num_kernels=4, rng=0)
    costs = extra_costs(layer, (2, 32, 16, 16))
    kernel = 64 * 32 * 9
    s = 32 + 64 + 9 + 4
    params = 4 * kernel + 16 * 32 + 2 * 16 + 16 * s + s
    assert costs == dict(output_shape=(2, 64, 8, 8), params=params, extra_params=params - kernel,
                         conv=2 * 64 * 64 * 32 * 9, attention_pool=2 * 32 * 256,
                         attention_fc=2 * 16 * (32 + s), aggregation=2 * kernel * 5,
                         scaling=2 * 32 * 256 + 2 * 64 * 64)
    assert params == sum(v.size for v in layer.params.values())
    depthwise_1x1 = ODConv2d(32, 32, 1, groups=32, num_kernels=1, rng=0)
    costs = extra_costs(depthwise_1x1, (1, 32, 8, 8))
    assert costs["aggregation"] == 0 and costs["scaling"] == 32 * 64
    assert costs["attention_fc"] == 16 * (32 + 32)
    with pytest.raises(TypeError, match=r"extra_costs counts ODConv2d"):
        extra_costs(Sequential(), (1, 3, 8, 8))


def test_the_parameter_count_reproduces_the_official_resnet18_numbers():
    """OSVAI/ODConv's README: ResNet18 (11.69M, torchvision's 11,689,512) + ODConv 1x 11.94M,
    4x 44.90M, with ODConv in the 16 3x3 convolutions of the basic blocks (r = 1/16)."""
    convs = []
    for c, side, first_in, stride in ((64, 56, 64, 1), (128, 56, 64, 2), (256, 28, 128, 2),
                                      (512, 14, 256, 2)):
        convs += [(first_in, c, stride, side)] + [(c, c, 1, side // stride)] * 3
    for k, expected in ((1, 11.94e6), (4, 44.90e6)):
        extra = sum(extra_costs(ODConv2d(c_in, c_out, 3, stride=s, padding=1, num_kernels=k,
                                         rng=0), (1, c_in, side, side))["extra_params"]
                    for c_in, c_out, s, side in convs)
        assert round(11_689_512 + extra, -4) == expected


# -- errors ----------------------------------------------------------------------------------------
def test_bad_inputs_and_arguments_are_named():
    layer = ODConv2d(3, 4, 3, padding=1, hidden=4, backend="numpy", dtype=np.float64, rng=0)
    with pytest.raises(ValueError, match=r"x must have 3 channels"):
        layer(np.zeros((2, 4, 5, 5)))
    with pytest.raises(TypeError, match=r"x has dtype float32 but ODConv2d's parameters are "
                                        r"float64"):
        layer(np.zeros((2, 3, 5, 5), np.float32))
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 5))
    x[0, 1, 2, 3] = np.inf
    with pytest.raises(ValueError, match=r"x contains 1 non-finite value\(s\); the first is inf "
                                         r"at index \(0, 1, 2, 3\)"):
        layer(x)
    y = layer(np.random.default_rng(1).standard_normal((2, 3, 5, 5)))
    dy = np.ones_like(y)
    dy[1, 3, 4, 4] = np.nan
    with pytest.raises(ValueError, match=r"dy contains 1 non-finite value\(s\); the first is nan"):
        layer.backward(dy)
    for kwargs, error, message in (
            (dict(backend="cuda"), ValueError, r"ODConv2d runs on a host backend"),
            (dict(num_kernels=0), ValueError, r"num_kernels must be a positive int"),
            (dict(reduction=0), ValueError, r"reduction must be finite and in \(0, inf\)"),
            (dict(groups=2), ValueError, r"groups=2 must divide"),
            (dict(eps=0), ValueError, r"eps must be finite and in \(0, inf\)"),
            (dict(momentum=2), ValueError, r"momentum must be finite and in \[0, 1\]"),
            (dict(temperature=-1), ValueError, r"temperature \(tau\)"),
            (dict(dtype=np.int32), TypeError, r"dtype must be float32 or float64")):
        with pytest.raises(error, match=message):
            ODConv2d(3, 4, 3, **kwargs)
