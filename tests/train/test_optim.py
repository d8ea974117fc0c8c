"""SGD: the update rule (plain, momentum, Nesterov), weight-decay selection, state, errors."""
import numpy as np
import pytest

from dynconv_np.nn import Module
from dynconv_np.train.optim import SGD, decays


class _Norm(Module):
    """Stands in for BatchNorm: 1-D 'weight' and 'bias'."""

    def __init__(self, dtype):
        super().__init__()
        self.add_param("weight", np.ones(3, dtype=dtype))
        self.add_param("bias", np.zeros(3, dtype=dtype))


class _Net(Module):
    """A conv-like 'weight' (2-D), a 'bias', a dynamic-style (K, C_out) 'bias' bank, a norm child."""

    def __init__(self, dtype=np.float64):
        super().__init__()
        self.add_param("weight", np.full((2, 3), 2.0, dtype=dtype))
        self.add_param("bias", np.full(2, 2.0, dtype=dtype))
        self.add_param("fc1_bias", np.full(2, 2.0, dtype=dtype))
        self.add_param("bank_bias", np.full((4, 2), 2.0, dtype=dtype))
        self.norm = _Norm(dtype)

    def children(self):
        return [self.norm]


def _set_grads(net, value):
    for _, _, grad in net.named_parameters():
        grad[...] = value


def test_plain_sgd_step():
    net = _Net()
    _set_grads(net, 0.5)
    SGD(net, lr=0.1).step()
    np.testing.assert_allclose(net.params["weight"], 2.0 - 0.05)
    np.testing.assert_allclose(net.norm.params["weight"], 1.0 - 0.05)


@pytest.mark.parametrize("nesterov", [False, True])
def test_momentum_with_constant_gradient(nesterov):
    # With a constant gradient g the buffer after t steps is v_t = g (1 + mu + ... + mu^(t-1));
    # classical momentum moves by v_t, Nesterov by g + mu v_t.
    lr, mu, g = 0.1, 0.9, 0.5
    net = _Net()
    optimizer = SGD(net, lr=lr, momentum=mu, nesterov=nesterov)
    moved = 0.0
    for t in range(1, 4):
        _set_grads(net, g)
        optimizer.step()
        v = g * sum(mu ** i for i in range(t))
        moved += lr * (g + mu * v if nesterov else v)
    np.testing.assert_allclose(net.params["weight"], 2.0 - moved, rtol=1e-14)


def test_weight_decay_skips_biases_and_one_dimensional_params():
    net = _Net()
    _set_grads(net, 0.0)
    SGD(net, lr=0.1, weight_decay=0.01).step()
    np.testing.assert_allclose(net.params["weight"], 2.0 * (1 - 0.1 * 0.01), rtol=1e-15)
    for name in ("bias", "fc1_bias", "bank_bias"):
        np.testing.assert_array_equal(net.params[name], 2.0)
    np.testing.assert_array_equal(net.norm.params["weight"], 1.0)


def test_decay_rule():
    assert decays("3.weight", np.zeros((4, 2, 3, 3)))
    assert decays("1.fc2_weight", np.zeros((4, 2)))
    assert not decays("3.bias", np.zeros((4, 2)))
    assert not decays("2.weight", np.zeros(8))       # BatchNorm gamma
    assert not decays("1.fc1_bias", np.zeros(2))


def test_minimises_a_quadratic():
    # f(w) = 0.5 |w - a|^2 has gradient w - a; Nesterov SGD must converge to a.
    net = _Net()
    target = np.arange(6.0).reshape(2, 3)
    optimizer = SGD(net, lr=0.1, momentum=0.9, nesterov=True)
    for _ in range(300):
        net.zero_grad()
        net.grads["weight"] += net.params["weight"] - target
        optimizer.step()
    np.testing.assert_allclose(net.params["weight"], target, atol=1e-8)


def test_updates_in_place_and_keeps_float32():
    net = _Net(np.float32)
    weight = net.params["weight"]
    _set_grads(net, 0.25)
    optimizer = SGD(net, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
    optimizer.step()
    optimizer.step()
    assert net.params["weight"] is weight and weight.dtype == np.float32
    assert all(v.dtype == np.float32 for v in optimizer.velocity.values())


def test_state_dict_round_trip_continues_identically():
    def run(restore_midway):
        net = _Net()
        optimizer = SGD(net, lr=0.1, momentum=0.9)
        for step in range(4):
            if restore_midway and step == 2:
                state = optimizer.state_dict()
                optimizer = SGD(net, lr=0.1, momentum=0.9)
                optimizer.load_state_dict(state)
            _set_grads(net, 0.1 * (step + 1))
            optimizer.step()
        return net.params["weight"].copy()

    np.testing.assert_array_equal(run(False), run(True))


@pytest.mark.parametrize("kwargs, match", [
    (dict(lr=0.0), r"lr must be finite and in \(0, inf\); received 0.0"),
    (dict(lr=float("inf")), r"lr must be finite .*received inf"),
    (dict(lr=float("nan")), r"lr must be finite .*received nan"),
    (dict(lr=0.1, momentum=1.0), r"momentum must be finite and in \[0, 1\); received 1.0"),
    (dict(lr=0.1, momentum=float("nan")), r"momentum must be finite"),
    (dict(lr=0.1, nesterov=True), "nesterov=True needs momentum > 0"),
    (dict(lr=0.1, weight_decay=-1.0), r"weight_decay must be finite and in \[0, inf\)"),
    (dict(lr=0.1, weight_decay=float("inf")), r"weight_decay must be finite"),
])
def test_bad_hyperparameters_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SGD(_Net(), **kwargs)


@pytest.mark.parametrize("kwargs, name", [(dict(lr="0.1"), "lr"), (dict(lr=True), "lr"),
                                          (dict(lr=0.1, momentum=[0.9]), "momentum"),
                                          (dict(lr=0.1, nesterov="yes"), "nesterov")])
def test_hyperparameters_of_the_wrong_type_are_named(kwargs, name):
    with pytest.raises(TypeError, match=name):
        SGD(_Net(), **kwargs)


def test_a_schedule_cannot_set_a_bad_learning_rate():
    optimizer = SGD(_Net(), lr=0.1)
    with pytest.raises(ValueError, match="lr must be finite"):
        optimizer.lr = float("nan")
    assert optimizer.lr == 0.1


def test_a_bad_gradient_stops_the_step_before_any_update():
    net = _Net()
    _set_grads(net, 0.5)
    net.norm.grads["weight"][1] = np.nan
    before = [p.copy() for p in net.parameters()]
    with pytest.raises(ValueError, match=r"gradient of norm.weight|gradient of 0.weight"):
        SGD(net, lr=0.1).step()
    assert all(np.array_equal(a, b) for a, b in zip(before, net.parameters()))


def test_a_replaced_parameter_is_the_one_updated():
    net = _Net()
    optimizer = SGD(net, lr=0.1)
    net.params["weight"] = np.zeros((2, 3))
    _set_grads(net, 1.0)
    optimizer.step()
    np.testing.assert_allclose(net.params["weight"], -0.1)


def test_model_without_parameters_is_refused():
    with pytest.raises(ValueError, match="no parameters"):
        SGD(Module(), lr=0.1)


def test_load_state_dict_rejects_mismatch():
    optimizer = SGD(_Net(), lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="unknown parameters"):
        optimizer.load_state_dict({"nope": np.zeros(2)})
    with pytest.raises(ValueError, match=r"'weight' must be float64 \(2, 3\); received float64 \(3,\)"):
        optimizer.load_state_dict({"weight": np.zeros(3)})
