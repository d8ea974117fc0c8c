"""CondConv (functional/condconv.py): the routing function, the convolution with given routing
weights and the one-call layer against central differences; a routing shared by stacked
convolutions (its gradient sums theirs); the composition of the public stages; the backends
against the NumPy reference; an own PyTorch implementation from the formula; errors."""
import re

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from dynconv_np import gradcheck
from dynconv_np.backends import get_backend
from dynconv_np.functional import (aggregate_kernels_forward, condconv2d_backward,
                                   condconv2d_forward, condconv2d_with_routing_backward,
                                   condconv2d_with_routing_forward, condconv_routing_backward,
                                   condconv_routing_forward, conv2d_forward,
                                   global_avg_pool_forward, per_sample_conv2d_forward)
from dynconv_np.functional.condconv import (_condconv2d_backward, _condconv2d_forward,
                                            _condconv_routing_backward,
                                            _condconv_routing_forward)
from dynconv_np.functional.pooling import _add_global_avg_pool_grad, _global_avg_pool_forward

from .checks import FakeDeviceArray, assert_upstream_checked
from ..strategies import conv_configs

HOST_BACKENDS = ["numpy", "loops", "numba"]


def _geometry(c):
    return dict(stride=c["stride"], padding=c["padding"], dilation=c["dilation"],
                groups=c["groups"])


def _x(rng, c, dtype=np.float64):
    return rng.standard_normal((c["n"], c["in_channels"]) + c["size"]).astype(dtype)


def _params(rng, c, experts, dtype=np.float64, routing_bias=True):
    """The layer's parameters for config ``c``; the routing FC scaled up so that r spreads
    over (0, 1) (its gradient r (1 - r) is then not uniform)."""
    c_in, c_out = c["in_channels"], c["out_channels"]
    p = {"weight": rng.standard_normal((experts, c_out, c_in // c["groups"]) + c["kernel"]),
         "routing_weight": 3 * rng.standard_normal((experts, c_in)),
         "routing_bias": rng.standard_normal(experts)}
    if c["bias"]:
        p["bias"] = rng.standard_normal((experts, c_out))
    if not routing_bias:
        del p["routing_bias"]
    return {name: value.astype(dtype) for name, value in p.items()}


def _small(bias=True, dtype=np.float64, seed=0):
    """x (2, 2, 5, 5) and the parameters of a 3x3 layer 2 -> 3 with E = 3 (padding 1)."""
    config = dict(n=2, in_channels=2, out_channels=3, kernel=(3, 3), groups=1, bias=bias,
                  size=(5, 5))
    rng = np.random.default_rng(seed)
    return _x(rng, config, dtype), _params(rng, config, 3, dtype)


# -- gradients against central differences ------------------------------------------------------
@given(config=conv_configs(), experts=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_condconv2d_backward_matches_finite_differences(config, experts, seed):
    """The routing as an input: y is linear in x, in the experts and in r separately (bilinear
    overall), so central differences are exact up to round-off (gradcheck's floor)."""
    rng = np.random.default_rng(seed)
    params = _params(rng, config, experts)
    inputs = {"x": _x(rng, config), "routing": rng.random((config["n"], experts)),
              "weight": params["weight"]}
    if config["bias"]:
        inputs["bias"] = params["bias"]

    def backward(dy, cache):
        return dict(zip(("x", "routing", "weight", "bias"), condconv2d_backward(dy, cache)))

    report = gradcheck(lambda **a: condconv2d_forward(**a, **_geometry(config), backend="numpy"),
                       inputs, backward=backward)
    assert {r.name for r in report.results} == set(inputs)


@given(config=conv_configs(), experts=st.integers(1, 4), routing_bias=st.booleans(),
       seed=st.integers(0, 2**16))
def test_condconv2d_with_routing_backward_matches_finite_differences(config, experts,
                                                                     routing_bias, seed):
    """The one-call layer, x feeding both the convolution and the routing; smooth everywhere
    (the sigmoid has no kink); |dr/dz| <= 1/4, third derivative bounded: the truncation error
    eps^2 |L'''| ~ 1e-12 |W_R|^3 is far below gradcheck's tolerance."""
    rng = np.random.default_rng(seed)
    inputs = {"x": _x(rng, config), **_params(rng, config, experts, routing_bias=routing_bias)}

    def forward(x, **params):
        return condconv2d_with_routing_forward(x, params, **_geometry(config), backend="numpy")

    def backward(dy, cache):
        dx, grads = condconv2d_with_routing_backward(dy, cache)
        return {"x": dx, **grads}

    report = gradcheck(forward, inputs, backward=backward)
    assert {r.name for r in report.results} == set(inputs)


@given(n=st.integers(1, 4), c=st.integers(1, 6), experts=st.integers(1, 5), bias=st.booleans(),
       seed=st.integers(0, 2**16))
def test_routing_backward_matches_finite_differences(n, c, experts, bias, seed):
    rng = np.random.default_rng(seed)
    inputs = {"pooled": rng.standard_normal((n, c)),
              "routing_weight": 2 * rng.standard_normal((experts, c))}
    if bias:
        inputs["routing_bias"] = rng.standard_normal(experts)

    def backward(dr, cache):
        dpooled, grads = condconv_routing_backward(dr, cache)
        return {"pooled": dpooled, **grads}

    gradcheck(lambda **a: condconv_routing_forward(**a), inputs, backward=backward)


@settings(max_examples=10)
@given(seed=st.integers(0, 2**16), experts=st.integers(1, 4))
def test_a_routing_shared_by_stacked_convolutions_gets_the_sum_of_their_gradients(seed, experts):
    """The official block's pattern: r = routing(GAP(x)) feeds conv_1 (x -> h, 1x1 expand)
    and conv_2 (h -> y, 3x3 depthwise): dr = dr_1 + dr_2, then the routing's backward once,
    and dx = dx_conv_1 + dpooled / (H W); checked against central differences."""
    rng = np.random.default_rng(seed)
    c, m = 2, 4
    module = get_backend("numpy")
    inputs = {"x": rng.standard_normal((3, c, 5, 4)),
              "routing_weight": 2 * rng.standard_normal((experts, c)),
              "routing_bias": rng.standard_normal(experts),
              "w1": rng.standard_normal((experts, m, c, 1, 1)),
              "w2": rng.standard_normal((experts, m, 1, 3, 3)),
              "b2": rng.standard_normal((experts, m))}
    geometry2 = ((1, 1), (1, 1), (1, 1), m)

    def forward(x, routing_weight, routing_bias, w1, w2, b2):
        pooled, pool_cache = _global_avg_pool_forward(x, module)
        r, routing_cache = _condconv_routing_forward(pooled, routing_weight, routing_bias)
        h, cache1 = _condconv2d_forward(x, r, w1, None, ((1, 1), (0, 0), (1, 1), 1), module)
        y, cache2 = _condconv2d_forward(h, r, w2, b2, geometry2, module)
        return y, (pool_cache, routing_cache, cache1, cache2)

    def backward(dy, caches):
        pool_cache, routing_cache, cache1, cache2 = caches
        dh, dr2, dw2, db2, _ = _condconv2d_backward(dy, cache2)
        dx, dr1, dw1, _, _ = _condconv2d_backward(dh, cache1)
        dpooled, grads = _condconv_routing_backward(dr1 + dr2, routing_cache)
        dx = _add_global_avg_pool_grad(dx, dpooled, pool_cache)
        return {"x": dx, "w1": dw1, "w2": dw2, "b2": db2, **grads}

    gradcheck(forward, inputs, backward=backward)


# -- the composition and the backends ---------------------------------------------------------
@settings(max_examples=10)
@given(config=conv_configs(), experts=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_forward_is_the_composition_of_the_public_stages(config, experts, seed):
    """pool -> routing -> aggregation -> per-sample convolution, each stage public: the same
    operations in the same order, so the results are bitwise equal."""
    rng = np.random.default_rng(seed)
    x, params = _x(rng, config), _params(rng, config, experts)
    pooled, _ = global_avg_pool_forward(x, backend="numpy")
    r, _ = condconv_routing_forward(pooled, params["routing_weight"], params["routing_bias"])
    (w_n, b_n), _ = aggregate_kernels_forward(r, params["weight"], params.get("bias"),
                                              backend="numpy")
    expected, _ = per_sample_conv2d_forward(x, w_n, b_n, **_geometry(config), backend="numpy")
    y_given, _ = condconv2d_forward(x, r, params["weight"], params.get("bias"),
                                    **_geometry(config), backend="numpy")
    y, cache = condconv2d_with_routing_forward(x, params, **_geometry(config), backend="numpy")
    np.testing.assert_array_equal(y, expected)
    np.testing.assert_array_equal(y_given, expected)
    np.testing.assert_array_equal(cache["routing"], r)
    assert np.all((r > 0) & (r < 1))


@given(config=conv_configs(), seed=st.integers(0, 2**16))
def test_one_expert_with_unit_routing_is_an_ordinary_convolution(config, seed):
    """E = 1, r = 1: W_n = W_1 and b_n = b_1 for every sample (conv2d_forward, one kernel)."""
    rng = np.random.default_rng(seed)
    x, params = _x(rng, config), _params(rng, config, 1)
    bias = params.get("bias")
    y, _ = condconv2d_forward(x, np.ones((config["n"], 1)), params["weight"], bias,
                              **_geometry(config), backend="numpy")
    expected, _ = conv2d_forward(x, params["weight"][0], None if bias is None else bias[0],
                                 **_geometry(config), backend="numpy")
    np.testing.assert_allclose(y, expected, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("backend", ["numba", "loops"])
@pytest.mark.parametrize("dtype, tolerance", [(np.float64, 1e-10), (np.float32, 2e-4)])
@given(config=conv_configs(), experts=st.integers(1, 4), routing_bias=st.booleans(),
       seed=st.integers(0, 2**16))
def test_backends_agree_with_the_numpy_reference(backend, dtype, tolerance, config, experts,
                                                 routing_bias, seed):
    """y, r, dx and every gradient of the one-call layer, in both dtypes; inputs untouched.

    Tolerance relative to each output's scale max(1, max |reference|): the sums are those of
    dynamic convolution (at most ~150 products per entry, in another order per backend, then
    through the sigmoid, whose derivative is <= 1/4, times |R| ~ 3): worst-case round-off
    ~150 eps, i.e. 2e-5 (float32) and 3e-14 (float64); an indexing error is O(1)."""
    rng = np.random.default_rng(seed)
    x, params = _x(rng, config, dtype), _params(rng, config, experts, dtype, routing_bias)
    before = {"x": x.copy(), **{name: value.copy() for name, value in params.items()}}
    results = {}
    for name in ("numpy", backend):
        y, cache = condconv2d_with_routing_forward(x, params, **_geometry(config), backend=name)
        dy = np.random.default_rng(seed + 1).standard_normal(y.shape).astype(dtype)
        dx, grads = condconv2d_with_routing_backward(dy, cache)
        r = cache["routing"]
        _, given_cache = condconv2d_forward(x, r, params["weight"], params.get("bias"),
                                            **_geometry(config), backend=name)
        dx_given, dr_given, _, _ = condconv2d_backward(dy, given_cache)
        results[name] = {"y": y, "r": r, "dx": dx, "dx_given": dx_given, "dr_given": dr_given,
                         **grads}
    want, got = results["numpy"], results[backend]
    assert got.keys() == want.keys()
    for name, value in want.items():
        assert got[name].dtype == dtype, name
        scale = max(1.0, float(np.abs(value).max()))
        np.testing.assert_allclose(got[name], value, rtol=tolerance, atol=tolerance * scale,
                                   err_msg=name)
    for name, value in before.items():
        np.testing.assert_array_equal({"x": x, **params}[name], value, err_msg=f"{name} modified")


# -- PyTorch, written from the formula -------------------------------------------------------
def torch_condconv2d(x, routing, weight, bias, stride, padding, dilation, groups):
    """y[n] = conv2d(x[n], sum_e r[n, e] W_e) + sum_e r[n, e] b_e, one sample at a time."""
    import torch
    import torch.nn.functional as F
    w_n = torch.einsum("ne,e...->n...", routing, weight)
    b_n = None if bias is None else routing @ bias
    return torch.cat([F.conv2d(x[n:n + 1], w_n[n], None if b_n is None else b_n[n],
                               stride, padding, dilation, groups) for n in range(x.shape[0])])


def torch_condconv_routing(x, routing_weight, routing_bias):
    """r = sigmoid(GAP(x) R^T + b_r)."""
    import torch
    import torch.nn.functional as F
    return torch.sigmoid(F.linear(x.mean(dim=(2, 3)), routing_weight, routing_bias))


CROSS_CONFIGS = [  # (C_in, C_out, kernel, stride, padding, dilation, groups, bias, size)
    (3, 4, (3, 3), 1, 1, 1, 1, True, (6, 5)),
    (4, 6, (3, 2), 2, (1, 0), (2, 1), 2, False, (7, 6)),
    (3, 6, (3, 3), 1, 1, 1, 3, True, (5, 5)),  # depthwise, channel multiplier 2
]


@pytest.mark.parametrize("c_in, c_out, kernel, stride, padding, dilation, groups, bias, size",
                         CROSS_CONFIGS)
def test_matches_an_own_pytorch_implementation(c_in, c_out, kernel, stride, padding, dilation,
                                               groups, bias, size):
    """float64, outputs and every gradient (autograd of the formula above), for the one-call
    layer and for the convolution with given routing; max error 5e-15 (the same sums in
    another order), asserted at 1e-12."""
    torch = pytest.importorskip(
        "torch", reason="the cross-check runs our PyTorch version of the formula")
    rng = np.random.default_rng(5)
    experts = 3
    config = dict(n=2, in_channels=c_in, out_channels=c_out, kernel=kernel, groups=groups,
                  bias=bias, size=size)
    x, params = _x(rng, config), _params(rng, config, experts)
    geometry = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    y, cache = condconv2d_with_routing_forward(x, params, **geometry, backend="numpy")
    dy = rng.standard_normal(y.shape)
    dx, grads = condconv2d_with_routing_backward(dy, cache)

    t = {name: torch.tensor(value, requires_grad=True) for name, value in
         {"x": x, **params}.items()}
    r_t = torch_condconv_routing(t["x"], t["routing_weight"], t["routing_bias"])
    y_t = torch_condconv2d(t["x"], r_t, t["weight"], t.get("bias"), stride, padding, dilation,
                           groups)
    y_t.backward(torch.tensor(dy))
    np.testing.assert_allclose(y, y_t.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(cache["routing"], r_t.detach().numpy(), rtol=1e-12, atol=1e-12)
    for name, grad in {"x": dx, **grads}.items():
        np.testing.assert_allclose(grad, t[name].grad.numpy(), rtol=1e-12, atol=1e-12,
                                   err_msg=name)

    r = rng.random((2, experts))
    y2, cache2 = condconv2d_forward(x, r, params["weight"], params.get("bias"), **geometry,
                                    backend="numpy")
    dx2, dr2, dw2, db2 = condconv2d_backward(dy, cache2)
    t2 = {name: torch.tensor(value, requires_grad=True) for name, value in
          {"x": x, "r": r, "weight": params["weight"], "bias": params.get("bias")}.items()
          if value is not None}
    y2_t = torch_condconv2d(t2["x"], t2["r"], t2["weight"], t2.get("bias"), stride, padding,
                            dilation, groups)
    y2_t.backward(torch.tensor(dy))
    np.testing.assert_allclose(y2, y2_t.detach().numpy(), rtol=1e-12, atol=1e-12)
    for name, grad in (("x", dx2), ("r", dr2), ("weight", dw2), ("bias", db2)):
        if name in t2:
            np.testing.assert_allclose(grad, t2[name].grad.numpy(), rtol=1e-12, atol=1e-12,
                                       err_msg=name)
        else:
            assert grad is None


# -- the NaN/inf screens and the upstream checks ------------------------------------------------
@pytest.mark.parametrize("backend", HOST_BACKENDS)
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_non_finite_x_is_named_by_its_element(backend, bad):
    x, params = _small()
    x[1, 0, 2, 3] = bad
    pattern = rf"x contains 1 non-finite value\(s\); the first is {bad} at index \(1, 0, 2, 3\)"
    with pytest.raises(ValueError, match=pattern):
        condconv2d_with_routing_forward(x, params, padding=1, backend=backend)
    with pytest.raises(ValueError, match=pattern):
        condconv2d_forward(x, np.ones((2, 3)), params["weight"], params["bias"], padding=1,
                           backend=backend)


@pytest.mark.parametrize("backend", HOST_BACKENDS)
@pytest.mark.parametrize("bias", [True, False])
def test_a_non_finite_dy_is_named_by_its_element(backend, bias):
    """Screened through the bias gradient (or scanned without a bias): named, no gradient
    returned, and the cache still usable."""
    x, params = _small(bias=bias)
    y, cache = condconv2d_with_routing_forward(x, params, padding=1, backend=backend)
    _, given_cache = condconv2d_forward(x, cache["routing"], params["weight"],
                                        params.get("bias"), padding=1, backend=backend)
    for backward, c in ((condconv2d_with_routing_backward, cache),
                        (condconv2d_backward, given_cache)):
        dy = np.ones_like(y)
        dy[1, 2, 4, 0] = np.nan
        with pytest.raises(ValueError, match=r"dy contains 1 non-finite value\(s\); the first "
                                             r"is nan at index \(1, 2, 4, 0\)"):
            backward(dy, c)
        backward(np.ones_like(y), c)


@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_backward_checks_the_upstream_gradient_and_the_cache(backend):
    x, params = _small()
    y, cache = condconv2d_with_routing_forward(x, params, padding=1, backend=backend)
    assert_upstream_checked(condconv2d_with_routing_backward, cache, y)
    y2, cache2 = condconv2d_forward(x, cache["routing"], params["weight"], params["bias"],
                                    padding=1, backend=backend)
    assert_upstream_checked(condconv2d_backward, cache2, y2)
    r, cache3 = condconv_routing_forward(cache["pooled"], params["routing_weight"],
                                         params["routing_bias"])
    assert_upstream_checked(condconv_routing_backward, cache3, r, name="dr")
    with pytest.raises(TypeError, match=r"cache must be the cache returned by condconv2d_forward"
                                        r"; received 'condconv2d_with_routing'"):
        condconv2d_backward(y, cache)


# -- arguments -------------------------------------------------------------------------------
@pytest.mark.parametrize("name, value, error, message", [
    ("weight", np.zeros((3, 3, 2, 3)), ValueError, r"weight must be 5-D"),
    ("weight", np.zeros((3, 3, 2, 3, 3), np.float32), TypeError,
     r"mixed dtypes.*x=float64, weight=float32"),
    ("bias", np.zeros((3, 7)), ValueError, r"bias must have shape \(3, 3\); received \(3, 7\)"),
    ("routing_weight", np.zeros((3, 5)), ValueError,
     r"routing_weight must have shape \(3, 2\); received \(3, 5\)"),
    ("routing_weight", np.zeros((4, 2)), ValueError, r"routing_weight must have shape \(3, 2\)"),
    ("routing_bias", np.zeros(4), ValueError,
     r"routing_bias must have shape \(3,\); received \(4,\)"),
    ("routing_bias", np.array([0.0, np.inf, 0.0]), ValueError,
     r"routing_bias contains 1 non-finite value\(s\); the first is inf at index \(1,\)"),
    ("routing_bias", np.zeros(3, np.float32), TypeError, r"mixed dtypes.*routing_bias=float32"),
    ("fc1_weight", np.zeros((3, 2)), ValueError,
     r"params has unexpected key\(s\) \['fc1_weight'\]"),
])
def test_a_bad_parameter_is_named(name, value, error, message):
    x, params = _small()
    params[name] = value
    with pytest.raises(error, match=message):
        condconv2d_with_routing_forward(x, params, padding=1, backend="numpy")


def test_missing_parameters_and_bad_routing_are_named():
    x, params = _small()
    with pytest.raises(TypeError, match=r"params must be a dict holding at least 'weight' and "
                                        r"'routing_weight'.*received \['bias', 'routing_bias', "
                                        r"'weight'\]"):
        condconv2d_with_routing_forward(x, {k: v for k, v in params.items()
                                            if k != "routing_weight"}, padding=1)
    weight, bias = params["weight"], params["bias"]
    for routing, error, message in (
            (np.ones((2, 4)), ValueError, r"routing must have shape \(2, 3\); received \(2, 4\)"),
            (np.ones((3, 3)), ValueError, r"routing must have shape \(2, 3\); received \(3, 3\)"),
            (np.ones(3), ValueError, r"routing must be 2-D"),
            (np.ones((2, 3), np.float32), TypeError, r"mixed dtypes.*routing=float32"),
            (np.full((2, 3), np.nan), ValueError, r"routing contains 6 non-finite"),
            ([[1.0] * 3] * 2, TypeError, r"routing must be a numpy.ndarray"),
            (FakeDeviceArray(np.ones((2, 3))), TypeError,
             r"routing must be a numpy.ndarray: routing weights live on the host")):
        with pytest.raises(error, match=message):
            condconv2d_forward(x, routing, weight, bias, padding=1, backend="numpy")
    with pytest.raises(TypeError, match=r"x is a CUDA device array, but backend 'numba' runs"):
        condconv2d_with_routing_forward(FakeDeviceArray(x), params, padding=1, backend="numba")
    with pytest.raises(ValueError, match=r"pooled must have shape \('\*', 3\); received \(2, 2\)"):
        condconv_routing_forward(np.ones((2, 2)), np.ones((4, 3)))


def test_geometry_errors_are_named():
    x, params = _small()
    with pytest.raises(ValueError, match=r"kernel height .* larger than the padded input"):
        condconv2d_with_routing_forward(x[:, :, :2], params, backend="numpy")
    with pytest.raises(ValueError, match=r"groups=2 must divide out_channels"):
        condconv2d_forward(x, np.ones((2, 3)), params["weight"], None, groups=2)
    with pytest.raises(ValueError, match=re.escape("stride must be positive; received 0")):
        condconv2d_with_routing_forward(x, params, stride=0)
    with pytest.raises(ValueError, match=r"backend must be one of"):
        condconv2d_with_routing_forward(x, params, backend="torch")
