"""The convolution front-end: gradients on every host backend, scipy cross-check, argument,
placement and upstream errors."""
import inspect

import numpy as np
import pytest
from hypothesis import given, strategies as st

from dynconv_np import gradcheck
from dynconv_np.backends import DEFAULT_BACKEND
from dynconv_np.functional import (conv2d_backward, conv2d_forward, per_sample_conv2d_backward,
                                   per_sample_conv2d_forward)

from .checks import FakeDeviceArray, assert_upstream_checked
from ..scipy_conv import scipy_conv2d
from ..strategies import conv_configs

CPU_BACKENDS = ["numpy", "loops", "numba"]
# Central differences through the reference and the default engine; the loops backend (a
# prange launch per call makes its thousands of probes slow) is judged against the reference
# by tests/backends/test_contract.py, and so is every backend.
GRADCHECK_BACKENDS = ["numpy", "numba"]


def _arrays(rng, c, per_sample):
    lead = (c["n"],) if per_sample else ()
    inputs = {"x": rng.standard_normal((c["n"], c["in_channels"]) + c["size"]),
              "weight": rng.standard_normal(lead + (c["out_channels"],
                                                    c["in_channels"] // c["groups"]) + c["kernel"])}
    if c["bias"]:
        inputs["bias"] = rng.standard_normal(lead + (c["out_channels"],))
    return inputs


def _geometry(c, backend):
    return dict(stride=c["stride"], padding=c["padding"], dilation=c["dilation"],
                groups=c["groups"], backend=backend)


@pytest.mark.parametrize("backend", GRADCHECK_BACKENDS)
@pytest.mark.parametrize("per_sample", [True, False], ids=["per-sample", "shared"])
@given(config=conv_configs(), seed=st.integers(0, 2**16))
def test_backward_matches_finite_differences(backend, per_sample, config, seed):
    forward_fn, backward_fn = ((per_sample_conv2d_forward, per_sample_conv2d_backward)
                               if per_sample else (conv2d_forward, conv2d_backward))
    inputs = _arrays(np.random.default_rng(seed), config, per_sample)

    def backward(dy, cache):
        dx, dweight, dbias = backward_fn(dy, cache)
        return {"x": dx, "weight": dweight, "bias": dbias}

    # y is linear in each input, so central differences have no truncation error; what is left
    # is round-off ~1e-16 |L| / eps ~ 1e-9 for |L| ~ 10: atol 1e-7 has a 100x margin.
    gradcheck(lambda **a: forward_fn(**a, **_geometry(config, backend)), inputs,
              backward=backward)


@given(config=conv_configs(), seed=st.integers(0, 2**16))
def test_shared_kernel_matches_scipy_correlate(config, seed):
    a = _arrays(np.random.default_rng(seed), config, per_sample=False)
    y, _ = conv2d_forward(a["x"], a["weight"], a.get("bias"), **_geometry(config, "numpy"))
    expected = scipy_conv2d(a["x"], a["weight"], a.get("bias"), config["stride"],
                            config["padding"], config["dilation"], config["groups"])
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_non_contiguous_inputs_work_and_are_not_modified(backend):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 6, 3, 2)).transpose(3, 2, 0, 1)  # (2, 3, 5, 6), a view
    w = rng.standard_normal((4, 6, 3, 4))[::-1, ::2, :, ::2]  # (4, 3, 3, 2), a strided view
    x_before, w_before = x.copy(), w.copy()
    y, cache = conv2d_forward(x, w, None, padding=1, backend=backend)
    dy = rng.standard_normal(y.shape)
    dy_before = dy.copy()
    conv2d_backward(dy, cache)
    expected, _ = conv2d_forward(np.ascontiguousarray(x), np.ascontiguousarray(w), None,
                                 padding=1, backend="numpy")
    np.testing.assert_allclose(y, expected, rtol=1e-12)
    for before, after in ((x_before, x), (w_before, w), (dy_before, dy)):
        np.testing.assert_array_equal(before, after)


def _call(x_shape=(2, 4, 5, 5), w_shape=(6, 2, 3, 3), b_shape=None, dtype=np.float64,
          w_dtype=None, **kwargs):
    kwargs.setdefault("groups", 2)
    x = np.zeros(x_shape, dtype=dtype)
    w = np.zeros(w_shape, dtype=w_dtype or dtype)
    b = None if b_shape is None else np.zeros(b_shape, dtype=dtype)
    return conv2d_forward(x, w, b, backend="numpy", **kwargs)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(x_shape=(4, 5, 5)), ValueError, r"x must be 4-D; received shape \(4, 5, 5\)"),
    (dict(x_shape=(2, 6, 5, 5)), ValueError, "x has C_in=6 channels, but weight expects"),
    (dict(groups=3), ValueError, "groups=3 must divide in_channels; received in_channels=4"),
    (dict(w_shape=(5, 2, 3, 3)), ValueError, "groups=2 must divide out_channels"),
    (dict(w_shape=(6, 2, 7, 3)), ValueError, "kernel height .* larger than the padded input"),
    (dict(w_shape=(6, 2, 3, 3), dilation=3), ValueError, "kernel height with dilation"),
    (dict(stride=0), ValueError, "stride must be positive; received 0"),
    (dict(dilation=(1, -1)), ValueError, r"dilation must be positive; received \(1, -1\)"),
    (dict(padding=-1), ValueError, "padding must be >= 0; received -1"),
    (dict(padding=1.5), TypeError, "padding must be an int or a pair of ints"),
    (dict(b_shape=(5,)), ValueError, r"bias must have shape \(6,\); received \(5,\)"),
    (dict(dtype=np.int32), TypeError, "x must have dtype float32 or float64; received int32"),
    (dict(w_dtype=np.float32), TypeError, "mixed dtypes.*x=float64, weight=float32"),
])
def test_bad_arguments_are_named(kwargs, error, message):
    with pytest.raises(error, match=message):
        _call(**kwargs)


def test_per_sample_kernel_count_must_match_batch():
    with pytest.raises(ValueError, match="one kernel per sample, shape \\(N=2"):
        per_sample_conv2d_forward(np.zeros((2, 2, 4, 4)), np.zeros((3, 2, 2, 3, 3)))


def test_nan_in_input_is_located():
    x = np.zeros((2, 4, 5, 5))
    x[1, 3, 0, 4] = np.inf
    with pytest.raises(ValueError, match=r"x contains 1 non-finite value\(s\); the first is "
                                         r"inf at index \(1, 3, 0, 4\)"):
        conv2d_forward(x, np.zeros((6, 2, 3, 3)), groups=2, backend="numpy")


def test_dy_of_the_wrong_shape_is_rejected():
    y, cache = _call()
    with pytest.raises(ValueError, match=r"dy must have the shape of the forward output "
                                         r"\(2, 6, 3, 3\); received \(2, 6, 3, 4\)"):
        conv2d_backward(np.zeros((2, 6, 3, 4)), cache)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("per_sample", [True, False], ids=["per-sample", "shared"])
def test_backward_checks_dy_and_the_cache(backend, per_sample):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 5, 5))
    if per_sample:
        y, cache = per_sample_conv2d_forward(x, rng.standard_normal((2, 6, 2, 3, 3)), groups=2,
                                             backend=backend)
        assert_upstream_checked(per_sample_conv2d_backward, cache, y)
        with pytest.raises(TypeError, match=r"returned by conv2d_forward; received "
                                            r"'per_sample_conv2d'"):
            conv2d_backward(y, cache)
    else:
        y, cache = conv2d_forward(x, rng.standard_normal((6, 2, 3, 3)), groups=2, backend=backend)
        assert_upstream_checked(conv2d_backward, cache, y)


def test_an_absurd_output_is_refused_before_allocating_it():
    with pytest.raises(ValueError, match=r"the output would have shape \(1, 1, 200003, 200003\) "
                                         r".*check padding=\(100000, 100000\)"):
        conv2d_forward(np.zeros((1, 1, 5, 5)), np.zeros((1, 1, 3, 3)), padding=10**5,
                       backend="numpy")


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("which", ["x", "weight", "bias"])
def test_a_device_array_given_to_a_host_backend_is_named(backend, which):
    arrays = {"x": np.zeros((1, 2, 4, 4)), "weight": np.zeros((3, 2, 3, 3)), "bias": np.zeros(3)}
    arrays[which] = FakeDeviceArray(arrays[which])
    with pytest.raises(TypeError, match=rf"{which} is a CUDA device array, but backend "
                                        rf"'{backend}' runs on the host"):
        conv2d_forward(**arrays, backend=backend)


@pytest.mark.parametrize("function", [conv2d_forward, per_sample_conv2d_forward])
def test_the_default_backend_is_the_package_default(function):
    assert inspect.signature(function).parameters["backend"].default == DEFAULT_BACKEND


def test_unknown_backend_is_named():
    with pytest.raises(ValueError, match="backend must be one of"):
        conv2d_forward(np.zeros((1, 1, 3, 3)), np.zeros((1, 1, 1, 1)), backend="torch")
