"""run_reference and error_bounds: the reference is the library's dynamic convolution, and
the derived bounds hold for real float32 computations (numpy and numba backends) of drawn
problems, while staying far below the size of a bug."""
import numpy as np
from hypothesis import given, strategies as st

from dynconv_np.interop.stages import BACKWARD, FORWARD, error_bounds, run_reference
from dynconv_np.nn import DynamicConv2d

from ..strategies import conv_configs, temperatures


def _problem(c, k, tau, seed, attention_bias=True):
    layer = DynamicConv2d(c["in_channels"], c["out_channels"], c["kernel"], stride=c["stride"],
                          padding=c["padding"], dilation=c["dilation"], groups=c["groups"],
                          bias=c["bias"], num_kernels=k, temperature=tau, dtype=np.float64,
                          backend="numpy", rng=seed, attention_bias=attention_bias)
    layer.params["fc2_weight"] *= 5          # pi far from uniform
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((c["n"], c["in_channels"]) + c["size"])
    return layer, x, rng


@given(config=conv_configs(), k=st.integers(1, 4), tau=temperatures, seed=st.integers(0, 999),
       attention_bias=st.booleans())
def test_the_reference_is_the_library_layer(config, k, tau, seed, attention_bias):
    layer, x, rng = _problem(config, k, tau, seed, attention_bias)
    y = layer(x)
    dy = rng.standard_normal(y.shape)
    dx = layer.backward(dy)
    ref = run_reference(x, layer.params, tau, layer.geometry, dy)
    np.testing.assert_allclose(ref["y"], y, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(ref["pi"], layer.attention, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(ref["dx"], dx, rtol=1e-11, atol=1e-13)
    for name in layer.params:
        np.testing.assert_allclose(ref["d" + name], layer.grads[name], rtol=1e-11, atol=1e-13)
    assert set(ref) == {n for n in FORWARD + BACKWARD
                        if (config["bias"] or n not in ("b_n", "db_n", "dbias"))
                        and (attention_bias or n != "dfc1_bias")}


@given(config=conv_configs(), k=st.integers(1, 4), tau=temperatures, seed=st.integers(0, 999),
       backend=st.sampled_from(["numpy", "numba"]))
def test_float32_computations_stay_within_the_bounds(config, k, tau, seed, backend):
    layer, x, rng = _problem(config, k, tau, seed)
    params = {n: v.astype(np.float32).astype(np.float64) for n, v in layer.params.items()}
    x = x.astype(np.float32).astype(np.float64)
    ref = run_reference(x, params, tau, layer.geometry)
    dy = rng.standard_normal(ref["y"].shape).astype(np.float32).astype(np.float64)
    ref = run_reference(x, params, tau, layer.geometry, dy)
    bounds = error_bounds(x, params, tau, layer.geometry, ref, dy, np.finfo(np.float32).eps)
    # the float32 reference pipeline (every stage) ...
    ours = run_reference(x.astype(np.float32), {n: v.astype(np.float32) for n, v in
                                                 params.items()}, tau, layer.geometry,
                         dy.astype(np.float32))
    for name, bound in bounds.items():
        err = np.abs(ours[name] - ref[name])
        assert (err <= bound + 1e-37).all(), (name, float((err / (bound + 1e-37)).max()))
    # ... and the layer on the chosen backend, float32
    f32 = DynamicConv2d(config["in_channels"], config["out_channels"], config["kernel"],
                        stride=config["stride"], padding=config["padding"],
                        dilation=config["dilation"], groups=config["groups"],
                        bias=config["bias"], num_kernels=k, temperature=tau, dtype=np.float32,
                        backend=backend)
    for name, value in params.items():
        f32.params[name] = value.astype(np.float32)
    checks = {"y": f32(x.astype(np.float32)), "dx": f32.backward(dy.astype(np.float32))}
    checks.update({"d" + name: f32.grads[name] for name in f32.params})
    for name, value in checks.items():
        err = np.abs(value - ref[name])
        assert (err <= bounds[name] + 1e-37).all(), (name, backend)


def test_the_bounds_are_tight_enough_to_catch_a_one_percent_error():
    c = dict(n=2, in_channels=6, out_channels=4, kernel=(3, 3), stride=1, padding=1,
             dilation=1, groups=1, size=(8, 8), bias=True)
    layer, x, rng = _problem(c, 4, 1.0, 0)
    ref = run_reference(x, layer.params, 1.0, layer.geometry,
                        rng.standard_normal((2, 4, 8, 8)))
    dy = rng.standard_normal(ref["y"].shape)
    ref = run_reference(x, layer.params, 1.0, layer.geometry, dy)
    bounds = error_bounds(x, layer.params, 1.0, layer.geometry, ref, dy,
                          np.finfo(np.float32).eps)
    for name, bound in bounds.items():
        scale = np.abs(ref[name]).max()
        if scale > 0:
            assert bound.max() < 1e-2 * scale, (name, bound.max() / scale)
