"""Sequential and Residual: chained and fanned-out gradients, indexing, mode switch, errors."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from dynconv_np import gradcheck
from dynconv_np.nn import (BatchNorm2d, Conv2d, Dropout, Flatten, Linear, MaxPool2d, ReLU,
                           Residual, Sequential, SqueezeExcite)


def _conv(c_in, c_out, k, seed, **kw):
    return Conv2d(c_in, c_out, k, backend="numpy", dtype=np.float64, rng=seed, **kw)


# End-to-end wiring checks: every layer's gradient is checked element by element in its own
# test module, so here a few drawn networks and a random subset of elements per input suffice.
WIRING = dict(max_elements=24)


@settings(max_examples=5)
@given(seed=st.integers(0, 2**16))
def test_sequential_backward_matches_finite_differences(seed):
    net = Sequential(_conv(2, 3, 3, seed, padding=1), BatchNorm2d(3, dtype=np.float64), ReLU(),
                     MaxPool2d(2), Flatten(), Linear(12, 4, dtype=np.float64, rng=seed))
    x = np.random.default_rng(seed).standard_normal((3, 2, 4, 4))
    # Smooth except at ReLU and max-pool kinks, which central differences straddle with
    # probability ~eps per element: default tolerances (round-off level) apply.
    report = gradcheck(net, x, **WIRING)
    assert len(report.results) == 1 + 6  # x, conv w/b, bn w/b, linear w/b


def test_sequential_is_the_composition_of_its_layers():
    layers = [Linear(4, 5, dtype=np.float64, rng=0), ReLU(), Linear(5, 2, dtype=np.float64, rng=1)]
    net = Sequential(*layers)
    x = np.random.default_rng(0).standard_normal((3, 4))
    expected = x
    for layer in layers:
        expected = layer.forward(expected)
    np.testing.assert_array_equal(net.forward(x), expected)
    assert len(net) == 3 and net[2] is layers[2] and list(net) == layers
    assert net.children() == layers
    assert [name for name, _ in net.named_children()] == ["0", "1", "2"]
    assert isinstance(net[1:], Sequential) and net[1:].layers == layers[1:]
    assert [name for name, _, _ in net.named_parameters()] == ["0.weight", "0.bias",
                                                               "2.weight", "2.bias"]


def test_empty_sequential_is_the_identity():
    x = np.ones((2, 3))
    net = Sequential()
    np.testing.assert_array_equal(net.forward(x), x)
    np.testing.assert_array_equal(net.backward(2 * x), 2 * x)


def test_identity_residual_adds_the_upstream_gradient_to_the_body_gradient():
    body = Linear(4, 4, dtype=np.float64, rng=0)
    block = Residual(body)
    x = np.random.default_rng(0).standard_normal((3, 4))
    dy = np.random.default_rng(1).standard_normal((3, 4))
    w, b = body.params["weight"], body.params["bias"]
    np.testing.assert_allclose(block.forward(x), x @ w.T + b + x, rtol=1e-15)
    dx = block.backward(dy)
    np.testing.assert_allclose(dx, dy @ w + dy, rtol=1e-14)  # dx = dbody + dy
    np.testing.assert_allclose(body.grads["weight"], dy.T @ x, rtol=1e-14)
    assert block.children() == [body]
    assert block.named_children() == [("body", body)]
    projection = Residual(body, Linear(4, 4, dtype=np.float64, rng=1))
    assert [name for name, _ in projection.named_children()] == ["body", "shortcut"]
    assert [name for name, _, _ in projection.named_parameters()] == [
        "body.weight", "body.bias", "shortcut.weight", "shortcut.bias"]


@pytest.mark.parametrize("projection", [False, True], ids=["identity", "projection"])
@settings(max_examples=5)
@given(seed=st.integers(0, 2**16))
def test_residual_backward_matches_finite_differences(projection, seed):
    if projection:  # a downsampling block: both branches halve the map and change channels
        body = Sequential(_conv(2, 4, 3, seed, stride=2, padding=1), ReLU(),
                          _conv(4, 4, 3, seed + 1, padding=1))
        block = Residual(body, _conv(2, 4, 1, seed + 2, stride=2))
    else:
        block = Residual(Sequential(_conv(2, 2, 3, seed, padding=1), ReLU(),
                                    SqueezeExcite(2, dtype=np.float64, rng=seed)))
    x = np.random.default_rng(seed).standard_normal((2, 2, 4, 4))
    gradcheck(block, x, **WIRING)  # tolerances as in the Sequential test


def test_residual_branches_must_agree_in_shape():
    block = Residual(_conv(2, 3, 1, 0))
    with pytest.raises(ValueError, match=r"body\(x\) and x \(identity shortcut\) of one shape.*"
                                         r"\(1, 3, 2, 2\) and \(1, 2, 2, 2\)"):
        block.forward(np.ones((1, 2, 2, 2)))
    with pytest.raises(ValueError, match=r"body\(x\) and shortcut\(x\)"):
        Residual(_conv(2, 3, 1, 0), _conv(2, 3, 1, 0, stride=2)).forward(np.ones((1, 2, 4, 4)))


def test_containers_only_accept_modules():
    with pytest.raises(TypeError, match=r"Sequential layer 1 must be a dynconv_np.nn.Module; "
                                        r"received function"):
        Sequential(ReLU(), lambda x: x)
    with pytest.raises(TypeError, match=r"body must be a dynconv_np.nn.Module"):
        Residual("conv")
    with pytest.raises(TypeError, match=r"shortcut must be a dynconv_np.nn.Module"):
        Residual(ReLU(), shortcut=lambda x: x)


def test_train_and_eval_switch_every_layer_below():
    bn, drop = BatchNorm2d(2, dtype=np.float64), Dropout(0.5, rng=0)
    net = Sequential(Residual(Sequential(bn, drop), _conv(2, 2, 1, 0)), ReLU())
    net.eval()
    assert not any(module.training for module in net.modules())
    x = np.random.default_rng(0).standard_normal((2, 2, 3, 3))
    bn.buffers["running_mean"][...] = [1.0, -1.0]
    y = net.forward(x)
    inner = (x - np.array([1.0, -1.0])[None, :, None, None]) / np.sqrt(1 + 1e-5)
    shortcut = net[0].shortcut
    expected = np.maximum(inner + shortcut.forward(x), 0)
    np.testing.assert_allclose(y, expected, rtol=1e-14)
    net.train()
    assert all(module.training for module in net.modules())
    assert [name for name, _ in net.named_buffers()] == ["0.body.0.running_mean",
                                                         "0.body.0.running_var"]
