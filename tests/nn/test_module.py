"""The base class every layer shares (nn/module.py): the layer contract (checked inputs and
upstream gradients, dtypes kept, nothing modified in place), calls and caches (a backward per
forward, in reverse order, gradients accumulated: right for shared, tied and repeated modules),
names, parameter assignment, state dictionaries and copies."""
import copy
import pickle

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from dynconv_np import gradcheck
from dynconv_np.nn import (AvgPool2d, BatchNorm2d, Conv2d, Dropout, DynamicConv2d,
                           DynamicLinear, Flatten, GlobalAvgPool2d, HardSigmoid, HardSwish,
                           Linear, MaxPool2d, Module, ReLU, ReLU6, Residual, Sequential, Sigmoid,
                           SqueezeExcite)
from dynconv_np.nn.module import (check_bias_flag, check_layer_input, is_dynamic,
                                  layer_dtype)

IMAGE = (2, 3, 5, 5)

# name -> (factory taking a dtype, input shape)
LAYERS = {
    "Conv2d": (lambda dt: Conv2d(3, 4, 3, padding=1, groups=1, backend="numpy", dtype=dt, rng=0),
               IMAGE),
    "DynamicConv2d": (lambda dt: DynamicConv2d(3, 4, 3, padding=1, num_kernels=3,
                                               temperature=2.0, backend="numpy", dtype=dt,
                                               rng=0), IMAGE),
    "DynamicLinear": (lambda dt: DynamicLinear(6, 3, num_kernels=3, temperature=2.0,
                                               backend="numpy", dtype=dt, rng=0), (4, 6)),
    "Linear": (lambda dt: Linear(6, 3, dtype=dt, rng=0), (4, 6)),
    "BatchNorm2d": (lambda dt: BatchNorm2d(3, dtype=dt), IMAGE),
    "ReLU": (lambda dt: ReLU(), IMAGE),
    "ReLU6": (lambda dt: ReLU6(), IMAGE),
    "HardSigmoid": (lambda dt: HardSigmoid(), IMAGE),
    "HardSwish": (lambda dt: HardSwish(), IMAGE),
    "Sigmoid": (lambda dt: Sigmoid(), IMAGE),
    "MaxPool2d": (lambda dt: MaxPool2d(2), IMAGE),
    "AvgPool2d": (lambda dt: AvgPool2d(3, 2, 1), IMAGE),
    "GlobalAvgPool2d": (lambda dt: GlobalAvgPool2d(), IMAGE),
    "Flatten": (lambda dt: Flatten(), IMAGE),
    "Dropout": (lambda dt: Dropout(0.5, rng=0), IMAGE),
    "SqueezeExcite": (lambda dt: SqueezeExcite(3, dtype=dt, rng=0), IMAGE),
    "Sequential": (lambda dt: Sequential(Conv2d(3, 4, 3, backend="numpy", dtype=dt, rng=0),
                                         BatchNorm2d(4, dtype=dt), ReLU()), IMAGE),
    "Residual": (lambda dt: Residual(Sequential(Conv2d(3, 3, 3, padding=1, backend="numpy",
                                                       dtype=dt, rng=0), ReLU())), IMAGE),
}
FOUR_D = ["Conv2d", "DynamicConv2d", "BatchNorm2d", "MaxPool2d", "AvgPool2d", "GlobalAvgPool2d",
          "SqueezeExcite"]
PARAMETRISED = ["Conv2d", "DynamicConv2d", "DynamicLinear", "Linear", "BatchNorm2d",
                "SqueezeExcite"]


def _build(name, dtype=np.float64, seed=1):
    factory, shape = LAYERS[name]
    x = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    return factory(dtype), x


def _conv(c_in, c_out, seed, **kw):
    return Conv2d(c_in, c_out, 3, padding=1, backend="numpy", dtype=np.float64, rng=seed, **kw)


# -- the layer contract --------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_backward_without_a_matching_forward_is_an_error(name):
    layer, x = _build(name)
    with pytest.raises(ValueError, match=rf"{name}.backward called without a matching forward"):
        layer.backward(np.ones(3))


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_upstream_gradient_must_match_the_output(name):
    """Refused, naming dy, without consuming the pending call: a valid dy then still works."""
    layer, x = _build(name)
    y = layer.forward(x)
    with pytest.raises(ValueError, match=r"dy must have the shape of the forward output"):
        layer.backward(np.ones(y.shape + (1,)))
    with pytest.raises(TypeError, match=r"dy must have the dtype of the forward output "
                                        r"\(float64\)"):
        layer.backward(np.ones(y.shape, dtype=np.float32))
    with pytest.raises(ValueError, match=r"dy contains 1 non-finite"):
        layer.backward(np.where(np.arange(y.size).reshape(y.shape) == 0, np.nan, 1.0))
    with pytest.raises(TypeError, match=r"dy must be a numpy.ndarray"):
        layer.backward(np.ones(y.shape).tolist())
    assert layer.backward(np.ones(y.shape)).shape == x.shape


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_bad_inputs_are_named(name):
    layer, x = _build(name)
    with pytest.raises(TypeError, match=r"x must be a numpy.ndarray"):
        layer.forward(x.tolist())
    with pytest.raises(TypeError, match=r"x must have dtype float32 or float64; received int64"):
        layer.forward(x.astype(np.int64))
    bad = x.copy()
    bad.flat[1] = np.inf
    with pytest.raises(ValueError, match=r"x contains 1 non-finite value"):
        layer.forward(bad)


@pytest.mark.parametrize("name", FOUR_D)
def test_wrong_rank_is_named(name):
    layer, x = _build(name)
    with pytest.raises(ValueError, match=r"x must be 4-D; received shape \(2, 3, 5\)"):
        layer.forward(x[..., 0])


@pytest.mark.parametrize("name", PARAMETRISED)
def test_parametrised_layers_check_channels_and_dtype(name):
    layer, x = _build(name)
    wider = np.concatenate([x, x], axis=1)
    with pytest.raises(ValueError, match=r"x must have \d+ channels/features on axis 1"):
        layer.forward(wider)
    with pytest.raises(TypeError, match=r"x has dtype float32 but .* parameters are float64"):
        layer.forward(x.astype(np.float32))


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_float32_stays_float32(name):
    layer, x = _build(name, dtype=np.float32)
    y = layer.forward(x)
    dx = layer.backward(np.ones_like(y))
    assert y.dtype == np.float32 and dx.dtype == np.float32 and dx.shape == x.shape
    for qualified, param, grad in layer.named_parameters():
        assert param.dtype == np.float32 and grad.dtype == np.float32, qualified


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_inputs_are_not_modified_in_place(name):
    layer, x = _build(name)
    x_before = x.copy()
    y = layer.forward(x)
    dy = np.random.default_rng(2).standard_normal(y.shape)
    dy_before = dy.copy()
    layer.backward(dy)
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(dy, dy_before)


# -- calls and caches ----------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_interleaved_calls_give_the_gradients_of_sequential_ones(name):
    """forward(x1), forward(x2), backward(dy2), backward(dy1) gives exactly what forward(x1),
    backward(dy1), forward(x2), backward(dy2) gives on a twin (same seed: same parameters, same
    dropout masks, same running statistics): each backward is matched to its own forward in
    reverse order, and the gradients accumulate (g2 + g1 == g1 + g2 exactly). A third backward
    has no forward left; zero_grad resets every gradient."""
    layer, x1 = _build(name, seed=1)
    twin, x2 = _build(name, seed=2)
    y1, y2 = layer.forward(x1), layer.forward(x2)
    rng = np.random.default_rng(3)
    dy1, dy2 = rng.standard_normal(y1.shape), rng.standard_normal(y2.shape)
    dx2, dx1 = layer.backward(dy2), layer.backward(dy1)
    np.testing.assert_array_equal(twin.forward(x1), y1)
    np.testing.assert_array_equal(twin.backward(dy1), dx1)
    np.testing.assert_array_equal(twin.forward(x2), y2)
    np.testing.assert_array_equal(twin.backward(dy2), dx2)
    for (qualified, _, grad), (_, _, twin_grad) in zip(layer.named_parameters(),
                                                       twin.named_parameters()):
        np.testing.assert_array_equal(grad, twin_grad, err_msg=qualified)
    with pytest.raises(ValueError, match=r"backward called without a matching forward"):
        layer.backward(dy1)
    layer.zero_grad()
    assert all(not grad.any() for _, _, grad in layer.named_parameters())


@pytest.mark.parametrize("name", ["Linear", "DynamicConv2d", "Sequential", "SqueezeExcite"])
def test_eval_mode_keeps_only_the_last_call(name):
    layer, x1 = _build(name, seed=1)
    twin, x2 = _build(name, seed=2)
    layer.eval()
    twin.eval()
    layer.forward(x1)
    y2 = layer.forward(x2)
    dy = np.random.default_rng(3).standard_normal(y2.shape)
    twin.forward(x2)
    np.testing.assert_array_equal(layer.backward(dy), twin.backward(dy))
    with pytest.raises(ValueError, match=r"backward called without a matching forward .*in "
                                         r"eval mode only the last call is kept"):
        layer.backward(dy)


def test_clear_calls_forgets_pending_calls_below():
    conv, relu = _conv(2, 2, 0), ReLU()
    net = Sequential(conv, relu)
    y = net.forward(np.ones((1, 2, 3, 3)))
    net.clear_calls()
    for module in (net, conv, relu):
        with pytest.raises(ValueError, match=r"without a matching forward"):
            module.backward(np.ones(y.shape))


# -- shared, tied and repeated modules: gradients of the unrolled computation --------------
@settings(max_examples=10)
@given(seed=st.integers(0, 2**16))
def test_one_relu_object_used_twice(seed):
    """conv, relu, conv, relu with a single ReLU object: its two calls' caches are kept apart.

    float64, backend "numpy"; linear pieces between ReLU kinks (met by a central difference
    with probability ~eps), so default tolerances (round-off level) apply."""
    relu = ReLU()
    net = Sequential(_conv(2, 3, seed), relu, _conv(3, 2, seed + 1), relu)
    x = np.random.default_rng(seed).standard_normal((2, 2, 4, 4))
    report = gradcheck(net, x)
    assert [r.name for r in report.results] == ["x", "0.weight", "0.bias", "2.weight", "2.bias"]
    separate = Sequential(net[0], ReLU(), net[2], ReLU())  # the same convs, two ReLU objects
    results = []
    for network in (net, separate):
        network.zero_grad()
        y = network.forward(x)
        dy = np.random.default_rng(seed + 2).standard_normal(y.shape)
        results.append((y, network.backward(dy),
                        [grad.copy() for _, _, grad in network.named_parameters()]))
    (y, dx, grads), (y_sep, dx_sep, grads_sep) = results
    np.testing.assert_array_equal(y_sep, y)
    np.testing.assert_array_equal(dx_sep, dx)
    for grad, grad_sep in zip(grads, grads_sep):
        np.testing.assert_array_equal(grad_sep, grad)


@settings(max_examples=10)
@given(seed=st.integers(0, 2**16))
def test_a_linear_tied_by_using_it_twice(seed):
    """Linear(4, 4), ReLU, the same Linear: one weight, listed once, whose gradient is the sum
    of its two uses' (compared with an untied network holding copies of it)."""
    linear = Linear(4, 4, dtype=np.float64, rng=seed)
    net = Sequential(linear, ReLU(), linear)
    assert [name for name, _, _ in net.named_parameters()] == ["0.weight", "0.bias"]
    x = np.random.default_rng(seed).standard_normal((3, 4))
    report = gradcheck(net, x)
    assert [r.name for r in report.results] == ["x", "0.weight", "0.bias"]
    first, second = Linear(4, 4, dtype=np.float64), Linear(4, 4, dtype=np.float64)
    for copy_ in (first, second):
        for key in ("weight", "bias"):
            copy_.params[key][...] = linear.params[key]
    untied = Sequential(first, ReLU(), second)
    net.zero_grad()
    y = net.forward(x)
    np.testing.assert_array_equal(untied.forward(x), y)
    dy = np.random.default_rng(seed + 1).standard_normal(y.shape)
    np.testing.assert_allclose(net.backward(dy), untied.backward(dy), rtol=1e-15)
    for key in ("weight", "bias"):
        np.testing.assert_allclose(linear.grads[key], first.grads[key] + second.grads[key],
                                   rtol=1e-14, atol=1e-15, err_msg=key)


@settings(max_examples=10)
@given(seed=st.integers(0, 2**16))
def test_a_block_applied_twice(seed):
    """Sequential(block, block) with block = Sequential(conv, relu): every module inside is
    called twice per pass; tolerances as above."""
    block = Sequential(_conv(2, 2, seed), ReLU())
    net = Sequential(block, block)
    x = np.random.default_rng(seed).standard_normal((2, 2, 4, 4))
    report = gradcheck(net, x)
    assert [r.name for r in report.results] == ["x", "0.0.weight", "0.0.bias"]


def test_backward_more_times_than_forward_raises_at_every_level():
    relu = ReLU()
    net = Sequential(_conv(2, 2, 0), relu, relu)
    x = np.random.default_rng(0).standard_normal((1, 2, 3, 3))
    y = net.forward(x)
    net.backward(np.ones(y.shape))
    with pytest.raises(ValueError, match=r"Sequential.backward called without a matching"):
        net.backward(np.ones(y.shape))
    relu.forward(x)  # relu has one call, but a network backward needs two
    with pytest.raises(ValueError, match=r"without a matching forward"):
        Sequential(relu, relu).backward(np.ones(x.shape))


# -- names ---------------------------------------------------------------------------------
def _network(seed=0, dtype=np.float64):
    """A network with every kind of child: a dynamic layer, a block used twice, batch norm."""
    block = Sequential(_conv(4, 4, seed + 1), ReLU())
    return Sequential(
        DynamicConv2d(2, 4, 3, padding=1, num_kernels=2, temperature=3.0, backend="numpy",
                      dtype=dtype, rng=seed),
        BatchNorm2d(4, dtype=dtype),
        Residual(block, shortcut=block),
        SqueezeExcite(4, dtype=dtype, rng=seed + 2),
        GlobalAvgPool2d(), Linear(4, 3, dtype=dtype, rng=seed + 3))


EXPECTED_PARAMETERS = [
    "0.weight", "0.bias", "0.fc1_weight", "0.fc1_bias", "0.fc2_weight", "0.fc2_bias",
    "1.weight", "1.bias", "2.body.0.weight", "2.body.0.bias",
    "3.excite.1.weight", "3.excite.1.bias", "3.excite.3.weight", "3.excite.3.bias",
    "5.weight", "5.bias"]


def test_named_parameters_list_each_parameter_once_in_a_stable_order():
    net = _network()
    names = [name for name, _, _ in net.named_parameters()]
    assert names == EXPECTED_PARAMETERS
    assert [name for name, _, _ in net.named_parameters()] == names  # stable
    assert [name for name, _, _ in _network(seed=5).named_parameters()] == names
    assert [id(p) for p in net.parameters()] == [id(p) for _, p, _ in net.named_parameters()]
    assert len({id(p) for p in net.parameters()}) == len(names)
    for name, param, grad in net.named_parameters():
        assert grad.shape == param.shape and grad.dtype == param.dtype, name
    assert [name for name, _ in net.named_buffers()] == ["1.running_mean", "1.running_var"]
    assert [name for name, _, _ in net.named_parameters(prefix="net.")][:1] == ["net.0.weight"]


def test_named_children_and_modules():
    net = _network()
    assert [name for name, _ in net.named_children()] == ["0", "1", "2", "3", "4", "5"]
    residual = net[2]
    assert residual.named_children() == [("body", residual.body), ("shortcut", residual.body)]
    assert [name for name, _ in net[3].named_children()] == ["excite"]
    modules = list(net.named_modules())
    assert len({id(module) for _, module in modules}) == len(modules)  # each module once
    assert [name for name, _ in modules][:4] == ["", "0.", "1.", "2."]
    assert "2.body.0." in dict(modules) and "2.shortcut." not in dict(modules)
    assert list(net.modules()) == [module for _, module in modules]
    assert net.children() == list(net)


def test_one_array_registered_in_two_modules_is_named():
    a, b = Linear(2, 2), Linear(2, 2)
    b.params["extra"] = a.params["weight"]  # a new key: the same array, a gradient of its own
    with pytest.raises(ValueError, match=r"parameter 1.extra is the same array as 0.weight.*"
                                         r"share the module"):
        list(Sequential(a, b).named_parameters())


def test_is_dynamic_and_the_constructor_checks():
    assert is_dynamic(DynamicConv2d(2, 2, 1)) and is_dynamic(DynamicLinear(2, 2))
    assert not any(is_dynamic(m) for m in (Conv2d(2, 2, 1), Linear(2, 2), Sequential()))
    assert layer_dtype("float64") == np.float64
    with pytest.raises(TypeError, match=r"dtype must be float32 or float64; received 'float16'"):
        layer_dtype("float16")
    assert check_bias_flag(np.bool_(False)) is False
    with pytest.raises(TypeError, match=r"attention_bias must be True or False; received 1"):
        check_bias_flag(1, "attention_bias")
    layer = Linear(3, 2, dtype=np.float64)
    x = check_layer_input(layer, np.ones((3, 4))[:, :3], 2, 3)
    assert x.flags.c_contiguous
    with pytest.raises(ValueError, match=r"x must have 3 channels/features on axis 1 \(Linear "
                                         r"was built for 3\); received shape \(2, 4\)"):
        check_layer_input(layer, np.ones((2, 4)), 2, 3)


@pytest.mark.parametrize("dtype", ["flaot32", None])
def test_an_unresolvable_dtype_is_refused(dtype):
    """A typo, and None (which np.dtype would read as float64)."""
    with pytest.raises(TypeError, match=rf"dtype must be float32 or float64; received "
                                        rf"{dtype!r}"):
        layer_dtype(dtype)


def test_base_module_passes_are_abstract():
    with pytest.raises(NotImplementedError):
        Module().forward(np.ones(2))
    with pytest.raises(NotImplementedError):
        Module().backward(np.ones(2))


# -- parameter assignment ------------------------------------------------------------------
@pytest.mark.parametrize("value, message", [
    (np.zeros((3, 5)), r"params\['weight'\] of Linear must be float64 \(2, 4\); received "
                       r"float64 \(3, 5\)"),
    (np.zeros((2, 4), np.float32), r"params\['weight'\] of Linear must be float64 \(2, 4\); "
                                   r"received float32 \(2, 4\)"),
])
def test_assigning_another_shape_or_dtype_is_refused_and_keeps_the_old_array(value, message):
    layer = Linear(4, 2, dtype=np.float64, rng=0)
    old, old_grad = layer.params["weight"], layer.grads["weight"]
    old_grad[...] = 1.0
    with pytest.raises(ValueError, match=message):
        layer.params["weight"] = value
    assert layer.params["weight"] is old and layer.grads["weight"] is old_grad
    np.testing.assert_array_equal(old_grad, 1.0)
    with pytest.raises(TypeError, match=r"params\['weight'\] must be an array; received list"):
        layer.params["weight"] = [[0.0] * 4] * 2
    assert layer.params["weight"] is old


def test_assigning_a_same_shape_array_resets_its_gradient_in_step():
    """The new array is used from the next forward on, and its gradient restarts at zero (in
    place: an optimiser's reference to the gradient stays valid); re-assigning the array
    itself (``params[k] *= 2``) changes nothing; a new key is a new parameter with a zero
    gradient."""
    layer = Linear(4, 2, dtype=np.float64, rng=0)
    x = np.random.default_rng(0).standard_normal((3, 4))
    layer.forward(x)
    layer.backward(np.ones((3, 2)))
    grad = layer.grads["weight"]
    assert grad.any()
    accumulated = grad.copy()
    layer.params["weight"] *= 2  # the same array: its gradient is kept
    np.testing.assert_array_equal(layer.grads["weight"], accumulated)
    new = np.random.default_rng(1).standard_normal((2, 4))
    layer.params["weight"] = new
    assert layer.params["weight"] is new and layer.grads["weight"] is grad
    np.testing.assert_array_equal(grad, 0.0)
    np.testing.assert_allclose(layer.forward(x), x @ new.T + layer.params["bias"], rtol=1e-15)
    layer.params["scale"] = np.ones(3)
    assert layer.grads["scale"].shape == (3,) and not layer.grads["scale"].any()


# -- state ---------------------------------------------------------------------------------
STATE_KEYS = sorted(EXPECTED_PARAMETERS + ["0.temperature", "1.running_mean", "1.running_var"])


def _trained(seed=0):
    """A network whose state differs from a fresh one everywhere: a training step's running
    statistics, another temperature, parameters of another seed."""
    net = _network(seed)
    net.forward(np.random.default_rng(seed).standard_normal((3, 2, 4, 4)))
    net.clear_calls()
    net[0].temperature = 1.5 + seed
    return net


def _snapshot(net):
    return {key: value.copy() for key, value in net.state_dict().items()}


def _assert_state_equal(net, state):
    current = net.state_dict()
    assert sorted(current) == sorted(state)
    for key, value in state.items():
        np.testing.assert_array_equal(current[key], value, err_msg=key)


def test_state_dict_names_every_parameter_buffer_and_temperature():
    net = _trained()
    state = net.state_dict()
    assert sorted(state) == STATE_KEYS
    assert state["0.temperature"].shape == () and state["0.temperature"].dtype == np.float64
    assert float(state["0.temperature"]) == 1.5
    np.testing.assert_array_equal(state["1.running_mean"], net[1].buffers["running_mean"])
    assert net[1].buffers["running_mean"].any()
    state["0.weight"][...] = 0  # a copy: changing it changes nothing in the network
    assert net[0].params["weight"].any()


def test_state_dict_round_trip():
    """A fresh network (another seed) that loads a trained one's state computes what it does,
    in both modes; arrays are copied into the network's own arrays in place, gradients zeroed."""
    source, target = _trained(seed=0), _network(seed=7)
    own = {name: param for name, param, _ in target.named_parameters()}
    own_buffer = target[1].buffers["running_var"]
    for _, _, grad in target.named_parameters():
        grad[...] = 1.0
    assert target.load_state_dict(source.state_dict()) == ([], [])
    _assert_state_equal(target, source.state_dict())
    assert target[0].temperature == source[0].temperature == 1.5
    assert all(param is own[name] for name, param, _ in target.named_parameters())
    assert target[1].buffers["running_var"] is own_buffer
    assert all(not grad.any() for _, _, grad in target.named_parameters())
    x = np.random.default_rng(9).standard_normal((2, 2, 4, 4))
    for mode in (False, True):
        source.train(mode)
        target.train(mode)
        np.testing.assert_array_equal(target.forward(x), source.forward(x))


@pytest.mark.parametrize("change, message", [
    (lambda s: s.pop("1.running_var"), r"missing keys \['1.running_var'\], unexpected keys \[\]"),
    (lambda s: s.update({"9.weight": np.zeros(2)}), r"missing keys \[\], unexpected keys "
                                                    r"\['9.weight'\]"),
    (lambda s: s.update({"2.body.0.bias": np.zeros(5)}),
     r"state\['2.body.0.bias'\] must be float64 \(4,\); received float64 \(5,\)"),
    (lambda s: s.update({"1.running_mean": np.zeros(4, np.float32)}),
     r"state\['1.running_mean'\] must be float64 \(4,\); received float32 \(4,\)"),
    (lambda s: s.update({"0.temperature": np.float32(2.0)}),
     r"state\['0.temperature'\] must be float64 \(\); received float32 \(\)"),
    (lambda s: s["5.weight"].__setitem__((0, 0), np.nan), r"state\['5.weight'\] contains NaN"),
    (lambda s: s.update({"0.temperature": np.array(0.0)}), r"temperature"),
])
def test_a_bad_state_is_named_and_changes_nothing(change, message):
    """All or nothing: the whole state is checked before anything is loaded, so a bad entry
    anywhere leaves every parameter, buffer and the temperature as they were."""
    source, target = _trained(seed=0), _trained(seed=1)
    state = source.state_dict()
    change(state)
    before = _snapshot(target)
    with pytest.raises(ValueError, match=message):
        target.load_state_dict(state)
    _assert_state_equal(target, before)


def test_non_strict_loading_reports_missing_and_unexpected_keys():
    source, target = _trained(seed=0), _trained(seed=1)
    state = source.state_dict()
    del state["1.running_var"]
    state["extra"] = np.zeros(1)
    kept = target[1].buffers["running_var"].copy()
    assert target.load_state_dict(state, strict=False) == (["1.running_var"], ["extra"])
    np.testing.assert_array_equal(target[1].buffers["running_var"], kept)
    np.testing.assert_array_equal(target[1].buffers["running_mean"],
                                  source[1].buffers["running_mean"])
    with pytest.raises(ValueError, match=r"state\['5.bias'\] must be float64 \(3,\)"):
        target.load_state_dict({"5.bias": np.zeros(4)}, strict=False)
    with pytest.raises(TypeError, match=r"state must be a mapping of names to arrays; received "
                                        r"list"):
        target.load_state_dict([])


def test_a_module_used_twice_is_saved_once_and_loaded_into_both_uses():
    linear = Linear(3, 3, dtype=np.float64, rng=0)
    net = Sequential(linear, ReLU(), linear)
    assert sorted(net.state_dict()) == ["0.bias", "0.weight"]
    other = Sequential(*(lambda shared: (shared, ReLU(), shared))(Linear(3, 3, dtype=np.float64,
                                                                         rng=1)))
    other.load_state_dict(net.state_dict())
    x = np.random.default_rng(0).standard_normal((2, 3))
    np.testing.assert_array_equal(other.forward(x), net.forward(x))


# -- the attention a dynamic layer exposes, and copies of modules --------------------------
@pytest.mark.parametrize("name", ["DynamicConv2d", "DynamicLinear"])
def test_the_attention_is_a_copy(name):
    layer, x = _build(name)
    twin, _ = _build(name)
    y = layer.forward(x)
    twin.forward(x)
    attention = layer.attention
    np.testing.assert_allclose(attention.sum(axis=1), 1.0, rtol=1e-14)
    attention[...] = np.eye(*attention.shape)[::-1]  # garbage, written into the copy
    np.testing.assert_array_equal(layer.attention, twin.attention)
    dy = np.random.default_rng(0).standard_normal(y.shape)
    np.testing.assert_array_equal(layer.backward(dy), twin.backward(dy))
    for key, grad in twin.grads.items():
        np.testing.assert_array_equal(layer.grads[key], grad, err_msg=key)


@pytest.mark.parametrize("clone", [copy.deepcopy, lambda m: pickle.loads(pickle.dumps(m))],
                         ids=["deepcopy", "pickle"])
def test_a_copied_module_is_independent_and_keeps_its_checks(clone):
    """Layers without a backend (a backend is a Python module, which neither copy nor pickle
    handles: Conv2d and the dynamic layers keep theirs)."""
    block = Sequential(Linear(4, 4, dtype=np.float64, rng=1), ReLU())
    net = Sequential(BatchNorm2d(4, dtype=np.float64), SqueezeExcite(4, dtype=np.float64, rng=0),
                     GlobalAvgPool2d(), Residual(block, shortcut=block),
                     Linear(4, 3, dtype=np.float64, rng=2))
    x = np.random.default_rng(0).standard_normal((2, 4, 3, 3))
    net.forward(x)
    net.clear_calls()
    twin = clone(net)
    _assert_state_equal(twin, net.state_dict())
    np.testing.assert_array_equal(twin.forward(x), net.forward(x))
    assert [name for name, _, _ in twin.named_parameters()] == \
        [name for name, _, _ in net.named_parameters()]
    twin[4].params["weight"][...] = 0
    assert net[4].params["weight"].any()
    net[4].grads["weight"][...] = 1
    twin[4].grads["weight"][...] = 1
    twin[4].params["weight"] = np.ones((3, 4))  # resets the copy's gradient, not the original's
    assert not twin[4].grads["weight"].any() and net[4].grads["weight"].all()
    with pytest.raises(ValueError, match=r"params\['weight'\] of Linear must be float64"):
        twin[4].params["weight"] = np.ones((4, 4))
    assert twin[3].body is twin[3].shortcut  # sharing survives the copy


def test_training_mode_forwards_without_backward_warn_once():
    """Inference in training mode keeps every cache: the module says so (once) and how to fix
    it; eval mode keeps one."""
    import warnings as _warnings

    from dynconv_np.nn import module as module_module
    relu = ReLU()
    x = np.ones((2, 3))
    with pytest.warns(RuntimeWarning, match=r"ReLU holds 256 forward calls .* \.eval\(\)"):
        for _ in range(module_module.PENDING_WARNING):
            relu(x)
    with _warnings.catch_warnings():
        _warnings.simplefilter("error")
        relu(x)                    # once: no second warning
        relu.eval()
        for _ in range(3 * module_module.PENDING_WARNING):
            relu(x)
    assert len(relu._calls) == 1
