"""DynamicConv2d and DynamicLinear (nn/dynamic.py): gradients, the backends against the NumPy
reference, cross-checks, temperature, parameters, errors. (The contract every layer keeps, calls
and caches, state dictionaries: tests/nn/test_module.py.)"""
import re
import warnings

import numpy as np
import pytest
from hypothesis import given, strategies as st

from dynconv_np import DynamicConv2d, DynamicLinear, gradcheck
from dynconv_np.functional import dynamic_conv2d_forward, dynamic_linear_forward

from ..scipy_conv import scipy_conv2d
from ..strategies import conv_configs, temperatures

CPU_BACKENDS = ["numpy", "numba"]
HOST_BACKENDS = ["numpy", "loops", "numba"]


def _layer(c, k, tau, backend, dtype=np.float64, seed=0):
    return DynamicConv2d(c["in_channels"], c["out_channels"], c["kernel"], stride=c["stride"],
                         padding=c["padding"], dilation=c["dilation"], groups=c["groups"],
                         bias=c["bias"], num_kernels=k, temperature=tau, backend=backend,
                         dtype=dtype, rng=seed)


def _input(c, seed, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal((c["n"], c["in_channels"]) + c["size"]) \
        .astype(dtype)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@given(config=conv_configs(), k=st.integers(1, 4), tau=temperatures, seed=st.integers(0, 2**16))
def test_dynamic_conv_backward_matches_finite_differences(backend, config, k, tau, seed):
    layer = _layer(config, k, tau, backend, seed=seed)
    # Scale the attention logits up so pi is far from uniform and its gradient is not tiny.
    layer.params["fc2_weight"] *= 5
    # The loss is smooth except at ReLU kinks of the attention branch (hit with probability
    # ~eps); tolerances as in the functional tests (round-off ~1e-9 for |L| ~ 10).
    report = gradcheck(layer, _input(config, seed))
    assert {r.name for r in report.results} == {"x", *layer.params}


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@given(n=st.integers(1, 4), features=st.integers(1, 6), out=st.integers(1, 5),
       k=st.integers(1, 4), tau=temperatures, bias=st.booleans(), seed=st.integers(0, 2**16))
def test_dynamic_linear_backward_matches_finite_differences(backend, n, features, out, k, tau,
                                                            bias, seed):
    layer = DynamicLinear(features, out, bias=bias, num_kernels=k, temperature=tau,
                          backend=backend, dtype=np.float64, rng=seed)
    report = gradcheck(layer, np.random.default_rng(seed).standard_normal((n, features)))
    assert {r.name for r in report.results} == {"x", *layer.params}


@pytest.mark.parametrize("backend", ["numba", "loops"])
@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-10), (np.float32, 2e-4)])
@given(config=conv_configs(), k=st.integers(1, 4), tau=temperatures, seed=st.integers(0, 2**16))
def test_backends_agree_with_numpy_reference(backend, dtype, rtol, config, k, tau, seed):
    """Same layer, same input, two backends: forward, attention, dx and every parameter
    gradient agree.

    float32 tolerance: sums of up to ~100 products accumulate ~1e-6 relative round-off in each
    backend, in a different order; 2e-4 of the output scale leaves a wide margin without hiding
    an indexing error (those give O(1) differences). The derivation for both dtypes is in
    tests/functional/test_dynamic_conv.py.
    """
    names = ("numpy", backend)
    layers = {b: _layer(config, k, tau, b, dtype=dtype, seed=seed) for b in names}
    x = _input(config, seed, dtype)
    outputs = {b: layer.forward(x) for b, layer in layers.items()}
    attentions = {b: layer.attention for b, layer in layers.items()}
    dy = np.random.default_rng(seed + 1).standard_normal(outputs["numpy"].shape).astype(dtype)
    dxs = {b: layer.backward(dy) for b, layer in layers.items()}
    pairs = [("y", outputs), ("pi", attentions), ("dx", dxs)] + [
        (name, {b: layers[b].grads[name] for b in names}) for name in layers["numpy"].grads]
    for name, values in pairs:
        assert values[backend].dtype == dtype, name
        scale = max(1.0, float(np.abs(values["numpy"]).max()))
        np.testing.assert_allclose(values[backend], values["numpy"], rtol=rtol,
                                   atol=rtol * scale, err_msg=name)


@pytest.mark.parametrize("backend", ["numba", "loops"])
@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-10), (np.float32, 2e-4)])
@given(n=st.integers(1, 4), features=st.integers(1, 6), out=st.integers(1, 5),
       k=st.integers(1, 4), tau=temperatures, bias=st.booleans(), seed=st.integers(0, 2**16))
def test_dynamic_linear_backends_agree_with_numpy_reference(backend, dtype, rtol, n, features,
                                                            out, k, tau, bias, seed):
    """DynamicLinear(backend=...): the attention branch and the aggregation on each host
    backend (tolerances: tests/functional/test_dynamic_linear.py)."""
    layers = {b: DynamicLinear(features, out, bias=bias, num_kernels=k, temperature=tau,
                               backend=b, dtype=dtype, rng=seed) for b in ("numpy", backend)}
    assert layers[backend].backend == backend
    x = np.random.default_rng(seed).standard_normal((n, features)).astype(dtype)
    dy = np.random.default_rng(seed + 1).standard_normal((n, out)).astype(dtype)
    results = {}
    for b, layer in layers.items():
        y = layer.forward(x)
        results[b] = {"y": y, "pi": layer.attention, "dx": layer.backward(dy), **layer.grads}
    for name, want in results["numpy"].items():
        got = results[backend][name]
        assert got.dtype == dtype, name
        scale = max(1.0, float(np.abs(want).max()))
        np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale, err_msg=name)


@given(config=conv_configs(), seed=st.integers(0, 2**16))
def test_single_kernel_layer_is_an_ordinary_convolution(config, seed):
    """K = 1: pi = 1 whatever the input, so the layer is conv(x, W_1) + b_1 (scipy's correlate)."""
    layer = _layer(config, 1, 1.0, "numpy", seed=seed)
    x = _input(config, seed)
    y = layer.forward(x)
    np.testing.assert_array_equal(layer.attention, 1.0)
    bias = layer.params["bias"][0] if config["bias"] else None
    expected = scipy_conv2d(x, layer.params["weight"][0], bias, config["stride"],
                            config["padding"], config["dilation"], config["groups"])
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


@given(seed=st.integers(0, 2**16), tau=st.floats(0.5, 50))
def test_attention_rows_sum_to_one(seed, tau):
    layer = DynamicConv2d(3, 4, 3, padding=1, temperature=tau, backend="numpy", rng=seed)
    layer.forward(np.random.default_rng(seed).standard_normal((5, 3, 6, 6)).astype(np.float32))
    assert layer.attention.shape == (5, 4)
    np.testing.assert_allclose(layer.attention.sum(axis=1), 1.0, rtol=1e-6)
    assert np.all(layer.attention >= 0)


def test_temperature_limits_uniform_and_one_hot():
    layer = DynamicConv2d(4, 4, 1, temperature=1e6, backend="numpy", dtype=np.float64, rng=0)
    layer.params["fc2_weight"] *= 50
    x = np.random.default_rng(0).standard_normal((6, 4, 3, 3))
    layer.forward(x)
    np.testing.assert_allclose(layer.attention, 0.25, atol=1e-5)
    layer.temperature = 1e-6
    layer.forward(x)
    p = layer.params
    hidden = np.maximum(x.mean(axis=(2, 3)) @ p["fc1_weight"].T + p["fc1_bias"], 0)
    logits = hidden @ p["fc2_weight"].T + p["fc2_bias"]
    np.testing.assert_array_equal(layer.attention, np.eye(4)[np.argmax(logits, axis=1)])


def test_params_shapes_and_pytorch_like_initialisation():
    layer = DynamicConv2d(8, 6, (3, 5), groups=2, num_kernels=3, rng=0)
    shapes = {name: value.shape for name, value in layer.params.items()}
    assert shapes == {"weight": (3, 6, 4, 3, 5), "bias": (3, 6), "fc1_weight": (4, 8),
                      "fc1_bias": (4,), "fc2_weight": (3, 4), "fc2_bias": (3,)}
    bound = 1 / np.sqrt(4 * 3 * 5)
    assert np.abs(layer.params["weight"]).max() <= bound
    assert np.abs(layer.params["weight"]).max() > 0.9 * bound  # drawn over the full range
    assert not np.allclose(layer.params["weight"][0], layer.params["weight"][1])
    assert all(v.dtype == np.float32 for v in layer.params.values())
    assert set(layer.grads) == set(layer.params)
    assert "bias" not in DynamicConv2d(8, 6, 3, bias=False).params


def test_hidden_width_is_reduced_by_four_with_a_floor():
    assert DynamicConv2d(64, 8, 1).params["fc1_weight"].shape == (16, 64)
    assert DynamicConv2d(3, 8, 3).params["fc1_weight"].shape == (4, 3)


def test_same_seed_same_parameters():
    a, b = DynamicConv2d(4, 4, 3, rng=7), DynamicConv2d(4, 4, 3, rng=7)
    for name in a.params:
        np.testing.assert_array_equal(a.params[name], b.params[name])


def test_temperature_is_kept_within_the_dtype_range():
    """At least the dtype's smallest normal (the softmax divides by it); the state scalar."""
    layer = DynamicConv2d(2, 3, 1, backend="numpy", dtype=np.float32, rng=0)
    tiny = float(np.finfo(np.float32).tiny)
    layer.temperature = tiny
    assert layer.temperature == tiny and layer.state_scalars() == {"temperature": tiny}
    with pytest.raises(ValueError, match=r"below the smallest normal float32"):
        layer.temperature = tiny / 2
    assert layer.temperature == tiny
    with pytest.raises(ValueError, match=r"below the smallest normal float32"):
        DynamicLinear(2, 3, temperature=1e-39)
    DynamicLinear(2, 3, temperature=1e-39, dtype=np.float64)  # a normal float64


def test_grads_accumulate_and_zero_grad_resets():
    layer = DynamicConv2d(2, 3, 3, padding=1, backend="numpy", dtype=np.float64, rng=0)
    x = np.random.default_rng(1).standard_normal((2, 2, 4, 4))
    dy = np.random.default_rng(2).standard_normal((2, 3, 4, 4))
    layer.forward(x)
    layer.backward(dy)
    once = {k: v.copy() for k, v in layer.grads.items()}
    layer.forward(x)
    layer.backward(dy)
    for name in once:
        np.testing.assert_allclose(layer.grads[name], 2 * once[name], rtol=1e-12)
    layer.zero_grad()
    assert all(not g.any() for g in layer.grads.values())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_output_keeps_dtype_and_input_is_untouched(dtype):
    layer = DynamicConv2d(2, 3, 3, padding=1, dtype=dtype, backend="numpy", rng=0)
    x = np.random.default_rng(0).standard_normal((2, 2, 4, 4)).astype(dtype)
    before = x.copy()
    y = layer(x)
    dx = layer.backward(np.ones_like(y))
    assert y.dtype == dtype and dx.dtype == dtype
    np.testing.assert_array_equal(x, before)


def test_layer_errors_name_the_problem():
    layer = DynamicConv2d(2, 3, 3, backend="numpy", rng=0)
    with pytest.raises(ValueError, match="backward called without a matching forward"):
        layer.backward(np.zeros((1, 3, 2, 2), np.float32))
    with pytest.raises(ValueError, match="x must have 2 channels/features on axis 1"):
        layer.forward(np.zeros((1, 5, 4, 4), np.float32))
    with pytest.raises(TypeError, match="x has dtype float64 but DynamicConv2d's parameters "
                                        "are float32"):
        layer.forward(np.zeros((1, 2, 4, 4)))
    layer.forward(np.zeros((1, 2, 4, 4), np.float32))
    with pytest.raises(ValueError, match=r"dy must have the shape of the forward output "
                                         r"\(1, 3, 2, 2\); received \(1, 3, 2, 3\)"):
        layer.backward(np.zeros((1, 3, 2, 3), np.float32))
    with pytest.raises(TypeError, match="dy must have the dtype of the forward output"):
        layer.backward(np.zeros((1, 3, 2, 2), np.float64))
    with pytest.raises(ValueError, match="temperature"):
        layer.temperature = 0.0
    with pytest.raises(ValueError, match="groups=2 must divide in_channels; received "
                                         "in_channels=3"):
        DynamicConv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="num_kernels must be a positive int; received 0"):
        DynamicConv2d(3, 4, 3, num_kernels=0)
    with pytest.raises(TypeError, match="dtype must be float32 or float64; received .*int64"):
        DynamicConv2d(3, 4, 3, dtype=np.int64)
    with pytest.raises(ValueError, match="backend must be one of"):
        DynamicConv2d(3, 4, 3, backend="torch")
    with pytest.raises(ValueError, match="kernel height .* larger than the padded input"):
        DynamicConv2d(2, 3, 5, backend="numpy").forward(np.zeros((1, 2, 3, 3), np.float32))
    with pytest.raises(ValueError, match="DynamicLinear runs on a host backend .*received "
                                         "backend='cuda'"):
        DynamicLinear(3, 4, backend="cuda")
    with pytest.raises(ValueError, match="backend must be one of"):
        DynamicLinear(3, 4, backend="torch")


def test_non_finite_input_and_upstream_gradient_are_located():
    """Checked once per pass (in the layer), whatever the stages below skip."""
    layer = DynamicConv2d(2, 3, 3, padding=1, backend="numpy", dtype=np.float64, rng=0)
    x = np.zeros((2, 2, 4, 4))
    x[1, 0, 2, 3] = np.nan
    with pytest.raises(ValueError, match=r"x contains 1 non-finite value\(s\); the first is nan "
                                         r"at index \(1, 0, 2, 3\)"):
        layer.forward(x)
    y = layer.forward(np.zeros((2, 2, 4, 4)))
    dy = np.zeros_like(y)
    dy[0, 2, 0, 0] = -np.inf
    with pytest.raises(ValueError, match=r"dy contains 1 non-finite .* \(0, 2, 0, 0\)"):
        layer.backward(dy)


def _dynamic(layer_kind):
    if layer_kind == "conv":
        return (DynamicConv2d(4, 6, 3, padding=1, num_kernels=3, min_hidden=2, backend="numpy",
                              dtype=np.float64, rng=0), np.zeros((2, 4, 5, 5)))
    return (DynamicLinear(4, 6, num_kernels=3, min_hidden=2, backend="numpy", dtype=np.float64,
                          rng=0), np.zeros((2, 4)))


@pytest.mark.parametrize("layer_kind", ["conv", "linear"])
@pytest.mark.parametrize("name, value, error, message", [
    ("fc1_weight", np.zeros((2, 5)), ValueError,
     r"fc1_weight must have shape \(2, 4\); received \(2, 5\)"),
    ("fc1_bias", np.zeros(3), ValueError, r"fc1_bias must have shape \(2,\); received \(3,\)"),
    ("fc2_weight", np.zeros((2, 2)), ValueError, r"fc2_weight must have shape \(3, 2\)"),
    ("fc2_bias", np.array([0.0, np.nan, 0.0]), ValueError, r"fc2_bias contains 1 non-finite"),
    ("fc2_bias", np.zeros(3, np.float32), TypeError, r"fc2_bias has dtype float32 but x "
                                                     r"is float64"),
    ("bias", np.zeros((3, 7)), ValueError, r"bias must have shape"),
])
def test_a_bad_parameter_is_named_by_the_dynamic_layers(layer_kind, name, value, error, message):
    """A parameter of another shape or dtype is refused when it is assigned, naming it, and the
    old one is kept; the same array in a params dict given to the functional forward (the
    check the layer's forward runs too, once, by name, before any stage) is named by it; a
    value made non-finite in place is named by the layer's forward."""
    layer, x = _dynamic(layer_kind)
    functional = {"conv": lambda p: dynamic_conv2d_forward(x, p, 1.0, padding=1, backend="numpy"),
                  "linear": lambda p: dynamic_linear_forward(x, p, 1.0, backend="numpy")}
    old = layer.params[name]
    if value.shape == old.shape and value.dtype == old.dtype:
        layer.params[name][...] = value  # in place: the layer's forward must find it
        with pytest.raises(error, match=message):
            layer.forward(x)
    else:
        with pytest.raises(ValueError, match=rf"params\['{name}'\] of {type(layer).__name__} "
                                             rf"must be float64 {re.escape(str(old.shape))}"):
            layer.params[name] = value
        assert layer.params[name] is old
    with pytest.raises(error, match=message):
        functional[layer_kind](dict(layer.params, **{name: value}))


@pytest.mark.parametrize("name", ["weight", "bias"])
def test_kernels_of_another_dtype_than_x_are_named(name):
    layer = DynamicConv2d(2, 3, 3, padding=1, backend="numpy", dtype=np.float64, rng=0)
    with pytest.raises(ValueError, match=rf"params\['{name}'\] of DynamicConv2d must be float64"):
        layer.params[name] = layer.params[name].astype(np.float32)
    params = dict(layer.params, **{name: layer.params[name].astype(np.float32)})
    with pytest.raises(TypeError, match=rf"mixed dtypes.*x=float64, .*{name}=float32"):
        dynamic_conv2d_forward(np.zeros((1, 2, 4, 4)), params, 1.0, padding=1, backend="numpy")


@pytest.mark.parametrize("backend", HOST_BACKENDS)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_every_non_finite_upstream_gradient_is_caught(backend, bias, bad):
    """With a bias, dy is screened through its per-plane sums (the bias gradient); without,
    scanned. Either way one bad element anywhere is reported, nothing is accumulated, no
    NumPy warning comes before the error, and the forward call is still there for a valid dy
    (as for every layer: a refused dy consumes no call)."""
    layer = DynamicConv2d(2, 3, 3, padding=1, bias=bias, backend=backend, dtype=np.float32,
                          rng=0)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 2, 5, 5)).astype(np.float32)
    for index in [(0, 0, 0, 0), (1, 2, 4, 4), (1, 1, 2, 3)]:
        layer.zero_grad()
        y = layer.forward(x)
        dy = rng.standard_normal(y.shape).astype(np.float32)
        dy[index] = bad
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(ValueError, match=r"dy contains 1 non-finite value\(s\); the "
                                                 rf"first is {bad} at index "
                                                 rf"{re.escape(str(index))}"):
                layer.backward(dy)
        assert not any(grad.any() for grad in layer.grads.values())
        dy[index] = 0
        assert np.isfinite(layer.backward(dy)).all()
        with pytest.raises(ValueError, match=r"without a matching forward"):
            layer.backward(dy)


@pytest.mark.parametrize("backend", HOST_BACKENDS)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_every_non_finite_input_is_caught_through_the_pooled_means(backend, bad):
    """The layer screens x through its channel means: one bad element anywhere (here at
    each corner and in the middle of a plane, next to values of both signs) must surface."""
    layer = DynamicConv2d(2, 3, 3, padding=1, backend=backend, dtype=np.float32, rng=0)
    rng = np.random.default_rng(1)
    for index in [(0, 0, 0, 0), (1, 1, 4, 4), (1, 0, 2, 3)]:
        x = rng.standard_normal((2, 2, 5, 5)).astype(np.float32)
        x[index] = bad
        with pytest.raises(ValueError, match=r"x contains 1 non-finite value\(s\); the first "
                                             rf"is {bad} at index {re.escape(str(index))}"):
            layer.forward(x)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_finite_input_whose_channel_mean_overflows_is_rejected():
    """float32 values near the largest float sum to inf: the attention would turn that into
    NaN, so the layer says so instead of returning NaN."""
    layer = DynamicConv2d(1, 2, 1, backend="numpy", dtype=np.float32, rng=0)
    x = np.full((1, 1, 2, 2), 3e38, np.float32)
    with pytest.raises(ValueError, match=r"the mean of x\[0, 0\] over \(H, W\) is inf .*"
                                         r"overflows float32"):
        layer.forward(x)
