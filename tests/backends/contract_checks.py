"""The backend contract (``dynconv_np/backends/contract.py``) as checks any backend must pass.

Shared by ``test_contract.py`` (the host backends) and ``tests/cuda_sim/cuda_cases.py`` (the
cuda backend, under the simulator or on a GPU). The checks: the module has every required
member with the documented parameters; optional members are documented ones; on a few fixed
configurations every function returns arrays of the right shape and dtype, agrees with the
reference, leaves its inputs unmodified and returns fresh arrays (a second call does not
overwrite the first call's results).

Tolerance: two summation orders of the same m products differ by at most 2 m eps sum|terms|
(recursive summation bound); the bound is computed by running the reference on absolute
values, with m the longest sum of the configuration.
"""
import inspect

import numpy as np

from dynconv_np.backends import OPTIONAL_FUNCTIONS, REQUIRED_FUNCTIONS, Backend, reference

# (N, C_in, C_out, H, W, kernel, stride, padding, dilation, groups, one kernel for the batch, bias)
CONFIGS = [
    (2, 3, 4, 5, 6, (3, 3), (1, 1), (1, 1), (1, 1), 1, True, True),
    (2, 4, 6, 6, 5, (3, 2), (2, 1), (1, 0), (1, 2), 2, False, False),
    (1, 3, 6, 4, 4, (3, 1), (1, 2), (1, 1), (1, 1), 3, False, True),   # depthwise x2
]


def check_members(module):
    """Required members with the Protocol's parameter names; optional ones documented."""
    label = getattr(module, "__name__", repr(module))
    missing = [name for name in ("NAME",) + REQUIRED_FUNCTIONS if not hasattr(module, name)]
    assert isinstance(module, Backend) and not missing, \
        f"{label} lacks a required member: {missing}"
    for name in REQUIRED_FUNCTIONS:
        expected = list(inspect.signature(getattr(Backend, name)).parameters)[1:]  # minus self
        got = list(inspect.signature(getattr(module, name)).parameters)[:len(expected)]
        assert got == expected, f"{label}.{name}{tuple(got)}: expected {tuple(expected)}"
    for name in OPTIONAL_FUNCTIONS:
        if hasattr(module, name):
            assert callable(getattr(module, name)), f"{label}.{name} is not callable"


def _host(a):
    return a if a is None or isinstance(a, np.ndarray) else a.copy_to_host()


def _close(got, want, bound, terms, what):
    got = _host(got)
    assert got.shape == want.shape and got.dtype == want.dtype, \
        f"{what}: {got.dtype} {got.shape}, expected {want.dtype} {want.shape}"
    tolerance = 2 * terms * np.finfo(want.dtype).eps * np.abs(bound) + np.finfo(want.dtype).tiny
    assert (np.abs(got - want) <= tolerance).all(), \
        f"{what}: max |difference| {np.abs(got - want).max():.3g}"


def _arrays(config, dtype, rng):
    n, c_in, c_out, h, w, kernel, stride, padding, dilation, groups, shared, bias = config
    nw = 1 if shared else n
    x = rng.standard_normal((n, c_in, h, w)).astype(dtype)
    weight = rng.standard_normal((nw, c_out, c_in // groups) + kernel).astype(dtype)
    b = rng.standard_normal((nw, c_out)).astype(dtype) if bias else None
    return x, weight, b, (stride, padding, dilation, groups)


def check_behaviour(module, dtype, seed=0):
    """Every required function against the reference on ``CONFIGS``, inputs untouched, fresh
    outputs."""
    rng = np.random.default_rng(seed)
    for config in CONFIGS:
        x, w, b, geometry = _arrays(config, dtype, rng)
        originals = [a.copy() for a in (x, w) + (() if b is None else (b,))]
        terms = w.shape[2] * w.shape[3] * w.shape[4] * max(x.shape[0], 1) * x.shape[2] * x.shape[3]
        want = reference.conv2d_forward(x, w, b, *geometry)
        bound = reference.conv2d_forward(np.abs(x), np.abs(w), None if b is None else np.abs(b),
                                         *geometry)
        y = module.conv2d_forward(x, w, b, *geometry)
        _close(y, want, bound, terms, f"conv2d_forward {config}")
        dy = rng.standard_normal(want.shape).astype(dtype)
        got = module.conv2d_backward(dy, x, w, *geometry, b is not None)
        wants = reference.conv2d_backward(dy, x, w, *geometry, b is not None)
        bounds = reference.conv2d_backward(np.abs(dy), np.abs(x), np.abs(w), *geometry,
                                           b is not None)
        for name, g, wnt, bnd in zip(("dx", "dw", "db"), got, wants, bounds):
            if wnt is None:
                assert g is None, f"conv2d_backward {config}: {name} must be None without bias"
            else:
                _close(g, wnt, bnd, terms, f"conv2d_backward {name} {config}")
        y_again = module.conv2d_forward(x + 1, w, b, *geometry)
        _close(y, want, bound, terms, f"conv2d_forward {config}: a second call changed the first "
                                      "call's output")
        del y_again
        for original, now in zip(originals, (x, w) + (() if b is None else (b,))):
            assert np.array_equal(original, now), f"{config}: an input was modified"

    k = 3
    pi = rng.random((2, k)).astype(dtype)
    weight = rng.standard_normal((k, 4, 2, 3, 3)).astype(dtype)
    for bias in (rng.standard_normal((k, 4)).astype(dtype), None):
        w_n, b_n = module.aggregate_forward(pi, weight, bias)
        want_w, want_b = reference.aggregate_forward(pi, weight, bias)
        bound_w, bound_b = reference.aggregate_forward(pi, np.abs(weight),
                                                       None if bias is None else np.abs(bias))
        _close(w_n, want_w, bound_w, k, "aggregate_forward W_n")
        if bias is None:
            assert b_n is None, "aggregate_forward: b_n must be None without bias"
        else:
            _close(b_n, want_b, bound_b, k, "aggregate_forward b_n")
        dw_n = rng.standard_normal(want_w.shape).astype(dtype)
        db_n = None if bias is None else rng.standard_normal(want_b.shape).astype(dtype)
        got = module.aggregate_backward(dw_n, db_n, pi, weight, bias)
        wants = reference.aggregate_backward(dw_n, db_n, pi, weight, bias)
        bounds = reference.aggregate_backward(np.abs(dw_n), None if db_n is None else np.abs(db_n),
                                              pi, np.abs(weight),
                                              None if bias is None else np.abs(bias))
        assert isinstance(got[0], np.ndarray), "aggregate_backward: dpi must be a host array"
        for name, g, wnt, bnd in zip(("dpi", "dweight", "dbias"), got, wants, bounds):
            if wnt is None:
                assert g is None, f"aggregate_backward: {name} must be None without bias"
            else:
                _close(g, wnt, bnd, weight[0].size + 4, f"aggregate_backward {name}")

    x = rng.standard_normal((2, 3, 4, 5)).astype(dtype)
    pooled = module.spatial_mean(x)
    assert isinstance(pooled, np.ndarray), "spatial_mean must return a host array"
    _close(pooled, reference.spatial_mean(x), reference.spatial_mean(np.abs(x)), 20,
           "spatial_mean")
    dpooled = rng.standard_normal((2, 3)).astype(dtype)
    dx = module.conv2d_backward(np.zeros((2, 3, 4, 5), dtype), x,
                                np.zeros((1, 3, 1, 1, 1), dtype), (1, 1), (0, 0), (1, 1), 3,
                                False)[0]  # a dx this backend allocated, as the contract says
    module.add_spatial_mean_grad(dx, dpooled)
    want = np.zeros_like(x)
    reference.add_spatial_mean_grad(want, dpooled)
    _close(dx, want, want, 1, "add_spatial_mean_grad")
