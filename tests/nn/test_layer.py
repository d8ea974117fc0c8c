"""The contract every layer keeps (nn/_layer.py): checked inputs and upstream gradients,
backward only after forward, dtypes kept, nothing modified in place, gradients accumulated."""
import numpy as np
import pytest

from dynconv_np.nn import (AvgPool2d, BatchNorm2d, Conv2d, Dropout, Flatten, GlobalAvgPool2d,
                           HardSigmoid, HardSwish, Linear, MaxPool2d, ReLU, ReLU6, Residual,
                           Sequential, Sigmoid, SqueezeExcite)

IMAGE = (2, 3, 5, 5)

# name -> (factory taking a dtype, input shape)
LAYERS = {
    "Conv2d": (lambda dt: Conv2d(3, 4, 3, padding=1, groups=1, backend="numpy", dtype=dt, rng=0),
               IMAGE),
    "Linear": (lambda dt: Linear(6, 3, dtype=dt, rng=0), (4, 6)),
    "BatchNorm2d": (lambda dt: BatchNorm2d(3, dtype=dt), IMAGE),
    "ReLU": (lambda dt: ReLU(), IMAGE),
    "ReLU6": (lambda dt: ReLU6(), IMAGE),
    "HardSigmoid": (lambda dt: HardSigmoid(), IMAGE),
    "HardSwish": (lambda dt: HardSwish(), IMAGE),
    "Sigmoid": (lambda dt: Sigmoid(), IMAGE),
    "MaxPool2d": (lambda dt: MaxPool2d(2), IMAGE),
    "AvgPool2d": (lambda dt: AvgPool2d(3, 2, 1), IMAGE),
    "GlobalAvgPool2d": (lambda dt: GlobalAvgPool2d(), IMAGE),
    "Flatten": (lambda dt: Flatten(), IMAGE),
    "Dropout": (lambda dt: Dropout(0.5, rng=0), IMAGE),
    "SqueezeExcite": (lambda dt: SqueezeExcite(3, dtype=dt, rng=0), IMAGE),
    "Sequential": (lambda dt: Sequential(Conv2d(3, 4, 3, backend="numpy", dtype=dt, rng=0),
                                         BatchNorm2d(4, dtype=dt), ReLU()), IMAGE),
    "Residual": (lambda dt: Residual(Sequential(Conv2d(3, 3, 3, padding=1, backend="numpy",
                                                       dtype=dt, rng=0), ReLU())), IMAGE),
}
FOUR_D = ["Conv2d", "BatchNorm2d", "MaxPool2d", "AvgPool2d", "GlobalAvgPool2d", "SqueezeExcite"]


def _build(name, dtype=np.float64, seed=1):
    factory, shape = LAYERS[name]
    x = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    return factory(dtype), x


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_backward_before_forward_is_an_error(name):
    layer, _ = _build(name)
    with pytest.raises(ValueError, match="backward called before forward"):
        layer.backward(np.ones(3))


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_upstream_gradient_must_match_the_output(name):
    layer, x = _build(name)
    y = layer.forward(x)
    with pytest.raises(ValueError, match=r"dy must have the shape of the last output"):
        layer.backward(np.ones(y.shape + (1,)))
    with pytest.raises(TypeError, match=r"dy must have the dtype of the last output \(float64\)"):
        layer.backward(np.ones(y.shape, dtype=np.float32))
    with pytest.raises(ValueError, match=r"dy contains 1 non-finite"):
        layer.backward(np.where(np.arange(y.size).reshape(y.shape) == 0, np.nan, 1.0))


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_bad_inputs_are_named(name):
    layer, x = _build(name)
    with pytest.raises(TypeError, match=r"x must be a numpy.ndarray"):
        layer.forward(x.tolist())
    with pytest.raises(TypeError, match=r"x must have dtype float32 or float64; received int64"):
        layer.forward(x.astype(np.int64))
    bad = x.copy()
    bad.flat[1] = np.inf
    with pytest.raises(ValueError, match=r"x contains 1 non-finite value"):
        layer.forward(bad)


@pytest.mark.parametrize("name", FOUR_D)
def test_wrong_rank_is_named(name):
    layer, x = _build(name)
    with pytest.raises(ValueError, match=r"x must be 4-D; received shape \(2, 3, 5\)"):
        layer.forward(x[..., 0])


@pytest.mark.parametrize("name", ["Conv2d", "Linear", "BatchNorm2d", "SqueezeExcite"])
def test_parametrised_layers_check_channels_and_dtype(name):
    layer, x = _build(name)
    wider = np.concatenate([x, x], axis=1)
    with pytest.raises(ValueError, match=r"x must have \d+ channels/features on axis 1"):
        layer.forward(wider)
    with pytest.raises(TypeError, match=r"x has dtype float32 but .* parameters are float64"):
        layer.forward(x.astype(np.float32))


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_float32_stays_float32(name):
    layer, x = _build(name, dtype=np.float32)
    y = layer.forward(x)
    dx = layer.backward(np.ones_like(y))
    assert y.dtype == np.float32 and dx.dtype == np.float32 and dx.shape == x.shape
    for qualified, param, grad in layer.named_parameters():
        assert param.dtype == np.float32 and grad.dtype == np.float32, qualified


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_inputs_are_not_modified_in_place(name):
    layer, x = _build(name)
    x_before = x.copy()
    y = layer.forward(x)
    dy = np.random.default_rng(2).standard_normal(y.shape)
    dy_before = dy.copy()
    layer.backward(dy)
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(dy, dy_before)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_gradients_accumulate_and_zero_grad_resets_them(name):
    layer, x = _build(name)
    y = layer.forward(x)
    dy = np.random.default_rng(2).standard_normal(y.shape)
    dx_once = layer.backward(dy)
    once = {qualified: grad.copy() for qualified, _, grad in layer.named_parameters()}
    dx_twice = layer.backward(dy)
    np.testing.assert_allclose(dx_twice, dx_once, rtol=1e-15)  # backward is repeatable
    for qualified, _, grad in layer.named_parameters():
        np.testing.assert_allclose(grad, 2 * once[qualified], rtol=1e-14, err_msg=qualified)
    layer.zero_grad()
    assert all(not grad.any() for _, _, grad in layer.named_parameters())
