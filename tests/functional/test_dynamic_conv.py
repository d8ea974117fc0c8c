"""Dynamic convolution (functional/dynamic_conv.py): the public pair against central
differences, the composition of the public stages, the backends against the NumPy reference,
the attention branch's two routes (a backend's one call or the composition: one cache), the
NaN/inf screen of x and dy, and argument and upstream errors."""
import inspect
import re
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from dynconv_np import gradcheck
from dynconv_np.backends import DEFAULT_BACKEND, get_backend
from dynconv_np.functional import (aggregate_kernels_forward, attention_forward,
                                   dynamic_conv2d_backward, dynamic_conv2d_forward,
                                   global_avg_pool_forward, per_sample_conv2d_forward)
from dynconv_np.functional.attention import ATTENTION_PARAMS
from dynconv_np.functional.conv import conv_geometry
from dynconv_np.functional.dynamic_conv import (_attention_stage, _attention_stage_backward,
                                                _dynamic_kernels, mixes_outputs)

from .checks import FakeDeviceArray, assert_upstream_checked
from ..strategies import conv_configs, temperatures

HOST_BACKENDS = ["numpy", "loops", "numba"]
DTYPES = st.sampled_from([np.float32, np.float64])


def _params(rng, c, k, hidden, dtype=np.float64, fc1_bias=True):
    """The layer's parameters for config ``c``; FC2 scaled up so that pi is far from uniform
    (its gradient is then not tiny)."""
    c_in, c_out = c["in_channels"], c["out_channels"]
    p = {"weight": rng.standard_normal((k, c_out, c_in // c["groups"]) + c["kernel"]),
         "fc1_weight": rng.standard_normal((hidden, c_in)),
         "fc1_bias": rng.standard_normal(hidden),
         "fc2_weight": 3 * rng.standard_normal((k, hidden)),
         "fc2_bias": rng.standard_normal(k)}
    if c["bias"]:
        p["bias"] = rng.standard_normal((k, c_out))
    if not fc1_bias:
        del p["fc1_bias"]
    return {name: value.astype(dtype) for name, value in p.items()}


def _x(rng, c, dtype=np.float64):
    return rng.standard_normal((c["n"], c["in_channels"]) + c["size"]).astype(dtype)


def _geometry(c):
    return dict(stride=c["stride"], padding=c["padding"], dilation=c["dilation"],
                groups=c["groups"])


def _small(backend="numpy", bias=True, dtype=np.float64, seed=0):
    """x (2, 2, 5, 5) and the parameters of a 3x3, padding 1 layer 2 -> 3 with K = 3."""
    config = dict(n=2, in_channels=2, out_channels=3, kernel=(3, 3), groups=1, bias=bias,
                  size=(5, 5))
    rng = np.random.default_rng(seed)
    return _x(rng, config, dtype), _params(rng, config, 3, 4, dtype)


@given(config=conv_configs(), k=st.integers(1, 4), hidden=st.integers(1, 4), tau=temperatures,
       fc1_bias=st.booleans(), seed=st.integers(0, 2**16))
def test_backward_matches_finite_differences(config, k, hidden, tau, fc1_bias, seed):
    """The public pair, float64, backend "numpy", with respect to x and every parameter.

    The loss is smooth except at the attention's ReLU kinks (met with probability ~eps =
    1e-6): y is linear in the kernels given pi, and pi is a softmax whose third derivative is
    O(|W2|^3 / tau^3); for tau >= 0.2 the truncation error eps^2 |L'''| stays below ~1e-9, and
    round-off is ~1e-16 |L| / eps ~ 1e-9 for |L| ~ 10 (gradcheck adds that floor to atol)."""
    _check_gradients(config, k, hidden, tau, fc1_bias, seed)


# conv_configs draws every kind of convolution; about 40 % of these mix outputs (small maps,
# not depthwise), and the rest are filtered out
FEW_MIX_OUTPUTS = settings(suppress_health_check=[HealthCheck.filter_too_much])


@FEW_MIX_OUTPUTS
@given(config=conv_configs(max_extra_side=1), k=st.integers(1, 4), hidden=st.integers(1, 4),
       tau=temperatures, fc1_bias=st.booleans(), seed=st.integers(0, 2**16))
def test_backward_of_mixed_outputs_matches_finite_differences(config, k, hidden, tau, fc1_bias,
                                                              seed):
    """The same check on the configurations whose small maps make the layer mix outputs."""
    _check_gradients(config, k, hidden, tau, fc1_bias, seed, mixed=True)


def _check_gradients(config, k, hidden, tau, fc1_bias, seed, mixed=None):
    rng = np.random.default_rng(seed)
    inputs = {"x": _x(rng, config), **_params(rng, config, k, hidden, fc1_bias=fc1_bias)}
    if mixed is not None:
        assume(_mixes_outputs(config, inputs["x"], inputs) == mixed)

    def forward(x, **params):
        return dynamic_conv2d_forward(x, params, tau, **_geometry(config), backend="numpy")

    def backward(dy, cache):
        dx, grads = dynamic_conv2d_backward(dy, cache)
        return {"x": dx, **grads}

    report = gradcheck(forward, inputs, backward=backward)
    assert {r.name for r in report.results} == set(inputs)


def _mixes_outputs(config, x, params):
    geometry = conv_geometry(config["stride"], config["padding"], config["dilation"],
                             config["groups"])
    return mixes_outputs(x.shape, params["weight"].shape, geometry, get_backend("numpy"))


@settings(max_examples=10)
@given(config=conv_configs(), k=st.integers(1, 4), tau=temperatures, seed=st.integers(0, 2**16))
def test_forward_is_the_composition_of_the_public_stages(config, k, tau, seed):
    """pool -> attention -> aggregation -> per-sample convolution, each stage public: the
    same operations in the same order, so the results are bitwise equal (where the layer
    aggregates kernels; small maps mix outputs, tested below)."""
    rng = np.random.default_rng(seed)
    x, params = _x(rng, config), _params(rng, config, k, 3)
    assume(not _mixes_outputs(config, x, params))
    pooled, _ = global_avg_pool_forward(x, backend="numpy")
    pi, _ = attention_forward(pooled, *(params[name] for name in ATTENTION_PARAMS), tau)
    (w_n, b_n), _ = aggregate_kernels_forward(pi, params["weight"], params.get("bias"),
                                              backend="numpy")
    expected, _ = per_sample_conv2d_forward(x, w_n, b_n, **_geometry(config), backend="numpy")
    y, cache = dynamic_conv2d_forward(x, params, tau, **_geometry(config), backend="numpy")
    np.testing.assert_array_equal(y, expected)
    np.testing.assert_array_equal(cache["pi"], pi)
    got_w, got_b, got_pi, _ = _dynamic_kernels(x, params, tau, get_backend("numpy"))
    np.testing.assert_array_equal(got_w, w_n)
    np.testing.assert_array_equal(got_pi, pi)
    if b_n is None:
        assert got_b is None
    else:
        np.testing.assert_array_equal(got_b, b_n)


@FEW_MIX_OUTPUTS
@given(config=conv_configs(max_extra_side=1), k=st.integers(1, 4), tau=temperatures,
       dtype=DTYPES, backend=st.sampled_from(HOST_BACKENDS), seed=st.integers(0, 2**16))
def test_mixing_outputs_on_small_maps_equals_aggregating_kernels(config, k, tau, dtype, backend,
                                                                  seed):
    """On maps of at most MIX_OUTPUTS_UP_TO positions (not depthwise) the layer computes
    sum_k pi_k conv(x, W_k) + b_n instead of conv(x, sum_k pi_k W_k) + b_n: the same function.

    Tolerance, derived: each route sums m = Cg kh kw products, K mixed terms and the K bias
    terms (plus one addition), so each is within m eps |.| of the exact value, with
    |.| = conv(|x|, sum_k pi_k |W_k|) + sum_k pi_k |b_k| (pi > 0), and the two routes within
    twice that of each other."""
    rng = np.random.default_rng(seed)
    x, params = _x(rng, config, dtype), _params(rng, config, k, 3, dtype)
    assume(_mixes_outputs(config, x, params))
    y, cache = dynamic_conv2d_forward(x, params, tau, **_geometry(config), backend=backend)
    assert cache["mixed_outputs"]
    pi = cache["pi"]
    (w_n, b_n), _ = aggregate_kernels_forward(pi, params["weight"], params.get("bias"),
                                              backend="numpy")
    aggregated, _ = per_sample_conv2d_forward(x, w_n, b_n, **_geometry(config), backend="numpy")
    absolute = {name: np.abs(value) for name, value in params.items()}
    (w_abs, b_abs), _ = aggregate_kernels_forward(pi, absolute["weight"], absolute.get("bias"),
                                                  backend="numpy")
    scale, _ = per_sample_conv2d_forward(np.abs(x), w_abs, b_abs, **_geometry(config),
                                         backend="numpy")
    c_group, kh, kw = params["weight"].shape[2:]
    terms = c_group * kh * kw + 2 * k + 1
    np.testing.assert_array_less(np.abs(y - aggregated),
                                 2 * terms * np.finfo(dtype).eps * scale + np.finfo(dtype).tiny)


@pytest.mark.parametrize("backend", ["numba", "loops"])
@pytest.mark.parametrize("dtype, tolerance", [(np.float64, 1e-10), (np.float32, 2e-4)])
@given(config=conv_configs(), k=st.integers(1, 4), tau=temperatures, fc1_bias=st.booleans(),
       seed=st.integers(0, 2**16))
def test_backends_agree_with_the_numpy_reference(backend, dtype, tolerance, config, k, tau,
                                                 fc1_bias, seed):
    """y, pi, dx and every gradient, in both dtypes; dtypes kept, inputs untouched.

    Tolerance, relative to each output's scale max(1, max |reference|): every entry is a sum
    of at most ~150 products (81 output positions for a kernel gradient, C_out Cg kh kw <= 144
    for dpi), summed in another order by each backend, then through the softmax (whose
    derivative scales errors by |W2| / tau <= ~50). Worst-case round-off is m eps ~ 150 eps:
    2e-5 in float32, 3e-14 in float64; 2e-4 and 1e-10 leave a margin of 10 (float32) and
    well over 100 (float64, where the softmax's amplification matters most), while an indexing
    error changes results by O(1)."""
    rng = np.random.default_rng(seed)
    x, params = _x(rng, config, dtype), _params(rng, config, k, 3, dtype, fc1_bias)
    before = {"x": x.copy(), **{name: value.copy() for name, value in params.items()}}
    results = {}
    for name in ("numpy", backend):
        y, cache = dynamic_conv2d_forward(x, params, tau, **_geometry(config), backend=name)
        dy = np.random.default_rng(seed + 1).standard_normal(y.shape).astype(dtype)
        dx, grads = dynamic_conv2d_backward(dy, cache)
        results[name] = {"y": y, "pi": cache["pi"], "dx": dx, **grads}
    want, got = results["numpy"], results[backend]
    assert got.keys() == want.keys() == {"y", "pi", "dx", *params}
    for name, value in want.items():
        assert got[name].dtype == dtype, name
        scale = max(1.0, float(np.abs(value).max()))
        np.testing.assert_allclose(got[name], value, rtol=tolerance, atol=tolerance * scale,
                                   err_msg=name)
    for name, value in before.items():
        np.testing.assert_array_equal({"x": x, **params}[name], value, err_msg=f"{name} modified")


@pytest.mark.parametrize("backend", HOST_BACKENDS)
@pytest.mark.parametrize("layout", ["fortran", "strided", "read-only"])
def test_any_memory_layout_works_and_is_not_modified(backend, layout):
    """Views, Fortran order and read-only arrays (np.load(mmap_mode="r")) as x and as every
    parameter: the result is the contiguous call's. float64 sums of at most ~50 products in
    another order (another backend): ~50 eps = 1e-14 of each output's scale; 1e-12 leaves a
    margin of 100."""
    x, params = _small()
    y_ref, cache_ref = dynamic_conv2d_forward(x, params, 2.0, padding=1, backend="numpy")
    dy = np.random.default_rng(3).standard_normal(y_ref.shape)
    dx_ref, grads_ref = dynamic_conv2d_backward(dy, cache_ref)

    def relayout(a):
        if layout == "fortran":
            return np.asfortranarray(a)
        if layout == "strided":
            return np.stack([a, -a], axis=-1)[..., 0]
        a = a.copy()
        a.flags.writeable = False
        return a

    x2, params2 = relayout(x), {name: relayout(value) for name, value in params.items()}
    y, cache = dynamic_conv2d_forward(x2, params2, 2.0, padding=1, backend=backend)
    dx, grads = dynamic_conv2d_backward(relayout(dy), cache)
    for name, want, got in [("y", y_ref, y), ("dx", dx_ref, dx)] + [
            (name, grad, grads[name]) for name, grad in grads_ref.items()]:
        scale = max(1.0, float(np.abs(want).max()))
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * scale, err_msg=name)
    np.testing.assert_array_equal(x2, x)
    for name, value in params.items():
        np.testing.assert_array_equal(params2[name], value, err_msg=name)


# -- the attention branch's route: the backend's one call, or the composition --------------
def _attention_inputs(rng, n, c, hidden, k, dtype, fc1_bias=True):
    p = {"fc1_weight": rng.standard_normal((hidden, c)), "fc1_bias": rng.standard_normal(hidden),
         "fc2_weight": rng.standard_normal((k, hidden)), "fc2_bias": rng.standard_normal(k)}
    if not fc1_bias:
        del p["fc1_bias"]
    return (rng.standard_normal((n, c)).astype(dtype),
            {name: value.astype(dtype) for name, value in p.items()})


@given(n=st.integers(1, 5), c=st.integers(1, 9), hidden=st.integers(1, 6), k=st.integers(1, 6),
       tau=temperatures, dtype=st.sampled_from([np.float32, np.float64]),
       fc1_bias=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_numba_attention_route_matches_the_composition(n, c, hidden, k, tau, dtype, fc1_bias,
                                                       seed):
    """``_attention_stage`` on the numba engine (its one-call branch; the composition when the
    FC1 bias is absent) against the NumPy module (the composition, the judge): the same cache
    keys, pi, hidden and gradients, in both dtypes; either route's backward accepts either
    route's cache (one cache type); inputs untouched.

    Tolerance: every output is a short sum (at most 9 terms) of O(1) products passed through
    exp and a division; the two orders of evaluation differ by a few units of eps relative to
    the terms' magnitude, so rtol = atol = 200 eps (2.4e-5 in float32, 4.4e-14 in float64)
    leaves a margin of ~10 over that; a wrong index changes results by O(1).
    """
    numba, numpy = get_backend("numba"), get_backend("numpy")
    assert callable(getattr(numba, "attention_forward", None))  # the route under test exists
    assert getattr(numpy, "attention_forward", None) is None
    rng = np.random.default_rng(seed)
    pooled, params = _attention_inputs(rng, n, c, hidden, k, dtype, fc1_bias)
    before = {"pooled": pooled.copy(), **{name: value.copy() for name, value in params.items()}}
    want_pi, want_cache = _attention_stage(pooled, params, tau, numpy)
    got_pi, got_cache = _attention_stage(pooled, params, tau, numba)
    assert got_cache.keys() == want_cache.keys()
    assert got_cache["has_fc1_bias"] == want_cache["has_fc1_bias"] == fc1_bias
    assert got_cache["tau"] == want_cache["tau"] == tau
    tolerance = 200 * np.finfo(dtype).eps
    for name, value in (("pi", want_pi), ("hidden", want_cache["hidden"])):
        got = got_pi if name == "pi" else got_cache[name]
        assert got.dtype == dtype, name
        np.testing.assert_allclose(got, value, rtol=tolerance, atol=tolerance, err_msg=name)
    dpi = rng.standard_normal((n, k)).astype(dtype)
    want_dpooled, want_grads = _attention_stage_backward(dpi, want_cache, numpy)
    expected_keys = set(ATTENTION_PARAMS) - (set() if fc1_bias else {"fc1_bias"})
    assert set(want_grads) == expected_keys
    for cache, module in ((got_cache, numba), (got_cache, numpy), (want_cache, numba)):
        dpooled, grads = _attention_stage_backward(dpi, cache, module)
        assert set(grads) == expected_keys
        np.testing.assert_allclose(dpooled, want_dpooled, rtol=tolerance, atol=tolerance)
        for name, grad in want_grads.items():
            assert grads[name].dtype == dtype, name
            np.testing.assert_allclose(grads[name], grad, rtol=tolerance, atol=tolerance,
                                       err_msg=name)
    for name, value in before.items():
        np.testing.assert_array_equal({"pooled": pooled, **params}[name], value,
                                      err_msg=f"{name} was modified")


@given(n=st.integers(1, 4), c=st.integers(1, 6), hidden=st.integers(1, 5), k=st.integers(1, 5),
       tau=temperatures, seed=st.integers(0, 2**16))
def test_numba_attention_route_matches_finite_differences(n, c, hidden, k, tau, seed):
    """The numba engine's one-call branch, through ``_attention_stage`` and its backward, in
    float64 (tolerances as in tests/functional/test_attention.py)."""
    module = get_backend("numba")
    pooled, params = _attention_inputs(np.random.default_rng(seed), n, c, hidden, k, np.float64)

    def backward(dpi, cache):
        dpooled, grads = _attention_stage_backward(dpi, cache, module)
        return {"pooled": dpooled, **grads}

    gradcheck(lambda pooled, **p: _attention_stage(pooled, p, tau, module),
              {"pooled": pooled, **params}, backward=backward)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # (z - max) / tau -> -inf
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numba_attention_route_is_exact_at_the_smallest_temperature(dtype):
    """tau = the dtype's smallest normal (the least check_temperature accepts): both routes
    shift before dividing, exp((z - max z) / tau), so pi is the one-hot argmax, never the NaN
    of inf - inf that dividing first (z / tau overflows) would give; gradients finite."""
    numba, numpy = get_backend("numba"), get_backend("numpy")
    pooled, params = _attention_inputs(np.random.default_rng(0), 3, 4, 3, 2, dtype)
    params["fc2_weight"] *= 10
    tiny = float(np.finfo(dtype).tiny)
    want, want_cache = _attention_stage(pooled, params, tiny, numpy)
    got, got_cache = _attention_stage(pooled, params, tiny, numba)
    np.testing.assert_array_equal(got, want)
    assert set(np.unique(got)) == {0.0, 1.0}
    dpi = np.ones_like(got)
    for cache in (want_cache, got_cache):
        dpooled, grads = _attention_stage_backward(dpi, cache, numba)
        assert np.isfinite(dpooled).all() and all(np.isfinite(g).all() for g in grads.values())


# -- the NaN/inf screen: x through its pooled means, dy through the bias gradient ---------
@pytest.mark.parametrize("backend", HOST_BACKENDS)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_non_finite_x_is_named_by_its_element(backend, bad):
    """One bad element anywhere (each corner, the middle of a plane, next to values of both
    signs) makes its plane's mean non-finite, and the screen then names the element."""
    rng = np.random.default_rng(1)
    _, params = _small(dtype=np.float32)
    for index in [(0, 0, 0, 0), (1, 1, 4, 4), (1, 0, 2, 3)]:
        x = rng.standard_normal((2, 2, 5, 5)).astype(np.float32)
        x[index] = bad
        with pytest.raises(ValueError, match=r"x contains 1 non-finite value\(s\); the first "
                                             rf"is {bad} at index {re.escape(str(index))}"):
            dynamic_conv2d_forward(x, params, 1.0, padding=1, backend=backend)


@pytest.mark.parametrize("backend", HOST_BACKENDS)
@pytest.mark.parametrize("n, size", [(1, 5), (2, 5), (5, 5), (2, 1)])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_non_finite_kernel_is_named_by_its_element(backend, n, size, bad):
    """Every route of the screen of the K = 3 kernels: through W_n (N < K), directly (N >= K),
    and directly where small maps mix outputs (1 x 1 input); the error names the element."""
    config = dict(n=n, in_channels=2, out_channels=3, kernel=(3, 3), groups=1, bias=True,
                  size=(size, size))
    rng = np.random.default_rng(0)
    x, params = _x(rng, config), _params(rng, config, 3, 4)
    params["weight"][2, 1, 0, 2, 1] = bad
    with pytest.raises(ValueError, match=r"weight contains 1 non-finite value\(s\); the first "
                       rf"is {bad} at index \(2, 1, 0, 2, 1\)"):
        dynamic_conv2d_forward(x, params, 1.0, padding=1, backend=backend)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_a_finite_x_whose_plane_mean_overflows_is_rejected():
    """float32 values near the largest float sum to inf: the attention would turn that into
    NaN, so the screen says so instead of returning NaN."""
    config = dict(in_channels=1, out_channels=2, kernel=(1, 1), groups=1, bias=True)
    params = _params(np.random.default_rng(0), config, 2, 4, np.float32)
    x = np.full((1, 1, 2, 2), 3e38, np.float32)
    with pytest.raises(ValueError, match=r"the mean of x\[0, 0\] over \(H, W\) is inf .*"
                                         r"overflows float32"):
        dynamic_conv2d_forward(x, params, 1.0, backend="numpy")


@pytest.mark.parametrize("backend", HOST_BACKENDS)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_non_finite_dy_is_named_by_its_element(backend, bias, bad):
    """With a bias, dy is screened through its per-plane sums (the bias gradient); without,
    scanned. Either way one bad element anywhere is named, no gradient is returned, and no
    NumPy warning comes before the error."""
    x, params = _small(bias=bias, dtype=np.float32)
    rng = np.random.default_rng(2)
    y, cache = dynamic_conv2d_forward(x, params, 1.0, padding=1, backend=backend)
    for index in [(0, 0, 0, 0), (1, 2, 4, 4), (1, 1, 2, 3)]:
        dy = rng.standard_normal(y.shape).astype(np.float32)
        dy[index] = bad
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(ValueError, match=r"dy contains 1 non-finite value\(s\); the "
                                                 rf"first is {bad} at index "
                                                 rf"{re.escape(str(index))}"):
                dynamic_conv2d_backward(dy, cache)
    dx, _ = dynamic_conv2d_backward(np.ones_like(y), cache)  # the cache is still usable
    assert np.isfinite(dx).all()


@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_backward_checks_dy_and_the_cache(backend):
    x, params = _small()
    y, cache = dynamic_conv2d_forward(x, params, 1.0, padding=1, backend=backend)
    assert_upstream_checked(dynamic_conv2d_backward, cache, y)
    _, conv_cache = per_sample_conv2d_forward(x, np.zeros((2, 3, 2, 3, 3)), padding=1,
                                              backend=backend)
    with pytest.raises(TypeError, match=r"cache must be the cache returned by "
                                        r"dynamic_conv2d_forward; received 'per_sample_conv2d'"):
        dynamic_conv2d_backward(y, conv_cache)


def test_a_dy_of_the_wrong_shape_or_dtype_is_refused_before_any_work(monkeypatch):
    """Refused before the backend is called; a NaN/inf is located after the backend's pass
    (the screen reads the bias gradient that pass computes) but before anything is returned."""
    module = get_backend("numpy")
    calls = []
    original = module.conv2d_backward

    def spy(*args):
        calls.append(1)
        return original(*args)

    monkeypatch.setattr(module, "conv2d_backward", spy)
    x, params = _small()
    y, cache = dynamic_conv2d_forward(x, params, 1.0, padding=1, backend="numpy")
    for bad, error in ((np.zeros(y.shape[:-1] + (6,)), ValueError),
                       (np.zeros(y.shape, np.float32), TypeError),
                       (np.zeros(y.shape).tolist(), TypeError), (None, ValueError)):
        with pytest.raises(error, match="dy"):
            dynamic_conv2d_backward(bad, cache)
    assert not calls
    dynamic_conv2d_backward(np.zeros(y.shape), cache)
    assert calls == [1]


# -- arguments -----------------------------------------------------------------------------
@pytest.mark.parametrize("name, value, error, message", [
    ("weight", np.zeros((3, 3, 2, 3)), ValueError, r"weight must be 5-D"),
    ("weight", np.zeros((3, 3, 2, 3, 3), np.float32), TypeError,
     r"mixed dtypes.*x=float64, weight=float32"),
    ("bias", np.zeros((3, 7)), ValueError, r"bias must have shape \(3, 3\); received \(3, 7\)"),
    ("bias", np.zeros((3, 3), np.float32), TypeError, r"mixed dtypes.*bias=float32"),
    ("fc1_weight", np.zeros((4, 5)), ValueError,
     r"fc1_weight must have shape \(4, 2\); received \(4, 5\)"),
    ("fc1_bias", np.zeros(3), ValueError, r"fc1_bias must have shape \(4,\); received \(3,\)"),
    ("fc2_weight", np.zeros((2, 4)), ValueError, r"fc2_weight must have shape \(3, 4\)"),
    ("fc2_bias", np.array([0.0, np.nan, 0.0]), ValueError, r"fc2_bias contains 1 non-finite"),
    ("fc2_bias", np.zeros(3, np.float32), TypeError,
     r"fc2_bias has dtype float32 but x is float64"),
    ("weight", np.full((3, 3, 2, 3, 3), np.inf), ValueError, r"weight contains 162 non-finite"),
])
def test_a_bad_parameter_is_named(name, value, error, message):
    """Every parameter is checked once, by name, before any stage runs."""
    x, params = _small()
    params[name] = value
    with pytest.raises(error, match=message):
        dynamic_conv2d_forward(x, params, 1.0, padding=1, backend="numpy")


def test_missing_or_misplaced_parameters_are_named():
    x, params = _small()
    with pytest.raises(TypeError, match=r"params must be a dict holding at least 'weight'"):
        dynamic_conv2d_forward(x, list(params.values()), 1.0, padding=1, backend="numpy")
    with pytest.raises(TypeError, match=r"params must be a dict .*received "
                                        r"\['bias', 'fc1_bias'"):
        dynamic_conv2d_forward(x, {k: v for k, v in params.items() if k != "weight"}, 1.0,
                               padding=1, backend="numpy")
    with pytest.raises(ValueError, match=r"missing the attention parameter\(s\) \['fc2_bias'\]"):
        dynamic_conv2d_forward(x, {k: v for k, v in params.items() if k != "fc2_bias"}, 1.0,
                               padding=1, backend="numpy")
    with pytest.raises(TypeError, match=r"x is a CUDA device array, but backend 'numba' runs "
                                        r"on the host"):
        dynamic_conv2d_forward(FakeDeviceArray(x), params, 1.0, padding=1, backend="numba")
    with pytest.raises(TypeError, match=r"weight is a CUDA device array, but backend 'numpy'"):
        dynamic_conv2d_forward(x, dict(params, weight=FakeDeviceArray(params["weight"])), 1.0,
                               padding=1, backend="numpy")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_temperature_is_checked_against_the_dtype(dtype):
    x, params = _small(dtype=dtype)
    tiny = float(np.finfo(dtype).tiny)
    with pytest.raises(ValueError, match=rf"below the smallest normal {np.dtype(dtype)}.*"
                                         r"usable range"):
        dynamic_conv2d_forward(x, params, tiny / 4, padding=1, backend="numpy")
    for tau, error in ((0.0, ValueError), (-1.0, ValueError), (np.inf, ValueError),
                       (True, TypeError), ("1", TypeError)):
        with pytest.raises(error, match=r"temperature \(tau\)"):
            dynamic_conv2d_forward(x, params, tau, padding=1, backend="numpy")


def test_geometry_errors_are_named():
    x, params = _small()
    with pytest.raises(ValueError, match=r"the output would have shape .* check padding"):
        dynamic_conv2d_forward(x, params, 1.0, padding=10**5, backend="numpy")
    with pytest.raises(ValueError, match=r"kernel height .* larger than the padded input"):
        dynamic_conv2d_forward(x[:, :, :2], params, 1.0, backend="numpy")
    with pytest.raises(ValueError, match=r"x has C_in=4 channels"):
        dynamic_conv2d_forward(np.concatenate([x, x], axis=1), params, 1.0, backend="numpy")
    with pytest.raises(ValueError, match=r"backend must be one of"):
        dynamic_conv2d_forward(x, params, 1.0, backend="torch")


def test_the_default_backend_is_the_package_default():
    assert DEFAULT_BACKEND == "numba"
    assert inspect.signature(dynamic_conv2d_forward).parameters["backend"].default == \
        DEFAULT_BACKEND
