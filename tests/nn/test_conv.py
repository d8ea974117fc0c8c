"""Conv2d (static): gradients, agreement with scipy, PyTorch-style initialisation, errors."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy.signal import correlate

from dynconv_np import gradcheck
from dynconv_np.nn import Conv2d

from ..strategies import conv_configs


def _layer(c, backend="numpy", dtype=np.float64, seed=0):
    return Conv2d(c["in_channels"], c["out_channels"], c["kernel"], stride=c["stride"],
                  padding=c["padding"], dilation=c["dilation"], groups=c["groups"],
                  bias=c["bias"], backend=backend, dtype=dtype, rng=seed)


def _input(c, seed, dtype=np.float64):
    shape = (c["n"], c["in_channels"]) + c["size"]
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


@given(config=conv_configs(), seed=st.integers(0, 2**16))
def test_backward_matches_finite_differences(config, seed):
    layer = _layer(config, seed=seed)
    # y is linear in x, weight and bias: central differences are exact up to round-off
    # (~1e-16 |L| / eps ~ 1e-9), far inside atol 1e-7.
    report = gradcheck(layer, _input(config, seed))
    assert {r.name for r in report.results} == {"x", *layer.params}


@settings(max_examples=10)
@given(config=conv_configs(), seed=st.integers(0, 2**16))
def test_forward_matches_scipy_correlate(config, seed):
    c = config
    layer = _layer(c, seed=seed)
    x = _input(c, seed)
    y = layer.forward(x)
    weight, bias = layer.params["weight"], layer.params.get("bias")
    (sh, sw), (ph, pw), (dh, dw) = layer.stride, layer.padding, layer.dilation
    x_pad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    c_group, c_out_group = c["in_channels"] // c["groups"], c["out_channels"] // c["groups"]
    for n in range(c["n"]):
        for o in range(c["out_channels"]):
            g = o // c_out_group
            dilated = np.zeros((c_group, dh * (weight.shape[2] - 1) + 1,
                                dw * (weight.shape[3] - 1) + 1))
            dilated[:, ::dh, ::dw] = weight[o]
            full = correlate(x_pad[n, g * c_group:(g + 1) * c_group], dilated, mode="valid")[0]
            expected = full[::sh, ::sw] + (bias[o] if bias is not None else 0.0)
            np.testing.assert_allclose(y[n, o], expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", ["numba", "loops"])
@settings(max_examples=10)
@given(config=conv_configs(), seed=st.integers(0, 2**16))
def test_backends_agree_with_numpy_reference(backend, config, seed):
    layers = {b: _layer(config, backend=b, seed=seed) for b in ("numpy", backend)}
    x = _input(config, seed)
    ys = {b: layer.forward(x) for b, layer in layers.items()}
    dy = np.random.default_rng(seed + 1).standard_normal(ys["numpy"].shape)
    dxs = {b: layer.backward(dy) for b, layer in layers.items()}
    # float64 sums of <= ~250 products in a different order: ~1e-14 relative.
    np.testing.assert_allclose(ys[backend], ys["numpy"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dxs[backend], dxs["numpy"], rtol=1e-10, atol=1e-12)
    for name in layers["numpy"].grads:
        np.testing.assert_allclose(layers[backend].grads[name], layers["numpy"].grads[name],
                                   rtol=1e-10, atol=1e-12, err_msg=name)


def test_parameters_are_initialised_like_pytorch():
    layer = Conv2d(8, 6, (3, 2), groups=2, backend="numpy", rng=0)
    fan_in = (8 // 2) * 3 * 2
    assert layer.params["weight"].shape == (6, 4, 3, 2) and layer.params["bias"].shape == (6,)
    assert layer.params["weight"].dtype == np.float32
    for value in layer.params.values():
        assert np.abs(value).max() <= 1 / np.sqrt(fan_in)
        assert np.abs(value).max() > 0.5 / np.sqrt(fan_in)  # spread over the interval, not tiny
    again = Conv2d(8, 6, (3, 2), groups=2, backend="numpy", rng=0)
    np.testing.assert_array_equal(again.params["weight"], layer.params["weight"])
    assert "bias" not in Conv2d(2, 2, 1, bias=False, backend="numpy").params


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(in_channels=0), ValueError, r"in_channels must be a positive int; received 0"),
    (dict(out_channels=2.0), ValueError, r"out_channels must be a positive int"),
    (dict(groups=3), ValueError, r"groups=3 must divide in_channels; received in_channels=4"),
    (dict(kernel_size=(1, 2, 3)), TypeError, r"kernel_size must be an int or a pair"),
    (dict(stride=0), ValueError, r"stride must be positive"),
    (dict(padding=-1), ValueError, r"padding must be >= 0"),
    (dict(dilation=(1, 0)), ValueError, r"dilation must be positive"),
    (dict(bias="yes"), TypeError, r"bias must be True or False; received 'yes'"),
    (dict(backend="torch"), ValueError, r"backend must be one of .*received 'torch'"),
    (dict(dtype=np.int32), TypeError, r"dtype must be float32 or float64"),
    (dict(rng="seed"), TypeError, r"rng must be None, an int seed or a numpy.random.Generator"),
])
def test_bad_constructor_arguments_are_named(kwargs, error, message):
    args = dict(in_channels=4, out_channels=6, kernel_size=3, backend="numpy")
    args.update(kwargs)
    with pytest.raises(error, match=message):
        Conv2d(**args)


def test_a_device_array_given_to_a_host_backend_is_named():
    from ..functional.checks import FakeDeviceArray
    layer = Conv2d(2, 3, 3, backend="numba", dtype=np.float64)
    with pytest.raises(TypeError, match=r"x is a CUDA device array, but backend 'numba' runs on "
                                        r"the host"):
        layer.forward(FakeDeviceArray(np.zeros((1, 2, 4, 4))))


def test_input_smaller_than_the_kernel_is_named():
    with pytest.raises(ValueError, match=r"kernel height with dilation .* is larger than the "
                                         r"padded input height"):
        Conv2d(1, 1, 5, backend="numpy", dtype=np.float64).forward(np.ones((1, 1, 3, 8)))


def test_conv_args_are_shared_by_every_convolution_layer():
    """ConvArgs: the same checks, geometry, output size and repr for the static, dynamic and
    family layers; check_cost_shape for every family's extra_costs."""
    from dynconv_np.nn import CondConv2d, DCDConv2d, DynamicConv2d, FDYConv2d, ODConv2d
    from dynconv_np.nn.conv import ConvArgs, check_cost_shape
    for cls in (Conv2d, DynamicConv2d, CondConv2d, ODConv2d, FDYConv2d):
        layer = cls(4, 6, (3, 2), stride=(2, 1), padding=1, dilation=(1, 2), groups=2,
                    backend="numpy")
        assert isinstance(layer, ConvArgs)
        assert layer.geometry == ((2, 1), (1, 1), (1, 2), 2)
        assert layer.output_size(7, 5) == (4, 5) and layer.fan_in == 12
        assert repr(layer).startswith(f"{cls.__name__}(4, 6, kernel_size=(3, 2), stride=(2, 1), "
                                      "padding=(1, 1), dilation=(1, 2), groups=2, ")
        with pytest.raises(ValueError, match=r"groups=4 must divide out_channels"):
            cls(4, 6, 3, groups=4, backend="numpy")
    dcd = DCDConv2d(4, 6, 3, dilation=2, backend="numpy")
    assert dcd.geometry == ((1, 1), (2, 2), (2, 2), 1)  # 'same' padding by DCD's own rule
    assert check_cost_shape(dcd, (4, 8, 8)) == (1, 4, 8, 8)
    assert check_cost_shape(dcd, [3, 4, 8, 8]) == (3, 4, 8, 8)
    for bad in ((4, 8), (1, 4, 8, True), (0, 4, 8, 8), "4, 8, 8"):
        with pytest.raises(ValueError, match=r"input_shape must be \(C, H, W\) or \(N, C, H, W\) "
                                             r"of positive ints"):
            check_cost_shape(dcd, bad)
    with pytest.raises(ValueError, match=r"DCDConv2d takes 4 channels; input_shape has 3 .*"
                                         r"C = 4"):
        check_cost_shape(dcd, (3, 8, 8))
