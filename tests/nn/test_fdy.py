"""FDYConv2d (nn/fdy.py): gradients in training and eval mode, the running statistics and the
eval output against an own PyTorch implementation with torch's BatchNorm semantics, the
official defaults (K = 4, tau = 31, hidden = max(C_in // 4, 4), no bias), the layer contract
(temperature, attention, calls matched to caches, state dict), the cost accounting and
constructor errors (its ``verify`` rows: tests/test_verify_family.py)."""
import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

from dynconv_np import gradcheck
from dynconv_np.nn import FDYConv2d, is_dynamic
from dynconv_np.nn.fdy import extra_costs

from ..functional.test_fdy import fdy_configs, torch_fdy, trainable
from ..strategies import temperatures

HOST_BACKENDS = ["numpy", "loops", "numba"]


def make_layer(c, tau=1.0, backend="numpy", dtype=np.float64, seed=0):
    layer = FDYConv2d(c["in_channels"], c["out_channels"], c["kernel"], stride=c["stride"],
                      padding=c["padding"], dilation=c["dilation"], groups=c["groups"],
                      bias=c["bias"], num_kernels=c["k"], temperature=tau, hidden=c["hidden"],
                      backend=backend, dtype=dtype, rng=seed)
    layer.params["conv2_weight"] *= 4  # pi far from uniform, so its gradient is not tiny
    rng = np.random.default_rng(seed + 1)  # BatchNorm's gamma and beta off their (1, 0) start:
    layer.params["bn_weight"][...] = 1 + 0.5 * rng.standard_normal(c["hidden"])
    layer.params["bn_bias"][...] = rng.standard_normal(c["hidden"])  # beta = 0 sits on ReLU's
    return layer                                    # kink when the branch input is constant


def make_x(c, seed, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal((c["n"], c["in_channels"]) + c["size"]) \
        .astype(dtype)


@settings(max_examples=12)
@pytest.mark.parametrize("mode", ["train", "eval"])
@given(config=fdy_configs(), tau=temperatures, seed=st.integers(0, 2**16))
def test_layer_backward_matches_finite_differences(mode, config, tau, seed):
    assume(mode == "eval" or trainable(config))
    layer = make_layer(config, tau, seed=seed)
    rng = np.random.default_rng(seed)
    if mode == "eval":
        layer.buffers["bn_running_mean"][...] = rng.standard_normal(config["hidden"])
        layer.buffers["bn_running_var"][...] = 0.5 + rng.random(config["hidden"])
        layer.eval()
    report = gradcheck(layer, make_x(config, seed))
    assert {r.name for r in report.results} == {"x", *layer.params}


def test_defaults_follow_the_official_code():
    layer = FDYConv2d(16, 32, 3, padding=1)
    assert (layer.num_kernels, layer.temperature, layer.hidden) == (4, 31.0, 4)
    assert FDYConv2d(64, 8, 3).hidden == 16
    assert "bias" not in layer.params
    assert layer.params["conv1_weight"].shape == (4, 16, 3)
    assert layer.params["conv2_weight"].shape == (4, 4)
    assert is_dynamic(layer)  # train.schedules would anneal its temperature like DyConv's
    layer.temperature = 5.0
    assert layer.state_dict()["temperature"] == 5.0


def test_running_statistics_and_eval_output_match_torch():
    """Two training steps, then eval: buffers, outputs and the eval gradients equal those of an
    own torch implementation (F.batch_norm's momentum 0.1 and unbiased running variance)."""
    torch = pytest.importorskip(
        "torch", reason="the cross-check runs our PyTorch version of the formula")
    c = dict(n=2, in_channels=5, out_channels=4, kernel=(3, 3), stride=(1, 2), padding=(1, 1),
             dilation=1, groups=1, size=(5, 8), bias=True, k=3, hidden=3)
    layer = make_layer(c, tau=0.8, seed=3)
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in layer.params.items()}
    tb = {k: torch.tensor(v.copy()) for k, v in layer.buffers.items()}
    for step in range(2):
        x = make_x(c, step)
        y = layer(x)
        ty = torch_fdy(torch, torch.tensor(x), tp, tb, 0.8, c, training=True)
        np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-10)
        layer.clear_calls()
    for name, value in layer.buffers.items():
        np.testing.assert_allclose(value, tb[name].numpy(), rtol=1e-12, err_msg=name)
    layer.eval()
    x = make_x(c, 7)
    y = layer(x)
    dy = np.random.default_rng(8).standard_normal(y.shape)
    dx = layer.backward(dy)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch_fdy(torch, tx, tp, tb, 0.8, c, training=False)
    ty.backward(torch.tensor(dy))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-10, atol=1e-10)
    for name, grad in layer.grads.items():
        np.testing.assert_allclose(grad, tp[name].grad.numpy(), rtol=1e-9, atol=1e-9,
                                   err_msg=name)


@given(tau=temperatures)
def test_attention_is_per_frequency_and_the_temperature_flattens_it(tau):
    c = dict(n=2, in_channels=3, out_channels=2, kernel=(3, 3), stride=1, padding=(1, 1),
             dilation=1, groups=1, size=(4, 6), bias=False, k=4, hidden=4)
    layer = make_layer(c, tau).eval()
    layer(make_x(c, 0))
    pi = layer.attention
    assert pi.shape == (2, 4, 6)
    np.testing.assert_allclose(pi.sum(axis=1), 1, rtol=1e-12)
    layer.temperature = 1e6
    layer(make_x(c, 0))
    np.testing.assert_allclose(layer.attention, 0.25, atol=1e-4)


def test_a_layer_called_twice_accumulates_both_gradients():
    c = dict(n=2, in_channels=4, out_channels=3, kernel=(3, 3), stride=1, padding=(1, 1),
             dilation=1, groups=1, size=(4, 5), bias=True, k=2, hidden=2)
    layer = make_layer(c)
    xs = [make_x(c, 1), make_x(c, 2)]
    dys = [np.random.default_rng(s).standard_normal((2, 3, 4, 5)) for s in (3, 4)]
    singles = []
    for x, dy in zip(xs, dys):
        layer.zero_grad()
        layer(x)
        singles.append((layer.backward(dy), {k: v.copy() for k, v in layer.grads.items()}))
    layer.zero_grad()
    for x in xs:
        layer(x)
    dx1 = layer.backward(dys[1])
    dx0 = layer.backward(dys[0])
    np.testing.assert_allclose(dx0, singles[0][0], rtol=1e-12)
    np.testing.assert_allclose(dx1, singles[1][0], rtol=1e-12)
    for name, grad in layer.grads.items():
        np.testing.assert_allclose(grad, singles[0][1][name] + singles[1][1][name], rtol=1e-12,
                                   err_msg=name)


def test_state_dict_round_trip_keeps_the_eval_output():
    c = dict(n=2, in_channels=4, out_channels=2, kernel=(3, 1), stride=1, padding=(1, 0),
             dilation=1, groups=2, size=(4, 3), bias=True, k=3, hidden=2)
    layer = make_layer(c, tau=2.0, seed=1)
    layer(make_x(c, 0))
    layer.eval()
    state = layer.state_dict()
    assert {"bn_running_mean", "bn_running_var", "temperature", "conv1_weight"} <= set(state)
    other = make_layer(c, seed=2).eval()
    other.load_state_dict(state)
    assert other.temperature == 2.0
    x = make_x(c, 5)
    np.testing.assert_array_equal(other(x), layer(x))


@pytest.mark.parametrize("backend", ["loops", "numba"])
def test_cpu_backends_agree_in_float32(backend):
    c = dict(n=2, in_channels=6, out_channels=4, kernel=(3, 3), stride=(1, 2), padding=(1, 2),
             dilation=(1, 2), groups=2, size=(5, 9), bias=True, k=3, hidden=3)
    layers = {b: make_layer(c, backend=b, dtype=np.float32) for b in ("numpy", backend)}
    x = make_x(c, 0, np.float32)
    ys = {b: layer(x) for b, layer in layers.items()}
    dy = np.random.default_rng(1).standard_normal(ys["numpy"].shape).astype(np.float32)
    dxs = {b: layer.backward(dy) for b, layer in layers.items()}
    np.testing.assert_allclose(ys[backend], ys["numpy"], rtol=2e-4, atol=2e-4)
    np.testing.assert_allclose(dxs[backend], dxs["numpy"], rtol=2e-4, atol=2e-4)
    for name in layers["numpy"].grads:
        want = layers["numpy"].grads[name]
        np.testing.assert_allclose(layers[backend].grads[name], want, rtol=2e-4,
                                   atol=2e-4 * max(1, np.abs(want).max()), err_msg=name)


def test_extra_costs_formulas():
    """The official layer 64 -> 64, 3x3, padding 1, K = 4 (hidden 16) on 100 frames x 32 bins."""
    layer = FDYConv2d(64, 64, 3, padding=1)
    costs = extra_costs(layer, (64, 100, 32))
    one = 64 * 100 * 32 * 64 * 9
    assert costs["output_shape"] == (1, 64, 100, 32)
    assert costs["conv"] == one
    assert costs["attention_pool"] == 64 * 100 * 32
    assert costs["attention_fc"] == 16 * 64 * 3 * 32 + 4 * 16 * 32
    assert costs["aggregation"] == 3 * one + 4 * 64 * 100 * 32
    assert costs["params"] == sum(p.size for p in layer.params.values())
    assert costs["extra_params"] == 3 * 64 * 64 * 9 + 16 * 64 * 3 + 2 * 16 + 4 * 16 + 4
    assert sum(costs["breakdown"].values()) == costs["attention_fc"] + costs["aggregation"]
    assert extra_costs(layer, (3, 64, 100, 32))["aggregation"] == 3 * costs["aggregation"]
    with pytest.raises(ValueError, match=r"input_shape must be .* C = 64"):
        extra_costs(layer, (1, 100, 32))


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(num_kernels=0), ValueError, r"num_kernels must be a positive int"),
    (dict(temperature=-1.0), ValueError, r"temperature \(tau\) must be finite and > 0"),
    (dict(groups=3), ValueError, r"groups=3 must divide in_channels"),
    (dict(hidden=0), ValueError, r"hidden must be a positive int"),
    (dict(reduction=0), ValueError, r"reduction must be finite and in \(0, inf\)"),
    (dict(eps=0.0), ValueError, r"eps must be finite and in \(0, inf\)"),
    (dict(momentum=-0.1), ValueError, r"momentum must be finite and in \[0, 1\]"),
    (dict(bias="yes"), TypeError, r"bias must be True or False"),
    (dict(backend="cuda"), ValueError, r"FDYConv2d runs on a host backend"),
    (dict(kernel_size=(3, 0)), ValueError, r"kernel_size must be positive"),
    (dict(dtype="float16"), TypeError, r"dtype must be float32 or float64"),
])
def test_constructor_errors_are_named(kwargs, error, message):
    args = dict(in_channels=4, out_channels=4, kernel_size=3) | kwargs
    with pytest.raises(error, match=message):
        FDYConv2d(**args)


def test_forward_and_backward_errors_are_named():
    layer = FDYConv2d(4, 4, 3, padding=1, backend="numpy", dtype=np.float64)
    with pytest.raises(ValueError, match=r"x must have 4 channels"):
        layer(np.zeros((2, 3, 4, 4)))
    with pytest.raises(TypeError, match=r"x has dtype float32 but FDYConv2d's parameters are "
                                        r"float64"):
        layer(np.zeros((2, 4, 4, 4), np.float32))
    with pytest.raises(ValueError, match=r"needs N F_out > 1"):
        layer(np.zeros((1, 4, 3, 1)))
    with pytest.raises(ValueError, match=r"temperature \(tau\) must be finite and > 0"):
        layer.temperature = 0.0
    layer.eval()
    layer(np.zeros((1, 4, 3, 1)))  # eval mode: running statistics, any batch
    with pytest.raises(ValueError, match=r"dy must have the shape of the forward output"):
        layer.backward(np.zeros((1, 4, 3, 2)))
    layer.buffers["bn_running_var"][0] = -1.0
    with pytest.raises(ValueError, match=r"bn_running_var must be >= 0"):
        layer(np.zeros((1, 4, 3, 3)))
