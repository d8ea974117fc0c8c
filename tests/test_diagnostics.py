"""Attention diagnostics: every statistic on a network whose answer is known by construction,
the attention override (what the layer computes with it, and that it is cleared), the
shuffled/frozen tests, the table, and the training callback."""
import numpy as np
import pytest

from dynconv_np import nn
from dynconv_np.diagnostics import (AttentionMonitor, attention_diagnostics, attention_layers,
                                    attention_probe, collect_attention, derangement,
                                    override_attention)
from dynconv_np.functional import aggregate_kernels_forward, per_sample_conv2d_forward
from dynconv_np.models.small import small_cnn
from dynconv_np.train.loop import TrainConfig, fit

from tests.train.helpers import digits_subset


def sign_switch_model():
    """pooled mean p -> pi = one-hot [p > 0, p < 0] (logits +-20 p, tau 1); kernel 1 is +1,
    kernel 2 is -1, so the conv output's mean is |p| for the right pi and -|p| for the wrong
    one; class 0 iff that mean is > 0. Every image is class 0 when pi is its own."""
    conv = nn.DynamicConv2d(1, 1, 1, bias=False, num_kernels=2, temperature=1.0,
                            backend="numpy", dtype=np.float64, rng=0)
    conv.params["weight"][...] = np.array([1.0, -1.0]).reshape(2, 1, 1, 1, 1)
    conv.params["fc1_weight"][...] = np.array([[1.0], [-1.0], [0.0], [0.0]])
    conv.params["fc1_bias"][...] = 0
    conv.params["fc2_weight"][...] = np.array([[20.0, -20.0, 0, 0], [-20.0, 20.0, 0, 0]])
    conv.params["fc2_bias"][...] = 0
    head = nn.Linear(1, 2, dtype=np.float64, rng=0)
    head.params["weight"][...] = np.array([[1.0], [-1.0]])
    head.params["bias"][...] = 0
    return nn.Sequential(conv, nn.GlobalAvgPool2d(), head)


def signed_images(n=64, seed=0):
    rng = np.random.default_rng(seed)
    signs = np.where(np.arange(n) % 2 == 0, 1.0, -1.0)
    return signs[:, None, None, None] * (1 + 0.1 * rng.standard_normal((n, 1, 4, 4))), signs


def test_used_attention_is_detected_by_shuffling():
    model = sign_switch_model()
    x, signs = signed_images()
    y = np.zeros(len(x), dtype=np.int64)
    result = attention_diagnostics(model, x, y, seed=0)
    assert result.accuracy == 1.0
    # another image's pi is wrong exactly when that image has the other sign
    perm = derangement(len(x), 0)
    expected = np.mean(signs[perm] == signs)
    assert result.shuffled_acc == pytest.approx(expected) and result.shuffled_acc < 0.8
    assert result.layers[0].shuffled_acc == pytest.approx(expected)
    assert "pi is used" in result.verdict()
    (layer,) = result.layers
    assert layer.entropy < 0.01 and layer.max_pi > 0.99
    assert layer.usage == pytest.approx((0.5, 0.5), abs=1e-6)
    assert layer.spread == pytest.approx(0.5, abs=1e-3)          # pi_k is 0 or 1, half each
    assert layer.kernel_cosine == pytest.approx(-1.0)             # W2 = -W1


def test_uniform_attention_statistics_and_tests_find_nothing():
    data = digits_subset(32, 48)
    model = small_cnn(width=2, dynamic=True, num_kernels=4, backend="numpy", rng=0)
    for layer in model.modules():
        if isinstance(layer, nn.DynamicConv2d):
            layer.params["fc2_weight"][...] = 0
            layer.params["fc2_bias"][...] = 0
    result = attention_diagnostics(model, data.x_test, data.y_test)
    assert len(result.layers) == 2 and [r.name for r in result.layers] == ["3", "6"]
    for row in result.layers:
        assert row.entropy == pytest.approx(1.0, abs=1e-6)
        assert row.max_pi == pytest.approx(0.25, abs=1e-6)
        assert row.usage == pytest.approx((0.25,) * 4, abs=1e-6)
        assert row.spread == pytest.approx(0.0, abs=1e-6) and row.logit_scale < 1e-5
        assert row.shuffled_acc == pytest.approx(result.accuracy)
        assert row.frozen_acc == pytest.approx(result.accuracy)
    assert result.shuffled_acc == result.frozen_acc == result.accuracy
    assert "not detectably used" in result.verdict()


def test_logit_scale_and_kernel_cosine_by_construction():
    layer = nn.DynamicConv2d(2, 3, 3, padding=1, num_kernels=4, temperature=2.0,
                             backend="numpy", dtype=np.float64, rng=0)
    layer.params["fc2_weight"][...] = 0
    layer.params["fc2_bias"][...] = [1.0, 2.0, 3.0, 4.0]         # z the same for every image
    layer.params["weight"][...] = layer.params["weight"][0]        # four copies of one kernel
    x = np.random.default_rng(0).standard_normal((5, 2, 6, 6))
    (row,) = attention_diagnostics(nn.Sequential(layer), x).layers
    assert row.logit_scale == pytest.approx(np.std([1, 2, 3, 4]) / 2.0)
    assert row.logit_std == pytest.approx(np.std([1, 2, 3, 4]))
    assert row.kernel_cosine == pytest.approx(1.0) and row.kernel_cosine_max == pytest.approx(1.0)
    assert row.tau == 2.0 and row.spread == pytest.approx(0.0, abs=1e-12)


def test_override_computes_the_layer_with_the_given_attention_and_is_cleared():
    layer = nn.DynamicConv2d(3, 4, 3, padding=1, num_kernels=3, temperature=1.0,
                             backend="numpy", dtype=np.float64, rng=1).eval()
    x = np.random.default_rng(2).standard_normal((4, 3, 5, 5)) + np.arange(4)[:, None, None, None]
    y_clean = layer(x)
    pi = layer.attention
    perm = derangement(4, 0)
    with override_attention({layer: lambda p: p[perm]}):
        y_shuffled = layer(x)
        assert np.allclose(layer.attention, pi[perm])
    (w_n, b_n), _ = aggregate_kernels_forward(pi[perm], layer.params["weight"],
                                              layer.params["bias"], backend="numpy")
    expected, _ = per_sample_conv2d_forward(x, w_n, b_n, padding=1, backend="numpy")
    np.testing.assert_allclose(y_shuffled, expected, rtol=1e-12, atol=1e-12)
    assert layer.attention_override is None
    np.testing.assert_array_equal(layer(x), y_clean)


def test_override_is_refused_in_training_mode_and_restored_after_an_error():
    layer = nn.DynamicConv2d(1, 1, 1, backend="numpy", rng=0)
    x = np.ones((2, 1, 3, 3), dtype=np.float32)
    with pytest.raises(RuntimeError, match="eval mode"):
        with override_attention({layer: lambda p: p}):
            layer(x)
    assert layer.attention_override is None
    layer.eval()
    with pytest.raises(ValueError, match="shape"):
        with override_attention({layer: lambda p: p[:1]}):
            layer(x)
    assert layer.attention_override is None
    with pytest.raises(TypeError, match="no attention_override hook"):
        with override_attention({nn.ReLU(): lambda p: p}):
            pass


def test_mode_is_restored_and_static_models_have_no_rows():
    data = digits_subset(16, 16)
    model = small_cnn(width=2, dynamic=True, backend="numpy", rng=0)
    model.train()
    attention_diagnostics(model, data.x_test, data.y_test)
    assert all(m.training for m in model.modules())
    model.eval()
    collect_attention(model, data.x_test)
    assert not any(m.training for m in model.modules())
    static = small_cnn(width=2, backend="numpy", rng=0)
    result = attention_diagnostics(static, data.x_test, data.y_test)
    assert result.layers == () and "no dynamic layers" in str(result)
    assert attention_layers(static) == [] and collect_attention(static, data.x_test) == []


def test_batches_give_the_same_result_as_one_forward():
    model = sign_switch_model()
    x, _ = signed_images(30)
    y = np.zeros(30, dtype=np.int64)
    whole = attention_diagnostics(model, x, y, batch_size=512)
    pieces = attention_diagnostics(model, x, y, batch_size=7)
    assert whole == pieces


def test_table_is_readable():
    data = digits_subset(16, 40)
    model = small_cnn(width=2, dynamic=True, backend="numpy", rng=0)
    text = str(attention_diagnostics(model, data.x_test, data.y_test))
    lines = text.splitlines()
    assert lines[0].startswith("attention diagnostics on 40 images (accuracy")
    assert lines[1].split()[:4] == ["layer", "K", "tau", "entropy"]
    assert any(line.startswith("all layers") for line in lines)
    assert lines[-2].startswith("verdict:") or any(line.startswith("verdict:") for line in lines)
    assert max(map(len, lines)) <= 110 and len(lines) < 20


def test_derangement_has_no_fixed_point():
    for n in (2, 3, 10, 101):
        perm = derangement(n, n)
        assert sorted(perm) == list(range(n)) and not np.any(perm == np.arange(n))
    with pytest.raises(ValueError):
        derangement(1)


def test_probe_reads_a_property_the_attention_encodes():
    model = sign_switch_model()
    x, signs = signed_images(80)
    labels = (signs > 0).astype(np.int64)
    assert attention_probe(model, x[:40], labels[:40], x[40:], labels[40:]) == 1.0
    static = nn.Sequential(nn.GlobalAvgPool2d())
    assert attention_probe(static, x[:40], labels[:40], x[40:], labels[40:]) is None


def test_monitor_as_a_fit_callback_adds_to_every_epoch():
    data = digits_subset(64, 32)
    model = small_cnn(width=2, dynamic=True, num_kernels=2, backend="numpy", rng=0)
    monitor = AttentionMonitor(data.x_test, data.y_test)
    history = fit(model, data, TrainConfig(epochs=2, anneal_epochs=1), progress=False,
                  callbacks=[monitor])
    assert [epoch for epoch, _ in monitor.results] == [1, 2]
    for record, (_, result) in zip(history.epochs, monitor.results):
        assert record["kernel_cosine"] == pytest.approx(
            np.mean([r.kernel_cosine for r in result.layers]))
        assert 0 <= record["attention_entropy"] <= 1
    assert monitor.results[-1][1].layers[0].tau == 1.0
    assert model.training                               # fit's mode is untouched
    with pytest.raises(ValueError, match="every"):
        AttentionMonitor(data.x_test, every=0)


def test_attention_with_more_axes_is_summarised_and_left_untested():
    layer = nn.FDYConv2d(4, 4, 3, padding=1, backend="numpy", rng=0)
    x = np.random.default_rng(0).standard_normal((6, 4, 8, 8)).astype(np.float32)
    model = nn.Sequential(layer, nn.GlobalAvgPool2d())
    result = attention_diagnostics(model, x, np.zeros(6, dtype=np.int64))
    (row,) = result.layers
    assert row.layer == "FDYConv2d" and len(row.usage) == 4 and row.shuffled_acc is None
    assert result.shuffled_acc is None and "not tested" in result.verdict()
    assert not any(line.startswith("all layers") for line in str(result).splitlines())
