"""CondConvRouting, CondConv2d and CondConvBlock: gradients (own routing, and one routing shared
by the expand, depthwise and project convolutions of a block), the backends against NumPy, an
own PyTorch implementation, the module contract, cost accounting and errors."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from dynconv_np import gradcheck
from dynconv_np.nn import (BatchNorm2d, CondConv2d, CondConvBlock, CondConvRouting, ReLU,
                           Residual, Sequential, is_dynamic)
from dynconv_np.nn.condconv import extra_costs

from ..functional.test_condconv import torch_condconv2d, torch_condconv_routing
from ..strategies import conv_configs


def _layer(c, experts, backend="numpy", dtype=np.float64, seed=0, routing=None):
    layer = CondConv2d(c["in_channels"], c["out_channels"], c["kernel"], stride=c["stride"],
                       padding=c["padding"], dilation=c["dilation"], groups=c["groups"],
                       bias=c["bias"], num_experts=experts, routing=routing, backend=backend,
                       dtype=dtype, rng=seed)
    if routing is None:
        layer.routing.params["weight"] *= 4  # spread r over (0, 1)
    return layer


def _input(c, seed, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal((c["n"], c["in_channels"]) + c["size"]) \
        .astype(dtype)


def _block(c_in, expand, stride, experts, backend="numpy", dtype=np.float64, seed=0,
           batchnorm=True):
    """EfficientNet-CondConv's MBConv body: 1x1 expand, 3x3 depthwise (stride), 1x1 project,
    the three CondConv2d sharing one routing computed from the block input."""
    rng = np.random.default_rng(seed)
    routing = CondConvRouting(c_in, experts, backend=backend, dtype=dtype, rng=rng)
    routing.params["weight"] *= 4
    mid = c_in * expand
    make = lambda *a, **k: CondConv2d(*a, num_experts=experts, routing=routing, bias=False,  # noqa
                                      backend=backend, dtype=dtype, rng=rng, **k)
    norm = (lambda c: [BatchNorm2d(c, dtype=dtype)]) if batchnorm else (lambda c: [])
    layers = [make(c_in, mid, 1), *norm(mid), ReLU(),
              make(mid, mid, 3, stride=stride, padding=1, groups=mid), *norm(mid), ReLU(),
              make(mid, c_in, 1), *norm(c_in)]
    return CondConvBlock(routing, *layers)


# -- gradients -----------------------------------------------------------------------------------
@given(config=conv_configs(), experts=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_condconv2d_backward_matches_finite_differences(config, experts, seed):
    """Own routing: dx sums the convolution's and the routing's paths; every parameter,
    "routing.weight" and "routing.bias" included."""
    layer = _layer(config, experts, seed=seed)
    report = gradcheck(layer, _input(config, seed))
    assert {r.name for r in report.results} == {"x", "weight", "routing.weight",
                                                "routing.bias"} | ({"bias"} if config["bias"]
                                                                   else set())


@settings(max_examples=10)
@given(c_in=st.integers(1, 3), expand=st.integers(1, 3), stride=st.integers(1, 2),
       experts=st.integers(1, 3), batchnorm=st.booleans(), seed=st.integers(0, 2**16))
def test_a_block_sharing_one_routing_matches_finite_differences(c_in, expand, stride, experts,
                                                                batchnorm, seed):
    """One r from the block input feeds three convolutions: dr is the sum of their routing
    gradients, backpropagated once through the routing (dx gets its pooling path). With the
    skip connection (stride 1) x reaches y along five paths."""
    block = _block(c_in, expand, stride, experts, seed=seed, batchnorm=batchnorm)
    model = Residual(block) if stride == 1 else block
    x = np.random.default_rng(seed).standard_normal((3, c_in, 5, 6))
    report = gradcheck(model, x)
    prefix = "body." if stride == 1 else ""
    names = {r.name for r in report.results}
    assert {f"{prefix}routing.weight", f"{prefix}routing.bias", f"{prefix}0.weight"} <= names
    assert not any("0.routing" in name for name in names)  # the layers list only their experts


def test_an_own_routing_layer_used_twice_accumulates_both_calls():
    """Per-call caches: the same layer (and its routing child) twice in a row."""
    layer = CondConv2d(3, 3, 3, padding=1, num_experts=3, backend="numpy", dtype=np.float64,
                       rng=0)
    gradcheck(Sequential(layer, ReLU(), layer), np.random.default_rng(1).standard_normal(
        (2, 3, 4, 4)))


# -- the backends ---------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["numba", "loops"])
@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-10), (np.float32, 2e-4)])
@given(config=conv_configs(), experts=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_backends_agree_with_the_numpy_reference(backend, dtype, rtol, config, experts, seed):
    """Same layer, same input: y, r, dx and every parameter gradient (tolerances as in
    tests/functional/test_condconv.py)."""
    layers = {b: _layer(config, experts, backend=b, dtype=dtype, seed=seed)
              for b in ("numpy", backend)}
    x = _input(config, seed, dtype)
    ys = {b: layer.forward(x) for b, layer in layers.items()}
    dy = np.random.default_rng(seed + 1).standard_normal(ys["numpy"].shape).astype(dtype)
    dxs = {b: layer.backward(dy) for b, layer in layers.items()}
    pairs = [("y", ys), ("dx", dxs),
             ("r", {b: layer.routing_weights for b, layer in layers.items()})]
    pairs += [(name, {b: grad for b, layer in layers.items()
                      for n, _, grad in layer.named_parameters() if n == name})
              for name, _, _ in layers["numpy"].named_parameters()]
    for name, values in pairs:
        assert values[backend].dtype == dtype, name
        scale = max(1.0, float(np.abs(values["numpy"]).max()))
        np.testing.assert_allclose(values[backend], values["numpy"], rtol=rtol,
                                   atol=rtol * scale, err_msg=name)


@pytest.mark.parametrize("backend", ["numba", "loops"])
def test_a_block_agrees_across_backends(backend):
    x = np.random.default_rng(3).standard_normal((2, 3, 6, 5))
    blocks = {b: _block(3, 2, 2, 3, backend=b, seed=4) for b in ("numpy", backend)}
    ys = {b: blk(x) for b, blk in blocks.items()}
    dy = np.random.default_rng(5).standard_normal(ys["numpy"].shape)
    dxs = {b: blk.backward(dy) for b, blk in blocks.items()}
    np.testing.assert_allclose(ys[backend], ys["numpy"], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(dxs[backend], dxs["numpy"], rtol=1e-10, atol=1e-10)
    grads = {b: {n: g for n, _, g in blk.named_parameters()} for b, blk in blocks.items()}
    for name, grad in grads["numpy"].items():
        np.testing.assert_allclose(grads[backend][name], grad, rtol=1e-10, atol=1e-10,
                                   err_msg=name)


# -- PyTorch ---------------------------------------------------------------------------------------
def test_layer_and_shared_block_match_an_own_pytorch_implementation():
    """float64: a CondConv2d with own routing, and a block (expand 1x1 -> ReLU -> depthwise 3x3
    stride 2 -> ReLU -> project 1x1) whose three convolutions share r = sigmoid(GAP(x) R^T +
    b_r): outputs, dx and every gradient; max error ~1e-15, asserted at 1e-12."""
    torch = pytest.importorskip(
        "torch", reason="the cross-check runs our PyTorch version of the formula")
    import torch.nn.functional as F
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 3, 6, 5))
    tx = lambda a: torch.tensor(a, requires_grad=True)  # noqa: E731

    layer = CondConv2d(3, 4, (3, 2), stride=(1, 2), padding=1, dilation=(2, 1), num_experts=3,
                       backend="numpy", dtype=np.float64, rng=1)
    y = layer(x)
    dy = rng.standard_normal(y.shape)
    dx = layer.backward(dy)
    t = {name: tx(value) for name, value, _ in layer.named_parameters()}
    t_x = tx(x)
    r = torch_condconv_routing(t_x, t["routing.weight"], t["routing.bias"])
    y_t = torch_condconv2d(t_x, r, t["weight"], t["bias"], (1, 2), 1, (2, 1), 1)
    y_t.backward(torch.tensor(dy))
    np.testing.assert_allclose(y, y_t.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, t_x.grad.numpy(), rtol=1e-12, atol=1e-12)
    for name, _, grad in layer.named_parameters():
        np.testing.assert_allclose(grad, t[name].grad.numpy(), rtol=1e-12, atol=1e-12,
                                   err_msg=name)

    block = _block(3, 2, 2, 3, seed=2, batchnorm=False)
    y = block(x)
    dy = rng.standard_normal(y.shape)
    dx = block.backward(dy)
    t = {name: tx(value) for name, value, _ in block.named_parameters()}
    t_x = tx(x)
    r = torch_condconv_routing(t_x, t["routing.weight"], t["routing.bias"])
    h = F.relu(torch_condconv2d(t_x, r, t["0.weight"], None, 1, 0, 1, 1))
    h = F.relu(torch_condconv2d(h, r, t["2.weight"], None, 2, 1, 1, 6))
    y_t = torch_condconv2d(h, r, t["4.weight"], None, 1, 0, 1, 1)
    y_t.backward(torch.tensor(dy))
    np.testing.assert_allclose(y, y_t.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, t_x.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(block.routing_weights, r.detach().numpy(), rtol=1e-12)
    for name, _, grad in block.named_parameters():
        np.testing.assert_allclose(grad, t[name].grad.numpy(), rtol=1e-12, atol=1e-12,
                                   err_msg=name)


# -- the module contract --------------------------------------------------------------------------
def test_params_names_shapes_and_initialisation():
    layer = CondConv2d(8, 6, (3, 5), groups=2, num_experts=4, rng=0)
    shapes = {name: value.shape for name, value, _ in layer.named_parameters()}
    assert shapes == {"weight": (4, 6, 4, 3, 5), "bias": (4, 6), "routing.weight": (4, 8),
                      "routing.bias": (4,)}
    bound = 1 / np.sqrt(4 * 3 * 5)
    assert 0.9 * bound < np.abs(layer.params["weight"]).max() <= bound
    assert not np.allclose(layer.params["weight"][0], layer.params["weight"][1])
    assert all(v.dtype == np.float32 for v, in [(p,) for p in layer.parameters()])
    assert CondConv2d(3, 3, 1).num_experts == 8
    assert "bias" not in CondConv2d(3, 3, 1, bias=False, routing_bias=False).routing.params
    assert not is_dynamic(layer)  # no temperature: schedules leave it alone


def test_routing_weights_are_independent_sigmoids():
    layer = CondConv2d(3, 4, 3, padding=1, num_experts=5, backend="numpy", rng=0)
    layer.routing.params["weight"] *= 10
    layer(np.random.default_rng(0).standard_normal((6, 3, 5, 5)).astype(np.float32))
    r = layer.routing_weights
    assert r.shape == (6, 5) and np.all((r > 0) & (r < 1))
    assert not np.allclose(r.sum(axis=1), 1.0)  # no sum-to-one constraint


def test_state_dict_round_trip_and_grads_accumulate():
    block = _block(2, 2, 1, 3, seed=0)
    names = set(block.state_dict())
    assert {"routing.weight", "routing.bias", "0.weight", "3.weight", "6.weight",
            "1.running_mean"} <= names
    other = _block(2, 2, 1, 3, seed=9)
    other.load_state_dict(block.state_dict())
    x = np.random.default_rng(1).standard_normal((3, 2, 4, 4))
    np.testing.assert_array_equal(other(x), block(x))
    dy = np.random.default_rng(2).standard_normal((3, 2, 4, 4))
    block.backward(dy)
    once = {n: g.copy() for n, _, g in block.named_parameters()}
    block(x)
    block.backward(dy)
    for name, _, grad in block.named_parameters():
        np.testing.assert_allclose(grad, 2 * once[name], rtol=1e-12, err_msg=name)
    block.zero_grad()
    assert all(not g.any() for _, _, g in block.named_parameters())


# -- costs -----------------------------------------------------------------------------------------
def test_extra_costs_follow_the_formulas():
    layer = CondConv2d(8, 16, 3, stride=2, padding=1, groups=2, num_experts=4, rng=0)
    costs = extra_costs(layer, (2, 8, 10, 10))
    per_kernel = 16 * 4 * 9 + 16
    assert costs == dict(output_shape=(2, 16, 5, 5), params=4 * per_kernel + 4 * 8 + 4,
                         extra_params=3 * per_kernel + 4 * 8 + 4, conv=2 * 16 * 25 * 4 * 9,
                         attention_pool=2 * 8 * 100, attention_fc=2 * 8 * 4,
                         aggregation=2 * 4 * per_kernel)
    routing = CondConvRouting(8, 4, bias=False)
    shared = CondConv2d(8, 16, 1, bias=False, num_experts=4, routing=routing)
    costs = extra_costs(shared, (1, 8, 10, 10))
    assert costs["attention_pool"] == costs["attention_fc"] == 0
    assert costs["aggregation"] == 4 * 16 * 8 and costs["params"] == 4 * 16 * 8
    assert extra_costs(routing, (1, 8, 10, 10)) == dict(
        output_shape=(1, 4), params=32, extra_params=32, conv=0, attention_pool=800,
        attention_fc=32, aggregation=0)
    with pytest.raises(ValueError, match=r"CondConv2d takes 8 channels; input_shape has 3"):
        extra_costs(layer, (1, 3, 8, 8))
    with pytest.raises(TypeError, match=r"extra_costs counts CondConv2d and CondConvRouting"):
        extra_costs(ReLU(), (1, 3, 8, 8))


# -- errors ----------------------------------------------------------------------------------------
def test_routing_errors_are_named():
    routing = CondConvRouting(4, 3, dtype=np.float64)
    shared = CondConv2d(4, 4, 1, num_experts=3, routing=routing, dtype=np.float64)
    x = np.zeros((2, 4, 3, 3))
    with pytest.raises(ValueError, match=r"this CondConv2d shares its routing: pass the routing "
                                         r"weights"):
        shared(x)
    with pytest.raises(ValueError, match=r"routing must have shape \(2, 3\); received \(2, 4\)"):
        shared.forward(x, np.ones((2, 4)))
    own = CondConv2d(4, 4, 1, num_experts=3, dtype=np.float64)
    with pytest.raises(ValueError, match=r"computes its own routing from x"):
        own.forward(x, np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"the shared routing has 3 experts \(float64\); this "
                                         r"layer needs num_experts=4"):
        CondConv2d(4, 4, 1, num_experts=4, routing=routing, dtype=np.float64)
    with pytest.raises(TypeError, match=r"routing must be None \(own routing\) or a "
                                        r"CondConvRouting"):
        CondConv2d(4, 4, 1, routing="shared")
    with pytest.raises(ValueError, match=r"shares another CondConvRouting"):
        CondConvBlock(CondConvRouting(4, 3, dtype=np.float64), shared)
    with pytest.raises(ValueError, match=r"layer 0 contains a CondConv2d with shared routing "
                                         r"\(0\.\); make it a direct layer"):
        CondConvBlock(routing, Sequential(shared))
    with pytest.raises(TypeError, match=r"routing must be a CondConvRouting"):
        CondConvBlock(shared)
    with pytest.raises(TypeError, match=r"CondConvBlock layer 0 must be a dynconv_np.nn.Module"):
        CondConvBlock(routing, lambda h: h)


def test_bad_inputs_and_arguments_are_named():
    layer = CondConv2d(3, 4, 3, padding=1, num_experts=2, backend="numpy", dtype=np.float64)
    with pytest.raises(ValueError, match=r"x must have 3 channels"):
        layer(np.zeros((2, 4, 5, 5)))
    with pytest.raises(TypeError, match=r"x has dtype float32 but CondConv2d's parameters are "
                                        r"float64"):
        layer(np.zeros((2, 3, 5, 5), np.float32))
    x = np.zeros((2, 3, 5, 5))
    x[1, 2, 3, 4] = np.nan
    with pytest.raises(ValueError, match=r"x contains 1 non-finite value\(s\); the first is nan "
                                         r"at index \(1, 2, 3, 4\)"):
        layer(x)
    y = layer(np.zeros((2, 3, 5, 5)))
    dy = np.ones_like(y)
    dy[0, 1, 2, 2] = np.inf
    with pytest.raises(ValueError, match=r"dy contains 1 non-finite value\(s\); the first is inf"):
        layer.backward(dy)
    with pytest.raises(ValueError, match=r"CondConv2d.backward called without a matching forward"):
        CondConv2d(3, 4, 1).backward(np.zeros((1, 4, 2, 2), np.float32))
    for kwargs, error, message in ((dict(num_experts=0), ValueError, r"num_experts must be a "
                                                                     r"positive int"),
                                   (dict(groups=2), ValueError, r"groups=2 must divide"),
                                   (dict(bias=1), TypeError, r"bias must be True or False"),
                                   (dict(dtype="float16"), TypeError, r"dtype must be float32"),
                                   (dict(backend="torch"), ValueError, r"backend must be one of")):
        with pytest.raises(error, match=message):
            CondConv2d(3, 4, 3, **kwargs)
