"""The demo networks: structure of the static/dynamic twins, and whole DY-CNNs (conv, BatchNorm,
ReLU, dynamic conv, pooling, linear, cross-entropy) checked end to end against finite differences."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from dynconv_np import DynamicConv2d, gradcheck
from dynconv_np.models.small import small_cnn
from dynconv_np.nn import (AvgPool2d, BatchNorm2d, Conv2d, GlobalAvgPool2d, Linear, MaxPool2d,
                           ReLU, Sequential)

from ..train.helpers import ModelWithLoss


def _convs(model):
    return [m for m in model.modules() if isinstance(m, (Conv2d, DynamicConv2d))]


@pytest.mark.parametrize("image_shape, n_convs", [((1, 8, 8), 3), ((1, 28, 28), 5),
                                                  ((3, 32, 32), 5), ((2, 4, 4), 2)])
def test_twins_have_same_depth_and_width_and_only_later_convs_dynamic(image_shape, n_convs):
    static = small_cnn(image_shape, 10, width=3, dynamic=False, backend="numpy", rng=0)
    dynamic = small_cnn(image_shape, 10, width=3, dynamic=True, num_kernels=3, backend="numpy",
                        rng=0)
    s, d = _convs(static), _convs(dynamic)
    assert len(s) == len(d) == n_convs
    assert [(c.in_channels, c.out_channels, c.stride) for c in s] == \
        [(c.in_channels, c.out_channels, c.stride) for c in d]
    assert isinstance(d[0], Conv2d) and all(isinstance(c, DynamicConv2d) for c in d[1:])
    assert all(c.num_kernels == 3 for c in d[1:]) and all(isinstance(c, Conv2d) for c in s)
    assert isinstance(static.layers[-1], Linear) and isinstance(dynamic.layers[-1], Linear)
    x = np.zeros((2,) + image_shape, dtype=np.float32)
    assert static(x).shape == dynamic(x).shape == (2, 10)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r"image_shape must be \(C, H, W\)"):
        small_cnn((8, 8))
    with pytest.raises(ValueError, match="width must be a positive int"):
        small_cnn(width=0)


def _scaled_attention(model, scale=4.0):
    """Make attention logits larger so pi is far from uniform and its gradient is not tiny."""
    for module in model.modules():
        if isinstance(module, DynamicConv2d):
            module.params["fc2_weight"] *= scale
    return model


# The loss is smooth except at ReLU/max-pool kinks, which random float64 inputs hit with
# probability ~ eps per unit; central differences (eps 1e-6) on an O(1) loss are accurate to
# ~1e-9, far inside gradcheck's atol=1e-7 / rtol=1e-5. Each parameter array is checked on a
# random subset of 24 elements (all elements of smaller arrays) to keep the test short.

@settings(max_examples=4)
@given(n=st.integers(2, 4), width=st.integers(1, 3), k=st.integers(1, 4),
       tau=st.sampled_from([1.0, 5.0, 30.0]), seed=st.integers(0, 2**16))
def test_demo_dy_cnn_end_to_end_gradcheck(n, width, k, tau, seed):
    model = _scaled_attention(small_cnn((1, 8, 8), 10, width=width, dynamic=True, num_kernels=k,
                                        temperature=tau, backend="numpy", dtype=np.float64,
                                        rng=seed))
    rng = np.random.default_rng(seed)
    x, labels = rng.standard_normal((n, 1, 8, 8)), rng.integers(0, 10, n)
    report = gradcheck(ModelWithLoss(model, labels), x, max_elements=24, seed=seed)
    assert len(report.results) == 1 + len(list(model.named_parameters()))


def test_dy_cnn_with_pooling_end_to_end_gradcheck():
    # conv -> BN -> ReLU -> dynamic conv -> BN -> ReLU -> max pool -> dynamic conv (strided)
    # -> ReLU -> avg pool -> global pool -> linear -> cross-entropy, in training mode.
    rng = np.random.default_rng(7)
    opts = dict(backend="numpy", dtype=np.float64)
    model = _scaled_attention(Sequential(
        Conv2d(2, 3, 3, padding=1, rng=rng, **opts), BatchNorm2d(3, dtype=np.float64), ReLU(),
        DynamicConv2d(3, 4, 3, padding=1, num_kernels=3, temperature=2.0, rng=rng, **opts),
        BatchNorm2d(4, dtype=np.float64), ReLU(), MaxPool2d(2),
        DynamicConv2d(4, 4, 3, stride=2, padding=1, groups=2, num_kernels=2, temperature=1.0,
                      rng=rng, **opts), ReLU(), AvgPool2d(2, stride=1),
        GlobalAvgPool2d(), Linear(4, 5, dtype=np.float64, rng=rng)))
    x, labels = rng.standard_normal((3, 2, 8, 8)), np.array([0, 3, 4])
    report = gradcheck(ModelWithLoss(model, labels), x, max_elements=24)
    names = {r.name for r in report.results}
    assert {"x", "3.weight", "3.fc2_weight", "7.bias", "11.weight", "1.weight"} <= names
