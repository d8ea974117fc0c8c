"""The cost function against hand-computed counts, and its shapes against real forward passes.

Every expected number below is worked out by hand in the comment beside it from the conventions
in ``dynconv_np.models.profile`` (MAdds of a convolution = C_out H_out W_out (C_in/g) kh kw, ...).
"""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from dynconv_np import nn
from dynconv_np.models import profile
from tests.strategies import conv_configs, random_array


def only_layer(layer, input_shape):
    result = profile(layer, input_shape)
    assert len(result.layers) == 1
    return result.layers[0]


def test_conv2d_counts():
    # H_out = W_out = floor((9 + 2 - 2 - 1) / 2) + 1 = 5;  per sample 8 * 5 * 5 * 3 * 3 * 3 = 5400
    cost = only_layer(nn.Conv2d(3, 8, 3, stride=2, padding=1, backend="numpy"), (2, 3, 9, 9))
    assert cost.output_shape == (2, 8, 5, 5)
    assert (cost.conv, cost.attention, cost.aggregation) == (2 * 5400, 0, 0)
    assert cost.params == 8 * 3 * 3 * 3 + 8  # weight + bias = 224


def test_depthwise_and_dilated_conv_counts():
    # depthwise: 6 * 7 * 7 outputs, each 1 * 3 * 3 products -> 2646; weight 6 * 1 * 3 * 3 = 54
    cost = only_layer(nn.Conv2d(6, 6, 3, padding=1, groups=6, bias=False, backend="numpy"),
                      (6, 7, 7))
    assert (cost.output_shape, cost.conv, cost.params) == ((1, 6, 7, 7), 2646, 54)
    # dilation 2: H_out = 10 - 2 * (3 - 1) = 6;  2 * 6 * 6 * 4 * 3 * 3 = 2592
    cost = only_layer(nn.Conv2d(4, 2, 3, dilation=2, backend="numpy"), (4, 10, 10))
    assert (cost.output_shape, cost.conv) == ((1, 2, 6, 6), 2592)


def test_dynamic_conv_counts_split_into_conv_attention_aggregation():
    layer = nn.DynamicConv2d(8, 16, 3, padding=1, num_kernels=4, backend="numpy")
    assert layer.hidden == 4  # max(8 // 4, 4)
    cost = only_layer(layer, (3, 8, 6, 6))
    assert cost.output_shape == (3, 16, 6, 6)
    assert cost.conv == 3 * 41472            # 16 * 6 * 6 * 8 * 3 * 3
    assert cost.attention_pool == 3 * 288    # 8 * 6 * 6
    assert cost.attention_fc == 3 * 48       # FC1 8 * 4 + FC2 4 * 4
    assert cost.attention == 3 * (288 + 48)
    assert cost.aggregation == 3 * 4672      # K * (16 * 8 * 3 * 3 + 16) = 4 * 1168
    assert cost.madds == 3 * (41472 + 288 + 48 + 4672)
    assert cost.params == 4728               # 4 * 1152 + 4 * 16 + (8 * 4 + 4) + (4 * 4 + 4)


def test_dynamic_depthwise_conv_counts():
    layer = nn.DynamicConv2d(32, 32, 3, stride=2, padding=1, groups=32, bias=False,
                             backend="numpy")
    assert layer.hidden == 8  # 32 // 4
    cost = only_layer(layer, (32, 8, 8))
    assert cost.output_shape == (1, 32, 4, 4)
    assert cost.conv == 4608                 # 32 * 4 * 4 * 1 * 3 * 3
    assert cost.attention_pool == 2048       # 32 * 8 * 8
    assert cost.attention_fc == 288          # 32 * 8 + 8 * 4
    assert cost.aggregation == 1152          # 4 * (32 * 1 * 3 * 3), no bias
    assert cost.params == 1452               # 4 * 288 + (32 * 8 + 8) + (8 * 4 + 4)


def test_linear_and_dynamic_linear_counts():
    cost = only_layer(nn.Linear(10, 7), (5, 10))
    assert (cost.output_shape, cost.conv, cost.params) == ((5, 7), 5 * 70, 77)
    layer = nn.DynamicLinear(12, 5, num_kernels=3)
    assert layer.hidden == 4  # max(12 // 4, 4)
    cost = only_layer(layer, (2, 12))
    assert cost.conv == 2 * 60               # 12 * 5
    assert cost.attention_pool == 0          # the perceptron's attention reads x, no pooling
    assert cost.attention_fc == 2 * 60       # 12 * 4 + 4 * 3
    assert cost.aggregation == 2 * 195       # 3 * (5 * 12 + 5)


def test_pooling_and_squeeze_excite_counts():
    cost = only_layer(nn.MaxPool2d(3, stride=2, padding=1), (4, 9, 9))
    assert (cost.output_shape, cost.madds) == ((1, 4, 5, 5), 0)   # comparisons only
    cost = only_layer(nn.AvgPool2d(2), (4, 8, 8))
    assert (cost.output_shape, cost.conv) == ((1, 4, 4, 4), 256)  # 4 * 4 * 4 * 2 * 2
    cost = only_layer(nn.GlobalAvgPool2d(), (2, 4, 3, 3))
    assert (cost.output_shape, cost.conv) == ((2, 4), 72)         # 2 * 4 * 3 * 3
    cost = only_layer(nn.SqueezeExcite(16), (16, 5, 5))           # squeezed: make_divisible(4) = 8
    assert cost.output_shape == (1, 16, 5, 5)
    assert cost.conv == 656                  # pool 16 * 25 + FC1 16 * 8 + FC2 8 * 16
    assert cost.params == 280                # 16 * 8 + 8 + 8 * 16 + 16


def test_containers_sum_their_leaves_and_name_them_like_named_parameters():
    body = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, bias=False, backend="numpy"),
                         nn.BatchNorm2d(4), nn.ReLU())
    model = nn.Sequential(nn.Residual(body), nn.GlobalAvgPool2d(), nn.Linear(4, 3))
    result = profile(model, (4, 5, 5))
    assert [layer.name for layer in result.layers] == ["0.body.0", "0.body.1", "0.body.2", "1", "2"]
    assert result.output_shape == (1, 3)
    # conv 4 * 25 * 4 * 9 = 3600, pool 4 * 25 = 100, linear 4 * 3 = 12
    assert (result.conv, result.attention, result.aggregation) == (3600 + 100 + 12, 0, 0)
    assert result.params == 144 + 8 + 15
    assert result.params == sum(p.size for _, p, _ in model.named_parameters())
    names = {name.rsplit(".", 1)[0] for name, _, _ in model.named_parameters()}
    assert names <= {layer.name for layer in result.layers}


def test_batch_size_scales_madds_not_params():
    model = nn.Sequential(nn.DynamicConv2d(3, 4, 3, backend="numpy"), nn.GlobalAvgPool2d())
    one, five = profile(model, (3, 6, 6)), profile(model, (5, 3, 6, 6))
    assert five.input_shape == (5, 3, 6, 6) and one.input_shape == (1, 3, 6, 6)
    assert five.params == one.params
    for field in ("conv", "attention_pool", "attention_fc", "aggregation"):
        assert getattr(five, field) == 5 * getattr(one, field) > 0


@pytest.mark.parametrize("shape", [(8,), (1, 2, 3, 4, 5), (3, 0, 8), (3, 8.0, 8), "3x8x8",
                                   (True, 8, 8)])
def test_bad_input_shape_is_rejected(shape):
    with pytest.raises(ValueError, match="input_shape"):
        profile(nn.ReLU(), shape)


def test_shape_mismatch_names_the_layer():
    model = nn.Sequential(nn.Conv2d(3, 4, 1, backend="numpy"), nn.Conv2d(5, 4, 1,
                                                                         backend="numpy"))
    with pytest.raises(ValueError, match=r"layer 1 \(Conv2d\) expects .* 5 on axis 1.*"
                                         r"\(1, 4, 8, 8\)"):
        profile(model, (3, 8, 8))
    with pytest.raises(ValueError, match="residual block 0"):
        profile(nn.Sequential(nn.Residual(nn.Conv2d(3, 3, 3, backend="numpy"))), (3, 8, 8))


def test_unknown_layer_type_is_an_error_not_a_silent_zero():
    class Mystery(nn.Module):
        pass

    with pytest.raises(TypeError, match="layer 1 of type Mystery"):
        profile(nn.Sequential(nn.ReLU(), Mystery()), (3, 8, 8))


@given(config=conv_configs(max_batch=2), dynamic=st.booleans())
def test_propagated_shape_and_conv_madds_match_a_real_forward(config, dynamic):
    """The profiled output shape is the one the layer really produces, and the convolution's
    MAdds are (output elements) * (products per output element)."""
    cls = nn.DynamicConv2d if dynamic else nn.Conv2d
    layer = cls(config["in_channels"], config["out_channels"], config["kernel"],
                stride=config["stride"], padding=config["padding"],
                dilation=config["dilation"], groups=config["groups"], bias=config["bias"],
                backend="numpy", dtype=np.float64, rng=0)
    x = random_array(np.random.default_rng(0),
                     (config["n"], config["in_channels"]) + config["size"])
    y = layer(x)
    cost = only_layer(layer, x.shape)
    assert cost.output_shape == y.shape
    kh, kw = config["kernel"]
    assert cost.conv == y.size * (config["in_channels"] // config["groups"]) * kh * kw
    assert cost.params == sum(p.size for p in layer.params.values())


@pytest.mark.parametrize("dynamic", [False, True])
def test_a_profile_prints_as_a_table_for_any_model(dynamic):
    from dynconv_np.models import mobilenet_v3_small, resnet18
    for model in (resnet18(dynamic=dynamic, backend="numpy", rng=0),
                  mobilenet_v3_small(dynamic=dynamic, backend="numpy", rng=0),
                  nn.Sequential(nn.Linear(6, 3)), nn.ReLU()):
        shape = (2, 6) if isinstance(model, nn.Sequential) and len(model) == 1 else (3, 64, 64)
        result = profile(model, shape)
        text = str(result)
        lines = text.splitlines()
        assert len(lines) == len(result.layers) + 5          # summary, header, rules, total
        assert lines[1].split()[:4] == ["layer", "type", "output", "params"]
        assert lines[-1].split()[0] == "total" and f"{result.params:,}" in lines[-1]
        assert f"{result.madds:,} MAdds" in lines[0]
        assert max(map(len, lines)) < 180
        for layer, line in zip(result.layers, lines[3:-2]):
            assert line.startswith(layer.name) and layer.layer in line
        has_dynamic = any(layer.aggregation for layer in result.layers)
        assert ("aggregation" in lines[1]) == has_dynamic
        assert len(repr(result)) < 300 and repr(result).startswith("<Profile ")


def test_model_builders_pass_the_attention_width_through():
    from dynconv_np.models import mobilenet_v2, mobilenet_v3_small, resnet10
    from dynconv_np.models.small import small_cnn
    builders = [(lambda **kw: small_cnn(width=4, **kw), (1, 8, 8)), (resnet10, (3, 32, 32)),
                (mobilenet_v3_small, (3, 32, 32)), (lambda **kw: mobilenet_v2(0.35, **kw),
                                                    (3, 32, 32))]
    for build, shape in builders:
        exact = build(dynamic=True, backend="numpy", rng=0, attention_hidden=5)
        layers = [m for m in exact.modules() if isinstance(m, nn.DynamicConv2d)]
        assert layers and {m.hidden for m in layers} == {5}
        # profile counts the attention FCs with that width: FC1 C_in * 5 + FC2 5 * K
        costs = [c for c in profile(exact, shape).layers if c.layer == "DynamicConv2d"]
        assert [c.attention_fc for c in costs] == [m.in_channels * 5 + 5 * m.num_kernels
                                                   for m in layers]
        wide = build(dynamic=True, backend="numpy", rng=0, attention_reduction=1,
                     attention_min_hidden=1)
        assert [m.hidden for m in wide.modules() if isinstance(m, nn.DynamicConv2d)] == \
            [m.in_channels for m in layers]


# -- the family: each layer's row is the formula of its notes (per sample, times N) ----------

def test_condconv_own_routing_row():
    layer = nn.CondConv2d(8, 16, 3, padding=1, num_experts=3, backend="numpy")
    cost = only_layer(layer, (2, 8, 6, 6))
    assert (cost.layer, cost.output_shape) == ("CondConv2d", (2, 16, 6, 6))
    assert cost.conv == 2 * 41472            # 16 * 6 * 6 * 8 * 3 * 3, as the static conv
    assert cost.attention_pool == 2 * 288    # C_in H W = 8 * 36
    assert cost.attention_fc == 2 * 24       # C_in E = 8 * 3, one FC
    assert cost.aggregation == 2 * 3504      # E (P + C_out) = 3 * (1152 + 16)
    assert cost.params == 3531               # 3 * 1168 + 8 * 3 + 3 (routing bias)


def test_condconv_block_counts_its_shared_routing_once_at_the_block_input():
    routing = nn.CondConvRouting(8, 3, backend="numpy")
    block = nn.CondConvBlock(
        routing, nn.CondConv2d(8, 16, 3, padding=1, bias=False, num_experts=3, routing=routing,
                               backend="numpy"),
        nn.BatchNorm2d(16),
        nn.CondConv2d(16, 16, 1, bias=False, num_experts=3, routing=routing, backend="numpy"))
    result = profile(block, (8, 6, 6))
    rows = {c.name: c for c in result.layers}
    assert list(rows) == ["routing", "0", "1", "2"]
    assert [n for n, _, _ in block.named_parameters()][:2] == ["routing.weight", "routing.bias"]
    r = rows["routing"]
    assert (r.layer, r.conv, r.attention_pool, r.attention_fc, r.aggregation, r.params) == (
        "CondConvRouting", 0, 288, 24, 0, 27)     # pool 8 * 36, FC 8 * 3; params 24 + 3
    first, last = rows["0"], rows["2"]
    assert (first.conv, first.attention, first.aggregation, first.params) == (
        41472, 0, 3456, 3456)                      # no routing costs; E P = 3 * 1152
    assert (last.conv, last.attention, last.aggregation, last.params) == (
        9216, 0, 768, 768)                         # 16 * 36 * 16; 3 * 256
    assert result.output_shape == (1, 16, 6, 6)
    assert result.params == sum(int(p.size) for _, p, _ in block.named_parameters())


def test_odconv_row_folds_the_scaling_into_aggregation():
    layer = nn.ODConv2d(8, 16, 3, padding=1, num_kernels=4, backend="numpy")
    assert layer.hidden == 16 and set(layer.heads) == {"channel", "filter", "spatial", "kernel"}
    cost = only_layer(layer, (2, 8, 6, 6))
    assert cost.conv == 2 * 41472
    assert cost.attention_pool == 2 * 288
    assert cost.attention_fc == 2 * 720      # d C_in + d S = 16 * 8 + 16 * (8 + 16 + 9 + 4)
    # P (K + 1) = 1152 * 5, plus the scaling C_in H W + C_out H' W' = 288 + 576
    assert cost.aggregation == 2 * (5760 + 864)
    assert cost.params == 5397               # K P + d C_in + 2 d + d S + S = 4608+128+32+592+37


def test_dcd_row():
    layer = nn.DCDConv2d(16, 16, 3, backend="numpy")
    assert (layer.latent_dim, layer.squeeze) == (4, 4)
    cost = only_layer(layer, (2, 16, 6, 6))
    assert cost.output_shape == (2, 16, 6, 6)
    assert cost.conv == 2 * 82944            # 16 * 36 * 16 * 9
    assert cost.attention_pool == 2 * 576    # 16 * 36
    assert cost.attention_fc == 2 * 208      # C_in S + S^2 + S L^2 + S C_out = 64+16+64+64
    assert cost.aggregation == 2 * 5760      # (C_in L + L^2 + L C_out + C_out) H'W' = 160 * 36
    assert cost.params == 2304 + 352         # W0; C_in L + C_out L + C_in S + S^2 + L^2 S
    #                                          + C_out S + 4 L = 64+64+64+16+64+64+16


def test_fdy_row():
    layer = nn.FDYConv2d(8, 16, 3, padding=1, num_kernels=4, backend="numpy")
    cost = only_layer(layer, (2, 8, 6, 6))
    assert cost.conv == 2 * 41472
    assert cost.attention_pool == 2 * 288    # C_in T F
    assert cost.attention_fc == 2 * 672      # D C_in kf F' + K D F' = 4*8*3*6 + 4*4*6
    assert cost.aggregation == 2 * (3 * 41472 + 4 * 16 * 36)   # K - 1 convs + output mixing
    assert cost.params == 4 * 1152 + 4 * 8 * 3 + 2 * 4 + 4 * 4 + 4   # no bias by default
