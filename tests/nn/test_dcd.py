"""DCDConv2d (nn/dcd.py): gradients in training and eval mode, the running statistics and the
eval output against an own PyTorch implementation with torch's BatchNorm semantics, the
official sizes (L = floor(sqrt(C_in)), S), the layer contract (calls matched to caches, state
dict), the cost accounting and constructor errors (its ``verify`` rows:
tests/test_verify_family.py)."""
import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

from dynconv_np import gradcheck
from dynconv_np.nn import DCDConv2d
from dynconv_np.nn.dcd import dcd_sizes, extra_costs

from ..functional.test_dcd import dcd_configs, torch_dcd, trainable

HOST_BACKENDS = ["numpy", "loops", "numba"]


def make_layer(c, backend="numpy", dtype=np.float64, seed=0):
    layer = DCDConv2d(c["in_channels"], c["out_channels"], c["kernel"], stride=c["stride"],
                      padding=c["padding"], dilation=c["dilation"], groups=c["groups"],
                      bias=c["bias"], latent_dim=c["latent"], squeeze=c["squeeze"],
                      backend=backend, dtype=dtype, rng=seed)
    layer.params["phi_weight"] *= 3  # Phi and lambda far from their resting values
    layer.params["scale_weight"] *= 3
    rng = np.random.default_rng(seed + 1)  # the BatchNorms' gamma and beta off their (1, 0) start
    for bn in ("bn1", "bn2"):
        layer.params[f"{bn}_weight"][...] = 1 + 0.5 * rng.standard_normal(c["latent"])
        layer.params[f"{bn}_bias"][...] = rng.standard_normal(c["latent"])
    return layer


def make_x(c, seed, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal((c["n"], c["in_channels"]) + c["size"]) \
        .astype(dtype)


def randomise_buffers(layer, seed):
    rng = np.random.default_rng(seed)
    for name, value in layer.buffers.items():
        value[...] = (0.5 + rng.random(value.shape)) if name.endswith("var") else \
            rng.standard_normal(value.shape)


@settings(max_examples=12)
@pytest.mark.parametrize("mode", ["train", "eval"])
@given(config=dcd_configs(), seed=st.integers(0, 2**16))
def test_layer_backward_matches_finite_differences(mode, config, seed):
    """dx and every parameter's accumulated gradient, float64, in both modes (eval: drawn
    running statistics)."""
    assume(mode == "eval" or trainable(config))
    layer = make_layer(config, seed=seed)
    if mode == "eval":
        randomise_buffers(layer, seed)
        layer.eval()
    report = gradcheck(layer, make_x(config, seed))
    assert {r.name for r in report.results} == {"x", *layer.params}


def test_sizes_follow_the_official_conv_dy():
    """L = int(sqrt(C_in)), S = max(C_in, L^2) // 16 (conv_dy), floored at 4."""
    assert dcd_sizes(64) == (8, 4)
    assert dcd_sizes(256) == (16, 16)
    assert dcd_sizes(512) == (22, 32)
    assert dcd_sizes(3) == (1, 4)                        # conv_dy alone would give S = 0
    assert dcd_sizes(100, latent_dim=5, squeeze=7) == (5, 7)
    assert dcd_sizes(64, reduction=4, min_squeeze=1) == (8, 16)
    layer = DCDConv2d(64, 32, 3)
    assert (layer.latent_dim, layer.squeeze, layer.padding) == (8, 4, (1, 1))
    assert layer.params["phi_weight"].shape == (64, 4) and "bias" not in layer.params
    for bn in ("bn1", "bn2"):
        np.testing.assert_array_equal(layer.params[f"{bn}_weight"], 1)
        np.testing.assert_array_equal(layer.buffers[f"{bn}_running_var"], 1)


def test_running_statistics_and_eval_output_match_torch():
    """Two training steps (running statistics updated as torch's BatchNorm does, momentum 0.1,
    unbiased variance), then eval: buffers, outputs and the eval gradients equal those of an
    own torch implementation of conv_dy with the same parameters (float64)."""
    torch = pytest.importorskip(
        "torch", reason="the cross-check runs our PyTorch version of the formula")
    c = dict(n=3, in_channels=5, out_channels=4, kernel=(3, 3), stride=2, padding=(1, 1),
             dilation=1, groups=1, size=(6, 5), bias=True, latent=2, squeeze=3)
    layer = make_layer(c, seed=4)
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in layer.params.items()}
    tb = {k: torch.tensor(v.copy()) for k, v in layer.buffers.items()}
    for step in range(2):
        x = make_x(c, step)
        y = layer(x)
        ty = torch_dcd(torch, torch.tensor(x), tp, tb, c, training=True)
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
    ty = torch_dcd(torch, tx, tp, tb, c, training=False)
    ty.backward(torch.tensor(dy))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-10, atol=1e-10)
    for name, grad in layer.grads.items():
        np.testing.assert_allclose(grad, tp[name].grad.numpy(), rtol=1e-9, atol=1e-9,
                                   err_msg=name)


def test_eval_mode_keeps_buffers_and_training_updates_them():
    c = dict(n=2, in_channels=4, out_channels=4, kernel=(1, 1), stride=1, padding=(0, 0),
             dilation=1, groups=1, size=(3, 3), bias=False, latent=2, squeeze=2)
    layer = make_layer(c)
    layer.eval()
    layer(make_x(c, 0))
    np.testing.assert_array_equal(layer.buffers["bn1_running_mean"], 0)
    layer.train()
    layer(make_x(c, 0))
    assert np.abs(layer.buffers["bn1_running_mean"]).max() > 0
    assert set(layer.attention) == {"lambda", "phi"}
    assert layer.attention["phi"].shape == (2, 2, 2)


def test_a_layer_called_twice_accumulates_both_gradients():
    """Two forwards then two backwards (reverse order): the gradients are the sum of each
    call's, and dx matches each call's own."""
    c = dict(n=2, in_channels=4, out_channels=3, kernel=(3, 3), stride=1, padding=(1, 1),
             dilation=1, groups=1, size=(4, 4), bias=True, latent=2, squeeze=2)
    layer = make_layer(c)
    xs = [make_x(c, 1), make_x(c, 2)]
    dys = [np.random.default_rng(s).standard_normal((2, 3, 4, 4)) for s in (3, 4)]
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
    c = dict(n=2, in_channels=4, out_channels=2, kernel=(3, 3), stride=1, padding=(1, 1),
             dilation=1, groups=2, size=(4, 3), bias=True, latent=2, squeeze=3)
    layer = make_layer(c, seed=1)
    layer(make_x(c, 0))
    layer.eval()
    state = layer.state_dict()
    assert {"bn1_running_mean", "bn2_running_var", "q_weight", "bias"} <= set(state)
    other = make_layer(c, seed=2).eval()
    other.load_state_dict(state)
    x = make_x(c, 5)
    np.testing.assert_array_equal(other(x), layer(x))


@pytest.mark.parametrize("backend", ["loops", "numba"])
def test_cpu_backends_agree_in_float32(backend):
    c = dict(n=2, in_channels=6, out_channels=4, kernel=(3, 3), stride=2, padding=(2, 2),
             dilation=2, groups=2, size=(7, 6), bias=True, latent=2, squeeze=2)
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
    """A 3x3 stride-2 layer 16 -> 32 at 32 x 32 (L = 4, S = 4), by hand."""
    layer = DCDConv2d(16, 32, 3, stride=2)
    costs = extra_costs(layer, (2, 16, 32, 32))
    pixels = 16 * 16
    assert costs["output_shape"] == (2, 32, 16, 16)
    assert costs["conv"] == 2 * 32 * pixels * 16 * 9
    assert costs["attention_pool"] == 2 * 16 * 32 * 32
    assert costs["attention_fc"] == 2 * (16 * 4 + 4 * 4 + 4 * 16 + 4 * 32)
    assert costs["aggregation"] == 2 * (16 * 4 + 16 + 4 * 32 + 32) * pixels
    assert costs["params"] == sum(p.size for p in layer.params.values())
    assert costs["extra_params"] == 16 * 4 + 32 * 4 + 16 * 4 + 16 + 16 * 4 + 32 * 4 + 4 * 4
    assert sum(costs["breakdown"].values()) == costs["attention_fc"] + costs["aggregation"]
    assert extra_costs(layer, (16, 32, 32))["conv"] == costs["conv"] // 2
    with pytest.raises(ValueError, match=r"input_shape must be \(C, H, W\) or \(N, C, H, W\).*"
                                         r"C = 16"):
        extra_costs(layer, (3, 32, 32))


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(padding=0), ValueError, r"DCD supports only 'same' padding.*received padding=0"),
    (dict(kernel_size=2), ValueError, r"DCD needs odd kernel sides"),
    (dict(groups=3), ValueError, r"groups=3 must divide in_channels"),
    (dict(latent_dim=0), ValueError, r"latent_dim must be a positive int"),
    (dict(squeeze=1.5), ValueError, r"squeeze must be a positive int"),
    (dict(reduction=0), ValueError, r"reduction must be a positive int"),
    (dict(eps=0.0), ValueError, r"eps must be finite and in \(0, inf\)"),
    (dict(momentum=2.0), ValueError, r"momentum must be finite and in \[0, 1\]"),
    (dict(bias=1), TypeError, r"bias must be True or False"),
    (dict(backend="cuda"), ValueError, r"DCDConv2d runs on a host backend"),
    (dict(dtype=np.int32), TypeError, r"dtype must be float32 or float64"),
    (dict(in_channels=0), ValueError, r"in_channels must be a positive int"),
])
def test_constructor_errors_are_named(kwargs, error, message):
    args = dict(in_channels=4, out_channels=4, kernel_size=3) | kwargs
    with pytest.raises(error, match=message):
        DCDConv2d(**args)


def test_forward_and_backward_errors_are_named():
    layer = DCDConv2d(4, 4, 3, backend="numpy", dtype=np.float64)
    with pytest.raises(ValueError, match=r"x must have 4 channels"):
        layer(np.zeros((2, 3, 4, 4)))
    with pytest.raises(TypeError, match=r"x has dtype float32 but DCDConv2d's parameters are "
                                        r"float64"):
        layer(np.zeros((2, 4, 4, 4), np.float32))
    with pytest.raises(ValueError, match=r"needs N H_out W_out > 1"):
        layer(np.zeros((1, 4, 1, 1)))
    layer.eval()
    layer(np.zeros((1, 4, 1, 1)))  # eval mode: running statistics, any batch
    with pytest.raises(ValueError, match=r"dy must have the shape of the forward output"):
        layer.backward(np.zeros((1, 4, 1, 2)))
    layer.buffers["bn2_running_var"][0] = -1.0
    with pytest.raises(ValueError, match=r"bn2_running_var must be >= 0"):
        layer(np.zeros((1, 4, 2, 2)))
