"""Dynamic convolution decomposition (functional/dcd.py): both pairs (training and eval
BatchNorms) against central differences over drawn configurations, the eval mode against the
kernel form W(x) = Lambda W0 + centre(P (I + A2 Phi) A1 Q^T) (the paper's equation), the CPU
backends against numpy, an own PyTorch implementation of the official forward (float64, output
and every gradient), and argument and upstream errors."""
import re

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

from dynconv_np import gradcheck
from dynconv_np.functional import (dcd_conv2d_eval_backward, dcd_conv2d_eval_forward,
                                   dcd_conv2d_train_backward, dcd_conv2d_train_forward,
                                   per_sample_conv2d_forward)

from .checks import FakeDeviceArray, assert_upstream_checked
from ..strategies import conv_configs, pair

HOST_BACKENDS = ["numpy", "loops", "numba"]
MODES = ["train", "eval"]


@st.composite
def dcd_configs(draw):
    """conv_configs (dense, grouped, depthwise, stride, dilation, N = 1) made 'same': an even
    kernel side loses one tap (k = 2 -> 1), then padding = d (k - 1) / 2, the only padding DCD
    supports; latent L and squeeze S drawn small."""
    c = draw(conv_configs())
    kernel = tuple(k - 1 if k % 2 == 0 else k for k in c["kernel"])
    c.update(kernel=kernel, padding=tuple(d * (k - 1) // 2 for k, d in
                                          zip(kernel, pair(c["dilation"]))),
             latent=draw(st.integers(1, 3)), squeeze=draw(st.integers(1, 3)))
    return c


def out_size(c):
    return tuple((s - 1) // st_ + 1 for s, st_ in zip(c["size"], pair(c["stride"])))


def make_params(rng, c, dtype=np.float64):
    c_in, c_out, latent, squeeze = c["in_channels"], c["out_channels"], c["latent"], c["squeeze"]
    p = {"weight": rng.standard_normal((c_out, c_in // c["groups"]) + c["kernel"]),
         "q_weight": rng.standard_normal((latent, c_in)),
         "p_weight": rng.standard_normal((c_out, latent)),
         "fc_weight": rng.standard_normal((squeeze, c_in)),
         "se_weight": rng.standard_normal((squeeze, squeeze)),
         "phi_weight": rng.standard_normal((latent * latent, squeeze)),
         "scale_weight": rng.standard_normal((c_out, squeeze)),
         "bn1_weight": 1 + 0.5 * rng.standard_normal(latent),
         "bn1_bias": rng.standard_normal(latent),
         "bn2_weight": 1 + 0.5 * rng.standard_normal(latent),
         "bn2_bias": rng.standard_normal(latent)}
    if c["bias"]:
        p["bias"] = rng.standard_normal(c_out)
    return {name: value.astype(dtype) for name, value in p.items()}


def make_buffers(rng, latent, dtype=np.float64):
    return {"bn1_running_mean": rng.standard_normal(latent).astype(dtype),
            "bn1_running_var": (0.5 + rng.random(latent)).astype(dtype),
            "bn2_running_mean": rng.standard_normal(latent).astype(dtype),
            "bn2_running_var": (0.5 + rng.random(latent)).astype(dtype)}


def make_x(rng, c, dtype=np.float64):
    return rng.standard_normal((c["n"], c["in_channels"]) + c["size"]).astype(dtype)


def geometry(c):
    return dict(stride=c["stride"], padding=c["padding"], dilation=c["dilation"],
                groups=c["groups"])


def run(mode, x, params, buffers, c, backend="numpy"):
    if mode == "train":
        return dcd_conv2d_train_forward(x, params, **geometry(c), backend=backend)
    return dcd_conv2d_eval_forward(x, params, buffers, **geometry(c), backend=backend)


def backward(mode, dy, cache):
    return (dcd_conv2d_train_backward if mode == "train" else dcd_conv2d_eval_backward)(dy, cache)


def trainable(c):
    """Batch statistics need N H' W' > 1 values per latent channel."""
    h, w = out_size(c)
    return c["n"] * h * w > 1


@settings(max_examples=15)
@pytest.mark.parametrize("mode", MODES)
@given(config=dcd_configs(), seed=st.integers(0, 2**16))
def test_backward_matches_finite_differences(mode, config, seed):
    """Both pairs, float64, backend numpy, with respect to x and every parameter. The loss is
    smooth except at the hard sigmoids' kinks (t = +-3, met with probability ~eps); training
    mode adds the BatchNorms' 1 / sqrt(var + eps), smooth for the O(1) variances drawn here."""
    assume(mode == "eval" or trainable(config))
    rng = np.random.default_rng(seed)
    buffers = make_buffers(rng, config["latent"])
    inputs = {"x": make_x(rng, config), **make_params(rng, config)}

    def forward(x, **params):
        return run(mode, x, params, buffers, config)

    def grads(dy, cache):
        dx, g = backward(mode, dy, cache)
        return {"x": dx, **g}

    report = gradcheck(forward, inputs, backward=grads)
    assert {r.name for r in report.results} == set(inputs)


def dense(weight, groups):
    """A grouped kernel (C_out, C_in/g, kh, kw) as the equivalent dense one (block diagonal)."""
    c_out, c_group = weight.shape[:2]
    full = np.zeros((c_out, c_group * groups) + weight.shape[2:])
    per = c_out // groups
    for o in range(c_out):
        g = o // per
        full[o, g * c_group:(g + 1) * c_group] = weight[o]
    return full


@settings(max_examples=15)
@given(config=dcd_configs(), seed=st.integers(0, 2**16))
def test_eval_mode_is_the_kernel_form(config, seed):
    """Eval mode equals one per-sample convolution with W(x) = Lambda(x) W0 + centre(P (I + A2
    Phi(x)) A1 Q^T) and b(x) = Lambda(x) b0 + P ((I + A2 Phi(x)) c1 + c2), BN_i = A_i t + c_i
    (functional/dcd.py's docstring): the paper's W(x) = Lambda W0 + P Phi Q^T with the code's
    BatchNorms folded in. Float64; two summation orders of O(10) products: 1e-10."""
    rng = np.random.default_rng(seed)
    x, params = make_x(rng, config), make_params(rng, config)
    buffers = make_buffers(rng, config["latent"])
    y, cache = dcd_conv2d_eval_forward(x, params, buffers, **geometry(config), backend="numpy")
    lam, phi = cache["lambda"], cache["phi"]
    eps = 1e-5
    scale = {b: params[f"{b}_weight"] / np.sqrt(buffers[f"{b}_running_var"] + eps)
             for b in ("bn1", "bn2")}
    shift = {b: params[f"{b}_bias"] - scale[b] * buffers[f"{b}_running_mean"]
             for b in ("bn1", "bn2")}
    n, latent = x.shape[0], config["latent"]
    mix = np.eye(latent) + scale["bn2"][None, :, None] * phi               # (N, L, L)
    centre_1x1 = params["p_weight"] @ mix @ (scale["bn1"][:, None] * params["q_weight"])
    w_n = lam[:, :, None, None, None] * dense(params["weight"], config["groups"])[None]
    kh, kw = config["kernel"]
    w_n[:, :, :, kh // 2, kw // 2] += centre_1x1
    b_n = np.einsum("ol,nl->no", params["p_weight"],
                    np.einsum("nij,j->ni", mix, shift["bn1"]) + shift["bn2"])
    if config["bias"]:
        b_n += lam * params["bias"]
    expected, _ = per_sample_conv2d_forward(x, w_n, b_n, stride=config["stride"],
                                            padding=config["padding"],
                                            dilation=config["dilation"], backend="numpy")
    np.testing.assert_allclose(y, expected, rtol=1e-10, atol=1e-10 * max(1, np.abs(y).max()))
    assert lam.shape == (n, config["out_channels"]) and phi.shape == (n, latent, latent)


def test_training_mode_mixes_the_batch_and_eval_mode_does_not():
    """Batch statistics make sample 0's output depend on sample 1 in training mode; in eval
    mode each sample is its own (the layer is then a per-sample dynamic convolution)."""
    c = dict(n=3, in_channels=4, out_channels=3, kernel=(3, 3), stride=1, padding=(1, 1),
             dilation=1, groups=1, size=(5, 4), bias=True, latent=2, squeeze=3)
    rng = np.random.default_rng(0)
    x, params, buffers = make_x(rng, c), make_params(rng, c), make_buffers(rng, 2)
    for mode in MODES:
        whole, _ = run(mode, x, params, buffers, c)
        x2 = x.copy()
        x2[1:] *= 3
        changed, _ = run(mode, x2, params, buffers, c)
        if mode == "train":
            assert np.abs(whole[0] - changed[0]).max() > 1e-3
        else:
            np.testing.assert_array_equal(whole[0], changed[0])
            alone, _ = run(mode, x[:1], params, buffers, c)
            np.testing.assert_allclose(alone, whole[:1], rtol=1e-13, atol=1e-13)


def test_batch_stats_are_those_of_the_latent_features():
    """cache["batch_stats"]: BN1's mean and biased variance over (N, H', W') of Q^T x, and
    the count; eval mode reports none."""
    c = dict(n=2, in_channels=3, out_channels=2, kernel=(1, 1), stride=2, padding=(0, 0),
             dilation=1, groups=1, size=(5, 4), bias=False, latent=2, squeeze=2)
    rng = np.random.default_rng(1)
    x, params, buffers = make_x(rng, c), make_params(rng, c), make_buffers(rng, 2)
    _, cache = run("train", x, params, buffers, c)
    z0 = np.einsum("lc,nchw->nlhw", params["q_weight"], x[:, :, ::2, ::2])
    mean, var, count = cache["batch_stats"]["bn1"]
    np.testing.assert_allclose(mean, z0.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(var, z0.var(axis=(0, 2, 3)), rtol=1e-12)
    assert count == 2 * 3 * 2 and set(cache["batch_stats"]) == {"bn1", "bn2"}
    assert run("eval", x, params, buffers, c)[1]["batch_stats"] == {}


@settings(max_examples=10)
@pytest.mark.parametrize("backend", ["loops", "numba"])
@pytest.mark.parametrize("dtype, tolerance", [(np.float64, 1e-10), (np.float32, 2e-4)])
@given(config=dcd_configs(), mode=st.sampled_from(MODES), seed=st.integers(0, 2**16))
def test_cpu_backends_agree_with_numpy(backend, dtype, tolerance, config, mode, seed):
    """y, lambda, Phi, dx and every gradient, in both dtypes, relative to each output's scale:
    the backends sum the convolutions' O(100) products in other orders (float32 ~1e-5 after
    the BatchNorms' amplification; 2e-4 leaves a margin, an index error is O(1))."""
    assume(mode == "eval" or trainable(config))
    rng = np.random.default_rng(seed)
    x, params = make_x(rng, config, dtype), make_params(rng, config, dtype)
    buffers = make_buffers(rng, config["latent"], dtype)
    results = {}
    for name in ("numpy", backend):
        y, cache = run(mode, x, params, buffers, config, backend=name)
        dy = np.random.default_rng(seed + 1).standard_normal(y.shape).astype(dtype)
        dx, grads = backward(mode, dy, cache)
        results[name] = {"y": y, "lambda": cache["lambda"], "phi": cache["phi"], "dx": dx,
                         **grads}
    want, got = results["numpy"], results[backend]
    assert got.keys() == want.keys() == {"y", "lambda", "phi", "dx", *params}
    for name, value in want.items():
        assert got[name].dtype == dtype, name
        scale = max(1.0, float(np.abs(value).max()))
        np.testing.assert_allclose(got[name], value, rtol=tolerance, atol=tolerance * scale,
                                   err_msg=name)


# -- an own PyTorch implementation of the official forward, from the formula ----------------
def torch_dcd(torch, x, p, buffers, c, training, eps=1e-5):
    """conv_dy's forward (resnet_dcd.py), written from the formula with torch ops; buffers are
    updated in place in training mode (momentum 0.1), as nn.BatchNorm would."""
    F = torch.nn.functional
    n, latent = x.shape[0], p["q_weight"].shape[0]
    hs = lambda t: F.relu6(t + 3) / 3  # noqa: E731 (the official Hsigmoid)
    a = x.mean(dim=(2, 3)) @ p["fc_weight"].T
    s = a * hs(a @ p["se_weight"].T)
    phi = (s @ p["phi_weight"].T).view(n, latent, latent)
    lam = hs(s @ p["scale_weight"].T)
    r = F.conv2d(x, p["weight"], p.get("bias"), c["stride"], c["padding"], c["dilation"],
                 c["groups"])

    def bn(t, name):
        return F.batch_norm(t, buffers[f"{name}_running_mean"], buffers[f"{name}_running_var"],
                            p[f"{name}_weight"], p[f"{name}_bias"], training, 0.1, eps)

    z = bn(F.conv2d(x, p["q_weight"][:, :, None, None], stride=c["stride"]), "bn1")
    h, w = z.shape[2:]
    u = torch.matmul(phi, z.reshape(n, latent, -1)).reshape(n, latent, h, w)
    v = bn(u, "bn2") + z
    return lam[:, :, None, None] * r + F.conv2d(v, p["p_weight"][:, :, None, None])


def torch_reference(torch, mode, x, params, buffers, c, dy):
    """(y, dx, grads) from torch autograd, float64."""
    tx = torch.tensor(x, requires_grad=True)
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    tb = {k: torch.tensor(v) for k, v in buffers.items()}
    ty = torch_dcd(torch, tx, tp, tb, c, training=mode == "train")
    ty.backward(torch.tensor(dy))
    return (ty.detach().numpy(), tx.grad.numpy(), {k: v.grad.numpy() for k, v in tp.items()},
            {k: v.numpy() for k, v in tb.items()})


@settings(max_examples=10)
@pytest.mark.parametrize("mode", MODES)
@given(config=dcd_configs(), seed=st.integers(0, 2**16))
def test_matches_own_pytorch_implementation(mode, config, seed):
    """y, dx and the gradient of every parameter against torch autograd through the official
    forward (float64; both sides sum O(100) products in different orders: 1e-9 relative to
    each array's scale)."""
    torch = pytest.importorskip(
        "torch", reason="the cross-check runs our PyTorch version of the formula")
    assume(mode == "eval" or trainable(config))
    rng = np.random.default_rng(seed)
    x, params = make_x(rng, config), make_params(rng, config)
    buffers = make_buffers(rng, config["latent"])
    y, cache = run(mode, x, params, buffers, config)
    dy = rng.standard_normal(y.shape)
    dx, grads = backward(mode, dy, cache)
    ty, tdx, tgrads, _ = torch_reference(torch, mode, x, params, buffers, config, dy)
    for name, got, want in [("y", y, ty), ("dx", dx, tdx)] + [
            (k, grads[k], tgrads[k]) for k in params]:
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9 * max(1, np.abs(want).max()),
                                   err_msg=name)


# -- errors ---------------------------------------------------------------------------------
def small(bias=False, groups=1):
    c = dict(n=2, in_channels=4, out_channels=4, kernel=(3, 3), stride=1, padding=(1, 1),
             dilation=1, groups=groups, size=(4, 4), bias=bias, latent=2, squeeze=2)
    rng = np.random.default_rng(0)
    return c, make_x(rng, c), make_params(rng, c), make_buffers(rng, 2)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(padding=0), ValueError, r"DCD supports only 'same' padding, d \(k - 1\) / 2 = "
                                  r"\(1, 1\).*received padding=0"),
    (dict(padding=(1, 2)), ValueError, r"only 'same' padding.*received padding=\(1, 2\)"),
    (dict(stride=0), ValueError, r"stride must be positive"),
    (dict(groups=3), ValueError, r"groups=3 must divide in_channels"),
    (dict(eps=-1.0), ValueError, r"eps must be finite and in \[0, inf\)"),
    (dict(backend="cuda"), ValueError, r"dcd_conv2d runs on a host backend.*'cuda'"),
    (dict(backend="torch"), ValueError, r"backend must be one of"),
])
def test_bad_arguments_are_named(kwargs, error, message):
    c, x, params, _ = small()
    call = dict(stride=1, padding=None, dilation=1, groups=1, backend="numpy") | kwargs
    with pytest.raises(error, match=message):
        dcd_conv2d_train_forward(x, params, **call)


def test_even_kernels_are_refused():
    c, x, params, _ = small()
    params["weight"] = params["weight"][:, :, :2, :3].copy()
    for dilation in (1, 2):
        with pytest.raises(ValueError, match=r"DCD needs odd kernel sides .*received "
                                             r"kernel_size=\(2, 3\)"):
            dcd_conv2d_train_forward(x, params, dilation=dilation, backend="numpy")


@pytest.mark.parametrize("name, value, error, message", [
    ("q_weight", np.zeros((2, 5)), ValueError, r"q_weight must have shape \(2, 4\)"),
    ("p_weight", np.zeros((4, 3)), ValueError, r"p_weight must have shape \(4, 2\)"),
    ("phi_weight", np.zeros((2, 2)), ValueError, r"phi_weight must have shape \(4, 2\)"),
    ("scale_weight", np.zeros((3, 2)), ValueError, r"scale_weight must have shape \(4, 2\)"),
    ("se_weight", np.zeros((2, 3)), ValueError, r"se_weight must have shape \(2, 2\)"),
    ("bn2_bias", np.zeros(3), ValueError, r"bn2_bias must have shape \(2,\)"),
    ("bn1_weight", np.zeros(2, np.float32), TypeError, r"bn1_weight has dtype float32 but x is "
                                                       r"float64"),
    ("fc_weight", np.full((2, 4), np.nan), ValueError, r"fc_weight contains 8 non-finite"),
    ("weight", np.zeros((4, 4, 3)), ValueError, r"weight must be 4-D"),
    ("bias", np.zeros(3), ValueError, r"bias must have shape \(4,\)"),
    ("se_weight", [[0.0]], TypeError, r"se_weight must be a numpy.ndarray"),
])
def test_bad_parameters_are_named(name, value, error, message):
    _, x, params, buffers = small()
    params[name] = value
    for call in (lambda: dcd_conv2d_train_forward(x, params, backend="numpy"),
                 lambda: dcd_conv2d_eval_forward(x, params, buffers, backend="numpy")):
        with pytest.raises(error, match=message):
            call()


def test_missing_parameters_buffers_and_wrong_containers():
    _, x, params, buffers = small()
    with pytest.raises(ValueError, match=r"params is missing the DCD parameter\(s\) "
                                         r"\['se_weight'\]"):
        dcd_conv2d_train_forward(x, {k: v for k, v in params.items() if k != "se_weight"})
    with pytest.raises(ValueError, match=r"missing the DCD parameter\(s\) \['weight'\]"):
        dcd_conv2d_train_forward(x, {k: v for k, v in params.items() if k != "weight"})
    with pytest.raises(TypeError, match=r"params must be a dict"):
        dcd_conv2d_train_forward(x, list(params.values()))
    with pytest.raises(ValueError, match=r"buffers is missing the running statistic\(s\) "
                                         r"\['bn2_running_var'\]"):
        dcd_conv2d_eval_forward(x, params, {k: v for k, v in buffers.items()
                                            if k != "bn2_running_var"}, backend="numpy")
    with pytest.raises(TypeError, match=r"buffers must be a dict"):
        dcd_conv2d_eval_forward(x, params, None, backend="numpy")
    buffers["bn1_running_var"] = -buffers["bn1_running_var"]
    with pytest.raises(ValueError, match=r"bn1_running_var must be >= 0"):
        dcd_conv2d_eval_forward(x, params, buffers, backend="numpy")


def test_bad_inputs_are_named():
    _, x, params, _ = small()
    with pytest.raises(ValueError, match=r"x has C_in=3 channels"):
        dcd_conv2d_train_forward(x[:, :3], params, backend="numpy")
    with pytest.raises(TypeError, match=r"mixed dtypes"):
        dcd_conv2d_train_forward(x.astype(np.float32), params, backend="numpy")
    with pytest.raises(ValueError, match=r"training mode normalises its latent features with "
                                         r"batch statistics and needs N H_out W_out > 1"):
        dcd_conv2d_train_forward(x[:1, :, :1, :1], params, backend="numpy")
    bad = x.copy()
    bad[1, 2, 3, 0] = np.nan
    with pytest.raises(ValueError, match=re.escape("x contains 1 non-finite value(s); the first "
                                                   "is nan at index (1, 2, 3, 0)")):
        dcd_conv2d_train_forward(bad, params, backend="numpy")
    with pytest.raises(TypeError, match=r"x is a CUDA device array, but backend 'numpy'"):
        dcd_conv2d_train_forward(FakeDeviceArray(x), params, backend="numpy")


@pytest.mark.parametrize("mode", MODES)
def test_backward_checks_its_upstream_gradient(mode):
    c, x, params, buffers = small(bias=True)
    y, cache = run(mode, x, params, buffers, c)
    assert_upstream_checked(lambda dy, cache: backward(mode, dy, cache), cache, y)
    other = "eval" if mode == "train" else "train"
    with pytest.raises(TypeError, match=rf"cache must be the cache returned by "
                                        rf"dcd_conv2d_{other}_forward"):
        backward(other, np.zeros_like(y), cache)


def relayout(a, layout):
    if layout == "fortran":
        return np.asfortranarray(a)
    if layout == "strided":
        return np.stack([a, -a], axis=-1)[..., 0]
    a = a.copy()
    a.flags.writeable = False
    return a


@pytest.mark.parametrize("backend", HOST_BACKENDS)
@pytest.mark.parametrize("layout", ["fortran", "strided", "read-only"])
def test_any_memory_layout_works_and_is_not_modified(backend, layout):
    """Views, Fortran order and read-only arrays as x, dy and every parameter and buffer: the
    contiguous call's results (float64: 1e-12), inputs untouched."""
    c, x, params, buffers = small(bias=True, groups=2)
    for mode in MODES:
        y_ref, cache = run(mode, x, params, buffers, c, backend=backend)
        dy = np.random.default_rng(3).standard_normal(y_ref.shape)
        dx_ref, grads_ref = backward(mode, dy, cache)
        x2 = relayout(x, layout)
        p2 = {k: relayout(v, layout) for k, v in params.items()}
        b2 = {k: relayout(v, layout) for k, v in buffers.items()}
        y, cache = run(mode, x2, p2, b2, c, backend=backend)
        dx, grads = backward(mode, relayout(dy, layout), cache)
        np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(dx, dx_ref, rtol=1e-12, atol=1e-12)
        for name, grad in grads_ref.items():
            np.testing.assert_allclose(grads[name], grad, rtol=1e-12, atol=1e-12, err_msg=name)
        np.testing.assert_array_equal(x2, x)
        for name, value in params.items():
            np.testing.assert_array_equal(p2[name], value, err_msg=name)
