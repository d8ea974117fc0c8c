"""Frequency dynamic convolution (functional/fdy.py): both pairs (the branch's BatchNorm on batch
and on running statistics) against central differences over conv_configs, output mixing
against the paper's per-frequency kernel W(f) = sum_k pi_k(f) W_k, the attention's
invariances, the CPU backends against numpy, an own PyTorch implementation of the official
forward (float64, output and every gradient), and argument and upstream errors."""
import re

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

from dynconv_np import gradcheck
from dynconv_np.functional import (conv2d_forward, fdy_conv2d_eval_backward,
                                   fdy_conv2d_eval_forward, fdy_conv2d_train_backward,
                                   fdy_conv2d_train_forward, per_sample_conv2d_forward)

from .checks import FakeDeviceArray, assert_upstream_checked
from ..strategies import conv_configs, pair, temperatures

MODES = ["train", "eval"]


@st.composite
def fdy_configs(draw):
    """conv_configs (dense, grouped, depthwise, stride/padding/dilation pairs, N = 1) with K
    kernels and the branch's hidden width; H is time, W frequency."""
    c = draw(conv_configs())
    c.update(k=draw(st.integers(1, 3)), hidden=draw(st.integers(1, 3)))
    return c


def f_out(c):
    (k, s, p, d) = (c["kernel"][1], pair(c["stride"])[1], pair(c["padding"])[1],
                    pair(c["dilation"])[1])
    return (c["size"][1] + 2 * p - d * (k - 1) - 1) // s + 1


def make_params(rng, c, dtype=np.float64):
    k, c_in, c_out, hidden = c["k"], c["in_channels"], c["out_channels"], c["hidden"]
    p = {"weight": rng.standard_normal((k, c_out, c_in // c["groups"]) + c["kernel"]),
         "conv1_weight": rng.standard_normal((hidden, c_in, c["kernel"][1])),
         "bn_weight": 1 + 0.5 * rng.standard_normal(hidden), "bn_bias": rng.standard_normal(hidden),
         "conv2_weight": 2 * rng.standard_normal((k, hidden)),
         "conv2_bias": rng.standard_normal(k)}
    if c["bias"]:
        p["bias"] = rng.standard_normal((k, c_out))
    return {name: value.astype(dtype) for name, value in p.items()}


def make_buffers(rng, hidden, dtype=np.float64):
    return {"bn_running_mean": rng.standard_normal(hidden).astype(dtype),
            "bn_running_var": (0.5 + rng.random(hidden)).astype(dtype)}


def make_x(rng, c, dtype=np.float64):
    return rng.standard_normal((c["n"], c["in_channels"]) + c["size"]).astype(dtype)


def geometry(c):
    return dict(stride=c["stride"], padding=c["padding"], dilation=c["dilation"],
                groups=c["groups"])


def run(mode, x, params, buffers, tau, c, backend="numpy"):
    if mode == "train":
        return fdy_conv2d_train_forward(x, params, tau, **geometry(c), backend=backend)
    return fdy_conv2d_eval_forward(x, params, buffers, tau, **geometry(c), backend=backend)


def backward(mode, dy, cache):
    return (fdy_conv2d_train_backward if mode == "train" else fdy_conv2d_eval_backward)(dy, cache)


def trainable(c):
    """The branch's batch statistics need N F' > 1 values per hidden channel."""
    return c["n"] * f_out(c) > 1


@settings(max_examples=15)
@pytest.mark.parametrize("mode", MODES)
@given(config=fdy_configs(), tau=temperatures, seed=st.integers(0, 2**16))
def test_backward_matches_finite_differences(mode, config, tau, seed):
    """Both pairs, float64, backend numpy, with respect to x and every parameter (smooth but at
    the branch's ReLU kinks, met with probability ~eps; tau >= 0.2 keeps the softmax's third
    derivative small, as in tests/functional/test_dynamic_conv.py)."""
    assume(mode == "eval" or trainable(config))
    rng = np.random.default_rng(seed)
    buffers = make_buffers(rng, config["hidden"])
    inputs = {"x": make_x(rng, config), **make_params(rng, config)}

    def forward(x, **params):
        return run(mode, x, params, buffers, tau, config)

    def grads(dy, cache):
        dx, g = backward(mode, dy, cache)
        return {"x": dx, **g}

    report = gradcheck(forward, inputs, backward=grads)
    assert {r.name for r in report.results} == set(inputs)


@settings(max_examples=15)
@given(config=fdy_configs(), mode=st.sampled_from(MODES), tau=temperatures,
       seed=st.integers(0, 2**16))
def test_output_mixing_is_the_per_frequency_kernel(config, mode, tau, seed):
    """The paper's form: for each sample n and output column f, y[n, :, :, f] is the
    convolution of x[n] with the aggregated kernel W(f) = sum_k pi[n, k, f] W_k (and bias
    b(f) = sum_k pi[n, k, f] b_k), read at column f - one per-sample convolution per (n, f).
    Float64, two summation orders: 1e-11."""
    assume(mode == "eval" or trainable(config))
    rng = np.random.default_rng(seed)
    x, params = make_x(rng, config), make_params(rng, config)
    y, cache = run(mode, x, params, make_buffers(rng, config["hidden"]), tau, config)
    pi = cache["pi"]
    n, k, width = pi.shape
    assert y.shape[3] == width == f_out(config)
    w_nf = np.einsum("nkf,koihw->nfoihw", pi, params["weight"]).reshape(
        (n * width,) + params["weight"].shape[1:])
    b_nf = (None if "bias" not in params else
            np.einsum("nkf,ko->nfo", pi, params["bias"]).reshape(n * width, -1))
    x_nf = np.repeat(x, width, axis=0)
    full, _ = per_sample_conv2d_forward(x_nf, w_nf, b_nf, **geometry(config), backend="numpy")
    full = full.reshape((n, width) + full.shape[1:])             # (N, F', C_out, T', F')
    expected = np.stack([full[:, f, :, :, f] for f in range(width)], axis=-1)
    np.testing.assert_allclose(y, expected, rtol=1e-11, atol=1e-11 * max(1, np.abs(y).max()))


@given(config=fdy_configs(), tau=temperatures, seed=st.integers(0, 2**16))
def test_attention_is_per_frequency_and_blind_to_time_order(config, tau, seed):
    """pi (N, K, F') sums to 1 over K, and depends on x only through its time means: shuffling
    the frames of x leaves pi unchanged (y changes unless the kernels are time-symmetric)."""
    rng = np.random.default_rng(seed)
    x, params = make_x(rng, config), make_params(rng, config)
    buffers = make_buffers(rng, config["hidden"])
    _, cache = run("eval", x, params, buffers, tau, config)
    np.testing.assert_allclose(cache["pi"].sum(axis=1), 1, rtol=1e-12)
    shuffled = x[:, :, rng.permutation(x.shape[2])]
    _, cache2 = run("eval", shuffled, params, buffers, tau, config)
    np.testing.assert_allclose(cache2["pi"], cache["pi"], rtol=1e-12, atol=1e-14)


@given(config=fdy_configs(), seed=st.integers(0, 2**16))
def test_one_kernel_is_an_ordinary_convolution(config, seed):
    """K = 1: pi = 1 at every frequency, so y = conv2d(x, W_1) + b_1."""
    config["k"] = 1
    rng = np.random.default_rng(seed)
    x, params = make_x(rng, config), make_params(rng, config)
    y, cache = run("eval", x, params, make_buffers(rng, config["hidden"]), 1.0, config)
    np.testing.assert_array_equal(cache["pi"], 1.0)
    expected, _ = conv2d_forward(x, params["weight"][0], params["bias"][0] if config["bias"]
                                 else None, **geometry(config), backend="numpy")
    np.testing.assert_allclose(y, expected, rtol=1e-13, atol=1e-13)


def test_batch_stats_are_those_of_the_branch():
    c = dict(n=2, in_channels=3, out_channels=2, kernel=(3, 3), stride=1, padding=(1, 1),
             dilation=1, groups=1, size=(4, 5), bias=False, k=2, hidden=2)
    rng = np.random.default_rng(2)
    x, params, buffers = make_x(rng, c), make_params(rng, c), make_buffers(rng, 2)
    _, cache = run("train", x, params, buffers, 1.0, c)
    pooled = np.pad(x.mean(axis=2), ((0, 0), (0, 0), (1, 1)))
    z1 = sum(np.einsum("hc,ncf->nhf", params["conv1_weight"][:, :, j], pooled[:, :, j:j + 5])
             for j in range(3))
    mean, var, count = cache["batch_stats"]["bn"]
    np.testing.assert_allclose(mean, z1.mean(axis=(0, 2)), rtol=1e-12)
    np.testing.assert_allclose(var, z1.var(axis=(0, 2)), rtol=1e-12)
    assert count == 2 * 5
    assert run("eval", x, params, buffers, 1.0, c)[1]["batch_stats"] == {}


@settings(max_examples=10)
@pytest.mark.parametrize("backend", ["loops", "numba"])
@pytest.mark.parametrize("dtype, tolerance", [(np.float64, 1e-10), (np.float32, 2e-4)])
@given(config=fdy_configs(), mode=st.sampled_from(MODES), tau=temperatures,
       seed=st.integers(0, 2**16))
def test_cpu_backends_agree_with_numpy(backend, dtype, tolerance, config, mode, tau, seed):
    """y, pi, dx and every gradient in both dtypes, relative to each output's scale (sums of
    O(100) products in other orders, amplified by the BatchNorm and the softmax's |W2| / tau:
    float32 ~1e-5; 2e-4 leaves a margin, an index error is O(1))."""
    assume(mode == "eval" or trainable(config))
    rng = np.random.default_rng(seed)
    x, params = make_x(rng, config, dtype), make_params(rng, config, dtype)
    buffers = make_buffers(rng, config["hidden"], dtype)
    results = {}
    for name in ("numpy", backend):
        y, cache = run(mode, x, params, buffers, tau, config, backend=name)
        dy = np.random.default_rng(seed + 1).standard_normal(y.shape).astype(dtype)
        dx, grads = backward(mode, dy, cache)
        results[name] = {"y": y, "pi": cache["pi"], "dx": dx, **grads}
    want, got = results["numpy"], results[backend]
    assert got.keys() == want.keys() == {"y", "pi", "dx", *params}
    for name, value in want.items():
        assert got[name].dtype == dtype, name
        scale = max(1.0, float(np.abs(value).max()))
        np.testing.assert_allclose(got[name], value, rtol=tolerance, atol=tolerance * scale,
                                   err_msg=name)


# -- an own PyTorch implementation of the official forward, from the formula ----------------
def torch_fdy(torch, x, p, buffers, tau, c, training, eps=1e-5):
    """Dynamic_conv2d + attention2d (pool_dim='time') written from the formula with torch ops;
    the K convolutions one by one (the official code stacks them: the same sums)."""
    F = torch.nn.functional
    (_, s_f), (_, p_f), (_, d_f) = pair(c["stride"]), pair(c["padding"]), pair(c["dilation"])
    h = F.conv1d(x.mean(dim=2), p["conv1_weight"], None, s_f, p_f, d_f)
    h = F.batch_norm(h, buffers["bn_running_mean"], buffers["bn_running_var"], p["bn_weight"],
                     p["bn_bias"], training, 0.1, eps)
    z = F.conv1d(F.relu(h), p["conv2_weight"][:, :, None], p["conv2_bias"])
    pi = F.softmax(z / tau, dim=1)                                  # (N, K, F')
    outputs = torch.stack([F.conv2d(x, p["weight"][k], None if "bias" not in p else p["bias"][k],
                                    c["stride"], c["padding"], c["dilation"], c["groups"])
                           for k in range(p["weight"].shape[0])], dim=1)
    return (outputs * pi[:, :, None, None, :]).sum(dim=1)


def torch_reference(torch, mode, x, params, buffers, tau, c, dy):
    tx = torch.tensor(x, requires_grad=True)
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    tb = {k: torch.tensor(v) for k, v in buffers.items()}
    ty = torch_fdy(torch, tx, tp, tb, tau, c, training=mode == "train")
    ty.backward(torch.tensor(dy))
    return (ty.detach().numpy(), tx.grad.numpy(), {k: v.grad.numpy() for k, v in tp.items()},
            {k: v.numpy() for k, v in tb.items()})


@settings(max_examples=10)
@pytest.mark.parametrize("mode", MODES)
@given(config=fdy_configs(), tau=temperatures, seed=st.integers(0, 2**16))
def test_matches_own_pytorch_implementation(mode, config, tau, seed):
    """y, dx and every parameter's gradient against torch autograd (float64; different
    summation orders of O(100) products: 1e-9 relative to each array's scale)."""
    torch = pytest.importorskip(
        "torch", reason="the cross-check runs our PyTorch version of the formula")
    assume(mode == "eval" or trainable(config))
    rng = np.random.default_rng(seed)
    x, params = make_x(rng, config), make_params(rng, config)
    buffers = make_buffers(rng, config["hidden"])
    y, cache = run(mode, x, params, buffers, tau, config)
    dy = rng.standard_normal(y.shape)
    dx, grads = backward(mode, dy, cache)
    ty, tdx, tgrads, _ = torch_reference(torch, mode, x, params, buffers, tau, config, dy)
    for name, got, want in [("y", y, ty), ("dx", dx, tdx)] + [
            (k, grads[k], tgrads[k]) for k in params]:
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9 * max(1, np.abs(want).max()),
                                   err_msg=name)


# -- errors ---------------------------------------------------------------------------------
def small(bias=False):
    c = dict(n=2, in_channels=4, out_channels=4, kernel=(3, 3), stride=1, padding=(1, 1),
             dilation=1, groups=1, size=(4, 5), bias=bias, k=3, hidden=2)
    rng = np.random.default_rng(0)
    return c, make_x(rng, c), make_params(rng, c), make_buffers(rng, 2)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(tau=0.0), ValueError, r"temperature \(tau\) must be finite and > 0"),
    (dict(tau="hot"), TypeError, r"temperature \(tau\) must be a real number"),
    (dict(stride=(1, 0)), ValueError, r"stride must be positive"),
    (dict(padding=-1), ValueError, r"padding must be >= 0"),
    (dict(groups=3), ValueError, r"groups=3 must divide in_channels"),
    (dict(padding=0, dilation=(1, 3)), ValueError, r"kernel width with dilation .* is larger than "
                                              r"the padded input width"),
    (dict(eps=float("nan")), ValueError, r"eps must be finite"),
    (dict(backend="cuda"), ValueError, r"fdy_conv2d runs on a host backend.*'cuda'"),
])
def test_bad_arguments_are_named(kwargs, error, message):
    _, x, params, _ = small()
    call = dict(tau=1.0, stride=1, padding=1, dilation=1, groups=1, backend="numpy") | kwargs
    with pytest.raises(error, match=message):
        fdy_conv2d_train_forward(x, params, **call)


@pytest.mark.parametrize("name, value, error, message", [
    ("weight", np.zeros((3, 4, 4, 3)), ValueError, r"weight must be 5-D"),
    ("bias", np.zeros((2, 4)), ValueError, r"bias must have shape \(3, 4\)"),
    ("conv1_weight", np.zeros((2, 4, 2)), ValueError, r"conv1_weight must have shape "
                                                      r"\(2, 4, 3\)"),
    ("conv2_weight", np.zeros((2, 2)), ValueError, r"conv2_weight must have shape \(3, 2\)"),
    ("conv2_bias", np.zeros(2), ValueError, r"conv2_bias must have shape \(3,\)"),
    ("bn_bias", np.zeros(3), ValueError, r"bn_bias must have shape \(2,\)"),
    ("bn_weight", np.ones(2, np.float32), TypeError, r"bn_weight has dtype float32 but x is "
                                                     r"float64"),
    ("conv2_bias", np.array([0.0, np.inf, 0.0]), ValueError, r"conv2_bias contains 1 "
                                                             r"non-finite"),
])
def test_bad_parameters_are_named(name, value, error, message):
    _, x, params, buffers = small()
    params[name] = value
    for call in (lambda: fdy_conv2d_train_forward(x, params, 1.0, padding=1, backend="numpy"),
                 lambda: fdy_conv2d_eval_forward(x, params, buffers, 1.0, padding=1,
                                                 backend="numpy")):
        with pytest.raises(error, match=message):
            call()


def test_missing_parameters_buffers_and_bad_inputs():
    _, x, params, buffers = small()
    with pytest.raises(ValueError, match=r"params is missing the FDY parameter\(s\) "
                                         r"\['conv2_bias'\]"):
        fdy_conv2d_train_forward(x, {k: v for k, v in params.items() if k != "conv2_bias"}, 1.0)
    with pytest.raises(TypeError, match=r"params must be a dict"):
        fdy_conv2d_train_forward(x, None, 1.0)
    with pytest.raises(ValueError, match=r"buffers is missing the running statistic\(s\) "
                                         r"\['bn_running_mean'\]"):
        fdy_conv2d_eval_forward(x, params, {"bn_running_var": buffers["bn_running_var"]}, 1.0,
                                backend="numpy")
    with pytest.raises(TypeError, match=r"buffers must be a dict"):
        fdy_conv2d_eval_forward(x, params, [], 1.0, backend="numpy")
    buffers["bn_running_var"] = -buffers["bn_running_var"]
    with pytest.raises(ValueError, match=r"bn_running_var must be >= 0"):
        fdy_conv2d_eval_forward(x, params, buffers, 1.0, padding=1, backend="numpy")
    with pytest.raises(ValueError, match=r"x has C_in=2 channels"):
        fdy_conv2d_train_forward(x[:, :2], params, 1.0, padding=1, backend="numpy")
    with pytest.raises(TypeError, match=r"mixed dtypes"):
        fdy_conv2d_train_forward(x.astype(np.float32), params, 1.0, padding=1, backend="numpy")
    with pytest.raises(ValueError, match=r"needs N F_out > 1; received x shape \(1, 4, 4, 1\) "
                                         r"\(F_out = 1\)"):
        fdy_conv2d_train_forward(x[:1, :, :, :1], params, 1.0, padding=1, backend="numpy")
    bad = x.copy()
    bad[0, 3, 2, 4] = -np.inf
    with pytest.raises(ValueError, match=re.escape("x contains 1 non-finite value(s); the first "
                                                   "is -inf at index (0, 3, 2, 4)")):
        with np.errstate(invalid="ignore"):
            fdy_conv2d_train_forward(bad, params, 1.0, padding=1, backend="numpy")
    with pytest.raises(TypeError, match=r"x is a CUDA device array, but backend 'numpy'"):
        fdy_conv2d_train_forward(FakeDeviceArray(x), params, 1.0, padding=1, backend="numpy")


@pytest.mark.parametrize("mode", MODES)
def test_backward_checks_its_upstream_gradient(mode):
    c, x, params, buffers = small(bias=True)
    y, cache = run(mode, x, params, buffers, 1.0, c)
    assert_upstream_checked(lambda dy, cache: backward(mode, dy, cache), cache, y)
    other = "eval" if mode == "train" else "train"
    with pytest.raises(TypeError, match=rf"cache must be the cache returned by "
                                        rf"fdy_conv2d_{other}_forward"):
        backward(other, np.zeros_like(y), cache)


@pytest.mark.parametrize("backend", ["numpy", "loops", "numba"])
@pytest.mark.parametrize("layout", ["fortran", "strided", "read-only"])
def test_any_memory_layout_works_and_is_not_modified(backend, layout):
    """Views, Fortran order and read-only arrays as x, dy and every parameter and buffer: the
    contiguous call's results (float64: 1e-12), inputs untouched."""
    from .test_dcd import relayout

    c, x, params, buffers = small(bias=True)
    for mode in MODES:
        y_ref, cache = run(mode, x, params, buffers, 0.7, c, backend=backend)
        dy = np.random.default_rng(3).standard_normal(y_ref.shape)
        dx_ref, grads_ref = backward(mode, dy, cache)
        x2 = relayout(x, layout)
        p2 = {k: relayout(v, layout) for k, v in params.items()}
        b2 = {k: relayout(v, layout) for k, v in buffers.items()}
        y, cache = run(mode, x2, p2, b2, 0.7, c, backend=backend)
        dx, grads = backward(mode, relayout(dy, layout), cache)
        np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(dx, dx_ref, rtol=1e-12, atol=1e-12)
        for name, grad in grads_ref.items():
            np.testing.assert_allclose(grads[name], grad, rtol=1e-12, atol=1e-12, err_msg=name)
        np.testing.assert_array_equal(x2, x)
        for name, value in params.items():
            np.testing.assert_array_equal(p2[name], value, err_msg=name)
