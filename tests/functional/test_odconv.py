"""ODConv (functional/odconv.py): the public pair against central differences in training
mode (BatchNorm over the batch) and in evaluation mode (running statistics); which heads exist
(the official rule); the x / output scaling against the paper's kernel form (eq. 2); the
backends against the NumPy reference; an own PyTorch implementation from the formula; errors."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from dynconv_np import gradcheck
from dynconv_np.functional import (conv2d_forward, odconv2d_backward, odconv2d_forward,
                                   per_sample_conv2d_forward)
from dynconv_np.functional.odconv import HEADS, odconv_heads, odconv_param_names

from .checks import assert_upstream_checked
from ..strategies import conv_configs, temperatures

HOST_BACKENDS = ["numpy", "loops", "numba"]


def _geometry(c):
    return dict(stride=c["stride"], padding=c["padding"], dilation=c["dilation"],
                groups=c["groups"])


def _x(rng, c, dtype=np.float64):
    """Standard normal plus a per-(sample, channel) offset, so that the pooled means, hence
    the branch's pre-BatchNorm units, spread across the batch (a batch variance near eps
    would make the BatchNorm nearly singular and central differences inaccurate)."""
    shape = (c["n"], c["in_channels"]) + c["size"]
    return (rng.standard_normal(shape) + rng.standard_normal(shape[:2] + (1, 1))).astype(dtype)


def _heads(c, k):
    return odconv_heads(c["in_channels"], c["out_channels"], c["kernel"], c["groups"], k)


def _params(rng, c, k, hidden, dtype=np.float64):
    """Every parameter for config ``c`` (exactly the heads it has), away from the trivial
    initialisation (BatchNorm gamma 1, beta 0, zero head biases) so every gradient is tested."""
    c_in, c_out = c["in_channels"], c["out_channels"]
    sizes = {"channel": c_in, "filter": c_out, "spatial": c["kernel"][0] * c["kernel"][1],
             "kernel": k}
    p = {"weight": rng.standard_normal((k, c_out, c_in // c["groups"]) + c["kernel"]),
         "fc_weight": 2 * rng.standard_normal((hidden, c_in)),
         "bn_weight": 1 + 0.3 * rng.standard_normal(hidden),
         "bn_bias": 0.5 * rng.standard_normal(hidden)}
    for head in _heads(c, k):
        p[f"{head}_fc_weight"] = rng.standard_normal((sizes[head], hidden))
        p[f"{head}_fc_bias"] = rng.standard_normal(sizes[head])
    return {name: value.astype(dtype) for name, value in p.items()}


def _stats(rng, hidden, dtype=np.float64):
    return (rng.standard_normal(hidden).astype(dtype),
            rng.uniform(0.5, 2.0, hidden).astype(dtype))


def _small(c_in=2, c_out=3, kernel=(3, 3), groups=1, k=3, n=3, dtype=np.float64, seed=0):
    config = dict(n=n, in_channels=c_in, out_channels=c_out, kernel=kernel, groups=groups,
                  size=(5, 5))
    rng = np.random.default_rng(seed)
    return _x(rng, config, dtype), _params(rng, config, k, 4, dtype)


def _mode(training, rng, hidden, dtype=np.float64):
    if training:
        return dict(training=True)
    running_mean, running_var = _stats(rng, hidden, dtype)
    return dict(training=False, running_mean=running_mean, running_var=running_var)


# -- gradients against central differences ------------------------------------------------------
@pytest.mark.parametrize("training", [True, False])
@given(config=conv_configs(), n=st.integers(3, 4), k=st.integers(1, 3), hidden=st.integers(1, 4),
       tau=temperatures, seed=st.integers(0, 2**16))
def test_backward_matches_finite_differences(training, config, n, k, hidden, tau, seed):
    """float64, backend "numpy", x and every parameter, in both BatchNorm modes.

    Smooth except at the branch's ReLU kinks (met with probability ~1e-6). Training mode
    (N = 3 or 4, so the batch variance is not that of a single pair) couples the samples
    through the batch statistics; the offsets in x keep the batch variance of every hidden
    unit O(1), far from eps = 1e-5, so the BatchNorm's higher derivatives are O(1) and the
    truncation error stays ~1e-10. Evaluation mode (N from the configuration, N = 1 included)
    is an affine BatchNorm."""
    rng = np.random.default_rng(seed)
    if training:
        config = dict(config, n=n)
    inputs = {"x": _x(rng, config), **_params(rng, config, k, hidden)}
    mode = _mode(training, rng, hidden)

    def forward(x, **params):
        return odconv2d_forward(x, params, tau, **_geometry(config), **mode, backend="numpy")

    def backward(dy, cache):
        dx, grads = odconv2d_backward(dy, cache)
        return {"x": dx, **grads}

    report = gradcheck(forward, inputs, backward=backward)
    assert {r.name for r in report.results} == set(inputs)


# -- the heads: the official rule --------------------------------------------------------------
@pytest.mark.parametrize("c_in, c_out, kernel, groups, k, expected", [
    (4, 8, (3, 3), 1, 4, HEADS),
    (8, 8, (3, 3), 8, 4, ("channel", "spatial", "kernel")),      # depthwise: no filter head
    (8, 16, (3, 3), 8, 4, HEADS),                                # depthwise x2: it stays
    (8, 8, (3, 3), 4, 4, HEADS),                                 # grouped, not depthwise
    (4, 8, (1, 1), 1, 4, ("channel", "filter", "kernel")),       # 1 x 1: no spatial head
    (4, 8, (1, 3), 1, 4, HEADS),                                 # 1 x 3 keeps it
    (4, 8, (3, 3), 1, 1, ("channel", "filter", "spatial")),      # K = 1: no kernel head
    (8, 8, (1, 1), 8, 1, ("channel",)),
])
def test_heads_follow_the_official_rule(c_in, c_out, kernel, groups, k, expected):
    assert odconv_heads(c_in, c_out, kernel, groups, k) == expected
    names = odconv_param_names(expected)
    assert names[:4] == ("weight", "fc_weight", "bn_weight", "bn_bias")
    assert len(names) == 4 + 2 * len(expected)


@settings(max_examples=15)
@pytest.mark.parametrize("training", [True, False])
@given(config=conv_configs(), k=st.integers(1, 3), tau=temperatures, seed=st.integers(0, 2**16))
def test_scaling_x_and_the_output_is_the_papers_kernel_form(training, config, k, tau, seed):
    """y = conv(x, W~_n) with W~_n[o, c, i, j] = alpha_f[o] alpha_c[g(o) Cg + c] alpha_s[i, j]
    sum_k alpha_w[k] W_k[o, c, i, j] (eq. 2 with shared factors): the official order (scale x
    by alpha_c, the output by alpha_f) is the same function, grouped convolutions included."""
    rng = np.random.default_rng(seed)
    config = dict(config, n=max(config["n"], 2))
    x, params = _x(rng, config), _params(rng, config, k, 3)
    y, cache = odconv2d_forward(x, params, tau, **_geometry(config), **_mode(training, rng, 3),
                                backend="numpy")
    a = cache["alphas"]
    n, c_in, c_out, groups = config["n"], config["in_channels"], config["out_channels"], \
        config["groups"]
    kh, kw = config["kernel"]
    pi = a.get("kernel", np.ones((n, 1)))
    kernels = np.einsum("nk,k...->n...", pi, params["weight"])
    kernels = kernels * a.get("spatial", np.ones((n, kh * kw))).reshape(n, 1, 1, kh, kw)
    kernels = kernels * a.get("filter", np.ones((n, c_out)))[:, :, None, None, None]
    c_group = c_in // groups
    alpha_c = a["channel"].reshape(n, groups, 1, c_group)
    alpha_c = np.broadcast_to(alpha_c, (n, groups, c_out // groups, c_group))
    kernels = kernels * alpha_c.reshape(n, c_out, c_group)[:, :, :, None, None]
    expected, _ = per_sample_conv2d_forward(x, kernels, None, **_geometry(config),
                                            backend="numpy")
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)
    assert set(a) == set(_heads(config, k))
    assert all(np.all((a[h] >= 0) & (a[h] <= 1)) for h in a)  # (0, 1) up to rounding
    if "kernel" in a:
        np.testing.assert_allclose(a["kernel"].sum(axis=1), 1.0, rtol=1e-14)


@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_one_kernel_of_size_one_is_an_ordinary_convolution_between_the_scalings(backend):
    """K = 1 and 1 x 1 (the official ``_forward_impl_pw1x``): y = alpha_f conv(alpha_c x, W_1),
    one kernel for the whole batch; dW is summed over the batch."""
    x, params = _small(c_in=4, c_out=6, kernel=(1, 1), groups=2, k=1)
    y, cache = odconv2d_forward(x, params, 1.0, groups=2, backend=backend)
    a = cache["alphas"]
    assert set(a) == {"channel", "filter"}
    u, _ = conv2d_forward(x * a["channel"][:, :, None, None], params["weight"][0], groups=2,
                          backend="numpy")
    np.testing.assert_allclose(y, u * a["filter"][:, :, None, None], rtol=1e-13, atol=1e-13)
    _, grads = odconv2d_backward(np.ones_like(y), cache)
    assert grads["weight"].shape == (1, 6, 2, 1, 1)


def test_training_mode_couples_the_samples_and_evaluation_mode_does_not():
    """The branch's BatchNorm: in training mode sample 0's output depends on sample 1 (the
    batch statistics); with running statistics it does not."""
    x, params = _small(n=3)
    x2 = x.copy()
    x2[1] += 1.0
    rng = np.random.default_rng(1)
    for training, mode in ((True, dict(training=True)), (False, _mode(False, rng, 4))):
        y, _ = odconv2d_forward(x, params, 1.0, padding=1, **mode, backend="numpy")
        y2, _ = odconv2d_forward(x2, params, 1.0, padding=1, **mode, backend="numpy")
        changed = not np.allclose(y[0], y2[0], rtol=1e-12, atol=1e-12)
        assert changed == training


def test_training_mode_returns_the_batch_statistics():
    """cache["batch_mean"] and cache["batch_var"] (biased) of the pre-BatchNorm units, N."""
    x, params = _small(n=4)
    _, cache = odconv2d_forward(x, params, 1.0, padding=1, backend="numpy")
    pre = x.mean(axis=(2, 3)) @ params["fc_weight"].T
    np.testing.assert_allclose(cache["batch_mean"], pre.mean(axis=0), rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(cache["batch_var"], pre.var(axis=0), rtol=1e-12)
    assert cache["batch_count"] == 4
    _, eval_cache = odconv2d_forward(x, params, 1.0, padding=1, training=False,
                                     running_mean=np.zeros(4), running_var=np.ones(4))
    assert "batch_mean" not in eval_cache


# -- the backends ---------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["numba", "loops"])
@pytest.mark.parametrize("dtype, tolerance", [(np.float64, 1e-10), (np.float32, 5e-4)])
@pytest.mark.parametrize("training", [True, False])
@given(config=conv_configs(), k=st.integers(1, 3), tau=temperatures, seed=st.integers(0, 2**16))
def test_backends_agree_with_the_numpy_reference(backend, dtype, tolerance, training, config,
                                                 k, tau, seed):
    """y, every attention, dx and every gradient, in both dtypes; inputs untouched.

    Tolerance relative to each output's scale max(1, max |reference|): the backends differ in
    the order of the convolution's and the aggregation's sums (<= ~150 terms: 150 eps, 2e-5 in
    float32); the branch's BatchNorm then divides by the batch standard deviation and the heads
    by tau (>= 0.2), amplifying a difference in pooled by up to ~|F| |W_head| / (std tau)
    ~ 10 on these draws: 5e-4 (float32) and 1e-10 (float64) leave margin; an indexing error
    is O(1)."""
    rng = np.random.default_rng(seed)
    config = dict(config, n=max(config["n"], 2)) if training else config
    x, params = _x(rng, config, dtype), _params(rng, config, k, 3, dtype)
    mode = _mode(training, rng, 3, dtype)
    before = {"x": x.copy(), **{name: value.copy() for name, value in params.items()}}
    results = {}
    for name in ("numpy", backend):
        y, cache = odconv2d_forward(x, params, tau, **_geometry(config), **mode, backend=name)
        dy = np.random.default_rng(seed + 1).standard_normal(y.shape).astype(dtype)
        dx, grads = odconv2d_backward(dy, cache)
        results[name] = {"y": y, "dx": dx, **grads,
                         **{f"alpha_{h}": a for h, a in cache["alphas"].items()}}
    want, got = results["numpy"], results[backend]
    assert got.keys() == want.keys()
    for name, value in want.items():
        assert got[name].dtype == dtype, name
        scale = max(1.0, float(np.abs(value).max()))
        np.testing.assert_allclose(got[name], value, rtol=tolerance, atol=tolerance * scale,
                                   err_msg=name)
    for name, value in before.items():
        np.testing.assert_array_equal({"x": x, **params}[name], value, err_msg=f"{name} modified")


# -- PyTorch, written from the formula (the paper's kernel form) --------------------------------
def torch_odconv2d(x, params, tau, stride, padding, dilation, groups, training,
                   running_mean=None, running_var=None, eps=1e-5, momentum=0.1):
    """eq. 2 with the official shared factors, every attention multiplied into the kernel:
    W~_n = alpha_f alpha_c alpha_s sum_k alpha_w[k] W_k, y[n] = conv2d(x[n], W~_n). In training
    mode ``running_mean`` / ``running_var`` (tensors or None) are updated in place by
    F.batch_norm with ``momentum``."""
    import torch
    import torch.nn.functional as F
    n, c_in = x.shape[:2]
    k, c_out, c_group, kh, kw = params["weight"].shape
    h = F.linear(x.mean(dim=(2, 3)), params["fc_weight"])
    h = F.relu(F.batch_norm(h, running_mean, running_var, params["bn_weight"],
                            params["bn_bias"], training=training, momentum=momentum, eps=eps))

    def head(name, size, last):
        if f"{name}_fc_weight" not in params:
            return torch.ones(n, size, dtype=x.dtype)
        z = F.linear(h, params[f"{name}_fc_weight"], params[f"{name}_fc_bias"]) / tau
        return torch.softmax(z, dim=1) if last else torch.sigmoid(z)

    alpha_c, alpha_f = head("channel", c_in, False), head("filter", c_out, False)
    alpha_s, alpha_w = head("spatial", kh * kw, False), head("kernel", k, True)
    w = torch.einsum("nk,koc...->noc...", alpha_w, params["weight"])
    w = w * alpha_s.reshape(n, 1, 1, kh, kw) * alpha_f.reshape(n, c_out, 1, 1, 1)
    alpha_c = alpha_c.reshape(n, groups, 1, c_group).expand(n, groups, c_out // groups, c_group)
    w = w * alpha_c.reshape(n, c_out, c_group, 1, 1)
    return torch.cat([F.conv2d(x[i:i + 1], w[i], None, stride, padding, dilation, groups)
                      for i in range(n)])


CROSS_CONFIGS = [  # (C_in, C_out, kernel, stride, padding, dilation, groups, K, N)
    (3, 4, (3, 3), 1, 1, 1, 1, 4, 3),
    (4, 6, (3, 2), 2, (1, 0), (2, 1), 2, 3, 2),
    (4, 4, (3, 3), 1, 1, 1, 4, 2, 3),   # depthwise: no filter head
    (4, 8, (1, 1), 1, 0, 1, 1, 1, 4),   # K = 1, 1 x 1: channel and filter heads only
]


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("c_in, c_out, kernel, stride, padding, dilation, groups, k, n",
                         CROSS_CONFIGS)
def test_matches_an_own_pytorch_implementation(training, c_in, c_out, kernel, stride, padding,
                                               dilation, groups, k, n):
    """float64, y and every gradient (autograd through the kernel form above), both BatchNorm
    modes. Max error 2e-13 (dfc_weight for the N = 2 batch, where the BatchNorm's gradient is a
    cancellation of O(1 / std) terms), ~1e-14 otherwise; asserted at 1e-11."""
    torch = pytest.importorskip(
        "torch", reason="the cross-check runs our PyTorch version of the formula")
    rng = np.random.default_rng(11)
    config = dict(n=n, in_channels=c_in, out_channels=c_out, kernel=kernel, groups=groups,
                  size=(6, 5))
    x, params = _x(rng, config), _params(rng, config, k, 4)
    mode = _mode(training, rng, 4)
    geometry = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    y, cache = odconv2d_forward(x, params, 0.7, **geometry, **mode, backend="numpy")
    dy = rng.standard_normal(y.shape)
    dx, grads = odconv2d_backward(dy, cache)
    t = {name: torch.tensor(value, requires_grad=True) for name, value in
         {"x": x, **params}.items()}
    stats = {} if training else {"running_mean": torch.tensor(mode["running_mean"]),
                                 "running_var": torch.tensor(mode["running_var"])}
    y_t = torch_odconv2d(t["x"], t, 0.7, stride, padding, dilation, groups, training, **stats)
    y_t.backward(torch.tensor(dy))
    np.testing.assert_allclose(y, y_t.detach().numpy(), rtol=1e-11, atol=1e-11)
    assert set(grads) == set(params)
    for name, grad in {"x": dx, **grads}.items():
        np.testing.assert_allclose(grad, t[name].grad.numpy(), rtol=1e-11, atol=1e-11,
                                   err_msg=name)


# -- the NaN/inf screens and the upstream checks ------------------------------------------------
@pytest.mark.parametrize("backend", HOST_BACKENDS)
@pytest.mark.parametrize("bad", [np.nan, -np.inf])
def test_a_non_finite_x_is_named_by_its_element(backend, bad):
    x, params = _small()
    x[2, 1, 0, 4] = bad
    with pytest.raises(ValueError, match=rf"x contains 1 non-finite value\(s\); the first is "
                                         rf"{bad} at index \(2, 1, 0, 4\)"):
        odconv2d_forward(x, params, 1.0, padding=1, backend=backend)


@pytest.mark.parametrize("backend", HOST_BACKENDS)
@pytest.mark.parametrize("groups", [1, 2])  # with and without the filter head
def test_a_non_finite_dy_is_named_by_its_element(backend, groups):
    x, params = _small(c_in=2, c_out=2, groups=groups)
    assert ("filter_fc_weight" in params) == (groups == 1)
    y, cache = odconv2d_forward(x, params, 1.0, padding=1, groups=groups, backend=backend)
    for bad, index in ((np.nan, (0, 1, 4, 4)), (np.inf, (2, 0, 1, 3))):
        dy = np.ones_like(y)
        dy[index] = bad
        with pytest.raises(ValueError, match=rf"dy contains 1 non-finite value\(s\); the first "
                                             rf"is {bad} at index {re_index(index)}"):
            odconv2d_backward(dy, cache)
    dx, _ = odconv2d_backward(np.ones_like(y), cache)  # the cache is still usable
    assert np.isfinite(dx).all()


def re_index(index):
    return str(index).replace("(", r"\(").replace(")", r"\)")


@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_backward_checks_the_upstream_gradient_and_the_cache(backend):
    x, params = _small()
    y, cache = odconv2d_forward(x, params, 1.0, padding=1, backend=backend)
    assert_upstream_checked(odconv2d_backward, cache, y)


# -- arguments -------------------------------------------------------------------------------
def test_the_heads_must_match_the_configuration():
    x, params = _small(c_in=4, c_out=4, groups=4)  # depthwise: no filter head
    with pytest.raises(ValueError, match=r"missing \[\], unexpected \['filter_fc_bias', "
                                         r"'filter_fc_weight'\]; ODConv drops the filter head "
                                         r"\(in_channels == groups == out_channels = 4"):
        odconv2d_forward(x, {**params, "filter_fc_weight": np.zeros((4, 4)),
                             "filter_fc_bias": np.zeros(4)}, 1.0, padding=1, groups=4)
    x, params = _small()
    del params["kernel_fc_bias"]
    with pytest.raises(ValueError, match=r"missing \['kernel_fc_bias'\], unexpected \[\]"):
        odconv2d_forward(x, params, 1.0, padding=1)
    x, params = _small(kernel=(1, 1), k=1)
    with pytest.raises(ValueError, match=r"ODConv drops the spatial head \(the kernel is 1 x 1\),"
                                         r" the kernel head \(K = 1\)"):
        odconv2d_forward(x, {**params, "spatial_fc_weight": np.zeros((1, 4))}, 1.0)
    with pytest.raises(TypeError, match=r"params must be a dict holding at least 'weight'"):
        odconv2d_forward(x, list(params.values()), 1.0)


@pytest.mark.parametrize("name, value, error, message", [
    ("fc_weight", np.zeros((4, 3)), ValueError, r"fc_weight must have shape \(4, 2\); received "
                                                r"\(4, 3\)"),
    ("bn_weight", np.zeros(5), ValueError, r"bn_weight must have shape \(4,\); received \(5,\)"),
    ("channel_fc_weight", np.zeros((3, 4)), ValueError,
     r"channel_fc_weight must have shape \(2, 4\); received \(3, 4\)"),
    ("filter_fc_bias", np.zeros(2), ValueError, r"filter_fc_bias must have shape \(3,\)"),
    ("spatial_fc_weight", np.zeros((8, 4)), ValueError,
     r"spatial_fc_weight must have shape \(9, 4\)"),
    ("kernel_fc_weight", np.zeros((2, 4)), ValueError,
     r"kernel_fc_weight must have shape \(3, 4\)"),
    ("kernel_fc_bias", np.array([0.0, np.nan, 1.0]), ValueError,
     r"kernel_fc_bias contains 1 non-finite value\(s\); the first is nan at index \(1,\)"),
    ("bn_bias", np.zeros(4, np.float32), TypeError, r"mixed dtypes.*bn_bias=float32"),
    ("weight", np.zeros((3, 3, 2, 3)), ValueError, r"weight must be 5-D"),
])
def test_a_bad_parameter_is_named(name, value, error, message):
    x, params = _small()
    params[name] = value
    with pytest.raises(error, match=message):
        odconv2d_forward(x, params, 1.0, padding=1, backend="numpy")


def test_batchnorm_mode_arguments_are_checked():
    x, params = _small()
    with pytest.raises(ValueError, match=r"needs N >= 2 samples; received x shape \(1, 2, 5, 5\)"
                                         r" \(use training=False"):
        odconv2d_forward(x[:1], params, 1.0, padding=1)
    with pytest.raises(ValueError, match=r"running_mean and running_var are read in evaluation "
                                         r"mode only"):
        odconv2d_forward(x, params, 1.0, padding=1, running_mean=np.zeros(4))
    with pytest.raises(ValueError, match=r"running_var is required in evaluation mode"):
        odconv2d_forward(x, params, 1.0, padding=1, training=False, running_mean=np.zeros(4))
    with pytest.raises(ValueError, match=r"running_mean must have shape \(4,\); received \(3,\)"):
        odconv2d_forward(x, params, 1.0, padding=1, training=False, running_mean=np.zeros(3),
                         running_var=np.ones(4))
    with pytest.raises(ValueError, match=r"running_var must be >= 0 .* -1.0 at index 2"):
        odconv2d_forward(x, params, 1.0, padding=1, training=False, running_mean=np.zeros(4),
                         running_var=np.array([1.0, 1.0, -1.0, 1.0]))
    with pytest.raises(TypeError, match=r"mixed dtypes.*running_var=float32"):
        odconv2d_forward(x, params, 1.0, padding=1, training=False, running_mean=np.zeros(4),
                         running_var=np.ones(4, np.float32))
    with pytest.raises(TypeError, match=r"training must be True or False; received 'eval'"):
        odconv2d_forward(x, params, 1.0, padding=1, training="eval")
    with pytest.raises(ValueError, match=r"eps must be finite and in \[0, inf\); received -1"):
        odconv2d_forward(x, params, 1.0, padding=1, eps=-1)
    # N = 1 is fine in evaluation mode
    y, _ = odconv2d_forward(x[:1], params, 1.0, padding=1, training=False,
                            running_mean=np.zeros(4), running_var=np.ones(4))
    assert y.shape == (1, 3, 5, 5)


def test_temperature_backend_and_geometry_errors_are_named():
    x, params = _small()
    for tau, error in ((0.0, ValueError), (np.inf, ValueError), ("1", TypeError)):
        with pytest.raises(error, match=r"temperature \(tau\)"):
            odconv2d_forward(x, params, tau, padding=1)
    with pytest.raises(ValueError, match=r"ODConv runs on a host backend .* "
                                         r"received backend='cuda'"):
        odconv2d_forward(x, params, 1.0, padding=1, backend="cuda")
    with pytest.raises(ValueError, match=r"kernel height .* larger than the padded input"):
        odconv2d_forward(x[:, :, :2], params, 1.0)
    with pytest.raises(ValueError, match=r"x has C_in=4 channels"):
        odconv2d_forward(np.concatenate([x, x], axis=1), params, 1.0, padding=1)
