"""LayerBuilder and the static/dynamic structure every network shares (paper section 3.2).

DY networks: every convolution dynamic except the first, the classifier static; the static twin
has the same convolutions (geometry) as nn.Conv2d; a convolution followed by BatchNorm has no
bias. Every model also runs forward at a tiny resolution.
"""
import functools

import numpy as np
import pytest

from dynconv_np import nn
from dynconv_np.models import profile
from dynconv_np.models.builder import LayerBuilder
from dynconv_np.models.costs import MODELS

NAMES = sorted(MODELS)


@functools.lru_cache(maxsize=None)
def small_model(name, dynamic):
    """Model ``name`` with 10 classes, K = 3, tau = 7 (not the defaults, so that they are seen to
    reach every layer), NumPy backend, seed 0."""
    return MODELS[name](dynamic=dynamic, num_kernels=3, temperature=7.0, num_classes=10,
                        backend="numpy", rng=0)


def convolutions(model):
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.DynamicConv2d))]


def geometry(conv):
    return (conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
            conv.dilation, conv.groups)


@pytest.mark.parametrize("name", NAMES)
def test_dynamic_network_keeps_first_conv_and_classifier_static(name):
    model = small_model(name, True)
    convs = convolutions(model)
    assert type(convs[0]) is nn.Conv2d and convs[0] is next(iter(model.modules())).layers[0][0]
    assert len(convs) > 10 and all(type(c) is nn.DynamicConv2d for c in convs[1:])
    assert {(c.num_kernels, c.temperature) for c in convs[1:]} == {(3, 7.0)}
    assert type(model[-1][-1]) is nn.Linear and model[-1][-1].out_features == 10
    assert not any(isinstance(m, nn.DynamicLinear) for m in model.modules())


@pytest.mark.parametrize("name", NAMES)
def test_static_twin_has_the_same_convolutions_all_static(name):
    static, dynamic = small_model(name, False), small_model(name, True)
    assert all(type(c) is nn.Conv2d for c in convolutions(static))
    assert [geometry(c) for c in convolutions(static)] == \
        [geometry(c) for c in convolutions(dynamic)]


@pytest.mark.parametrize("name", NAMES)
def test_convolutions_before_batchnorm_have_no_bias(name):
    model = small_model(name, True)
    pairs = [(a, b) for m in model.modules() if isinstance(m, nn.Sequential)
             for a, b in zip(m.layers, m.layers[1:])
             if isinstance(a, (nn.Conv2d, nn.DynamicConv2d))]
    assert len(pairs) == len(convolutions(model))  # every convolution is followed by something
    assert all(isinstance(b, nn.BatchNorm2d) and "bias" not in a.params for a, b in pairs)


@pytest.mark.parametrize("name", NAMES)
def test_dynamic_params_are_k_kernels_plus_attention_per_convolution(name):
    """DY params = static params + sum over dynamic convs of (K - 1) |W| + attention FCs."""
    static, dynamic = small_model(name, False), small_model(name, True)
    extra = sum(2 * c.params["weight"][0].size + sum(c.params[k].size for k in
                                                     ("fc1_weight", "fc1_bias", "fc2_weight",
                                                      "fc2_bias"))
                for c in convolutions(dynamic)[1:])
    assert profile(dynamic, (3, 32, 32)).params == profile(static, (3, 32, 32)).params + extra


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dynamic", [False, True])
def test_tiny_forward_runs_with_the_profiled_output_shape(name, dynamic):
    model = small_model(name, dynamic).eval()
    x = np.random.default_rng(1).standard_normal((1, 3, 32, 32)).astype(np.float32)
    y = model(x)
    assert y.shape == (1, 10) == profile(model, x.shape).output_shape
    assert y.dtype == np.float32 and np.isfinite(y).all()


def test_dy_mobilenet_v3_small_trains_forward_and_backward_in_float64():
    model = MODELS["mobilenet_v3_small"](dynamic=True, num_classes=5, backend="numpy",
                                         dtype=np.float64, rng=2).train()
    x = np.random.default_rng(3).standard_normal((2, 3, 32, 32))
    y = model(x)
    assert y.shape == (2, 5) and y.dtype == np.float64
    dx = model.backward(np.ones_like(y))
    assert dx.shape == x.shape and np.isfinite(dx).all()
    grads = [g for _, _, g in model.named_parameters()]
    assert all(np.isfinite(g).all() for g in grads) and sum(np.abs(g).sum() > 0 for g in grads) \
        > 0.9 * len(grads)


def test_same_seed_same_weights_other_seed_other_weights():
    build = functools.partial(MODELS["mobilenet_v3_small"], dynamic=True, num_classes=10,
                              backend="numpy")
    a, b, c = build(rng=5), build(rng=5), build(rng=6)
    pa, pb, pc = ([p for _, p, _ in m.named_parameters()] for m in (a, b, c))
    assert all(np.array_equal(x, y) for x, y in zip(pa, pb))
    assert not np.array_equal(pa[0], pc[0])


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(dynamic=1.5), TypeError, "dynamic must be True, False or one of"),
    (dict(dynamic="yes"), ValueError, "dynamic must be False, True or one of"),
    (dict(dynamic="fdy"), ValueError, "FDYConv2d.*audio"),
    (dict(num_kernels=0), ValueError, "num_kernels"),
    (dict(temperature=0.0), ValueError, "temperature"),
    (dict(backend="gpu"), ValueError, "backend"),
    (dict(num_classes=0), ValueError, "num_classes"),
    (dict(dtype=np.int32), TypeError, "dtype"),
    (dict(rng="seed"), TypeError, "rng"),
])
@pytest.mark.parametrize("name", ["mobilenet_v2_0.35", "mobilenet_v3_small", "resnet10"])
def test_bad_arguments_are_named(name, kwargs, error, match):
    with pytest.raises(error, match=match):
        MODELS[name](**kwargs)


def test_builder_makes_static_or_dynamic_convs_on_request():
    static = LayerBuilder(False, 4, 30.0, "numpy", np.float64, 0)
    dynamic = LayerBuilder(True, 2, 5.0, "numpy", np.float64, 0)
    assert type(static.conv(4, 8, 3)) is nn.Conv2d
    assert type(dynamic.conv(4, 8, 3, static=True)) is nn.Conv2d
    conv = dynamic.conv(4, 8, 5, stride=2, groups=4)
    assert type(conv) is nn.DynamicConv2d and conv.num_kernels == 2 and conv.temperature == 5.0
    assert (conv.padding, conv.stride, conv.groups, "bias" in conv.params) == ((2, 2), (2, 2), 4,
                                                                            False)
    layers = dynamic.conv_bn(4, 8, 1, activation=nn.ReLU, eps=1e-3)
    assert [type(l) for l in layers] == [nn.DynamicConv2d, nn.BatchNorm2d, nn.ReLU]
    assert layers[1].eps == 1e-3 and layers[0].params["weight"].dtype == np.float64
    assert type(dynamic.linear(4, 3)) is nn.Linear


# -- the family: dynamic= names the variant -------------------------------------------------

FAMILY = {"dyconv": nn.DynamicConv2d, "condconv": nn.CondConv2d, "odconv": nn.ODConv2d,
          "dcd": nn.DCDConv2d}
BUILDERS = {"mobilenet_v2_0.35": lambda **kw: MODELS["mobilenet_v2_0.35"](**kw),
            "resnet10_0.25": lambda **kw: MODELS["resnet10"](width=0.25, **kw)}


def family_convolutions(model):
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, *FAMILY.values()))]


@pytest.mark.parametrize("builder", sorted(BUILDERS))
@pytest.mark.parametrize("variant", sorted(FAMILY))
def test_each_variant_builds_trains_and_matches_the_profile(variant, builder):
    model = BUILDERS[builder](dynamic=variant, num_classes=10, backend="numpy", rng=0).train()
    static = BUILDERS[builder](dynamic=False, num_classes=10, backend="numpy", rng=0)
    convs, twins = family_convolutions(model), family_convolutions(static)
    assert type(convs[0]) is nn.Conv2d                       # the stem stays static
    assert all(type(c) is FAMILY[variant] for c in convs[1:]) and len(convs) == len(twins)
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.groups) for c in convs] \
        == [(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.groups) for c in twins]
    x = np.random.default_rng(1).standard_normal((2, 3, 32, 32)).astype(np.float32)
    y = model(x)
    assert y.shape == (2, 10) and np.isfinite(y).all()
    dx = model.backward(np.ones_like(y))
    assert dx.shape == x.shape and np.isfinite(dx).all()
    grads = [g for _, _, g in model.named_parameters()]
    assert all(np.isfinite(g).all() for g in grads)
    cost = profile(model, (3, 32, 32))
    assert cost.output_shape == (1, 10)
    assert cost.params == sum(int(p.size) for _, p, _ in model.named_parameters())
    extras = {"condconv": nn.condconv, "odconv": nn.odconv, "dcd": nn.dcd}
    if variant in extras:                     # params = static + each layer's extra_params
        extra = sum(extras[variant].extra_costs(c, (1, c.in_channels, 8, 8))["extra_params"]
                    for c in convs[1:])
        assert cost.params == profile(static, (3, 32, 32)).params + extra


def test_true_still_means_dynamic_conv_and_variants_reach_the_layers():
    assert LayerBuilder(True, 4, 30.0, "numpy", np.float32, 0).variant == "dyconv"
    assert LayerBuilder(False, 4, 30.0, "numpy", np.float32, 0).variant is None
    cond = LayerBuilder("condconv", 3, 30.0, "numpy", np.float32, 0).conv(4, 8, 3, stride=2)
    assert (cond.num_experts, cond.shares_routing, "bias" in cond.params, cond.padding) == (
        3, False, False, (1, 1))
    od = LayerBuilder("odconv", 2, 7.0, "numpy", np.float32, 0).conv(8, 8, 3, groups=8)
    assert (od.num_kernels, od.temperature, od.groups) == (2, 7.0, 8)
    dcd = LayerBuilder("dcd", 4, 30.0, "numpy", np.float32, 0).conv(16, 8, 3, stride=2)
    assert (dcd.stride, "bias" in dcd.params) == ((2, 2), False)
    assert dcd.output_size(7, 7) == nn.Conv2d(16, 8, 3, stride=2, padding=1).output_size(7, 7)
