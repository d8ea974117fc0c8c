"""``python -m dynconv_np demo``: the table it prints, its options, and its errors."""
import io

import numpy as np
import pytest

from dynconv_np import DynamicConv2d, cli
from dynconv_np.models.profile import profile
from dynconv_np.models.small import small_cnn
from dynconv_np.train import demo
from dynconv_np.train.data import load_digits

TINY = ["--epochs", "1", "--seeds", "2", "--width", "2", "--num-kernels", "2",
        "--backend", "numpy", "--no-progress"]


def test_demo_prints_the_table_with_profiled_costs(capsys):
    assert cli.main(["demo"] + TINY) == 0
    out = capsys.readouterr().out
    assert "dataset digits: 1347 train / 450 test images of 1x8x8, 10 classes" in out
    rows = {parts[0]: parts for parts in map(str.split, out.splitlines())
            if len(parts) > 2 and parts[0] in ("static", "dynamic")
            and parts[1].replace(",", "").isdigit()}
    for name, dynamic in (("static", False), ("dynamic", True)):
        cost = profile(small_cnn(width=2, dynamic=dynamic, num_kernels=2, backend="numpy"),
                       (1, 8, 8))
        assert rows[name][1] == f"{cost.params:,}" and rows[name][2] == f"{cost.madds:,}"
        accuracy = float(rows[name][-3])                  # test accuracy mean (percent)
        assert 0 <= accuracy <= 100 and rows[name][-2] == "+-"
    assert rows["static"][3] == "0.0%" and rows["dynamic"][3] != "0.0%"
    assert "test accuracy % per seed, static:" in out and "total wall time" in out
    assert "dynamic attention pi on the test images" in out


def test_no_anneal_trains_with_plain_softmax():
    args = demo.build_parser().parse_args(TINY[:2] + ["--seeds", "1", "--width", "2",
                                                      "--backend", "numpy", "--no-progress",
                                                      "--no-anneal"])
    results = demo.run(args, load_digits(), out=io.StringIO())
    model = results["dynamic"][0]["model"]
    taus = [m.temperature for m in model.modules() if isinstance(m, DynamicConv2d)]
    assert taus and set(taus) == {1.0}
    assert results["dynamic"][0]["history"].final["tau"] is None


def test_annealing_ends_at_tau_one():
    args = demo.build_parser().parse_args(["--epochs", "2", "--seeds", "1", "--width", "2",
                                           "--anneal-epochs", "1", "--backend", "numpy",
                                           "--no-progress"])
    results = demo.run(args, load_digits(), out=io.StringIO())
    assert results["dynamic"][0]["history"].final["tau"] == 1.0


@pytest.mark.parametrize("argv, message", [
    (["--dataset", "mnist"], "pass data_dir"),
    (["--dataset", "cifar10", "--data-dir", "/nonexistent-dir"], "does not exist"),
    (["--epochs", "0"], "must be a positive int"),
    (["--anneal-epochs", "-1"], "must be a finite number > 0"),
    (["--backend", "tpu"], "invalid choice"),
])
def test_bad_options_exit_with_a_message(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        demo.main(argv + ["--no-progress"])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_help_lists_the_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["demo", "--help"])
    help_text = capsys.readouterr().out
    assert exit_info.value.code == 0
    for option in ("--dataset", "--data-dir", "--epochs", "--seeds", "--width", "--num-kernels",
                   "--no-anneal", "--backend"):
        assert option in help_text


def test_attention_summary_uniform_and_input_dependent():
    data = load_digits()
    x = data.x_test[:16]
    assert demo.attention_summary(small_cnn(width=2, backend="numpy", rng=0), x) is None
    model = small_cnn(width=2, dynamic=True, backend="numpy", rng=0)
    dynamic = [m for m in model.modules() if isinstance(m, DynamicConv2d)]
    for layer in dynamic:                       # zero logits: pi = 1/K for every image
        layer.params["fc2_weight"][...] = 0
        layer.params["fc2_bias"][...] = 0
    entropy, spread = demo.attention_summary(model, x)
    assert entropy == pytest.approx(1.0, abs=1e-6) and spread == pytest.approx(0.0, abs=1e-7)
    for layer in dynamic:                       # large logits at tau = 1: input-dependent pi
        layer.params["fc2_weight"][...] = 50 * np.random.default_rng(0).standard_normal(
            layer.params["fc2_weight"].shape)
        layer.temperature = 1.0
    entropy, spread = demo.attention_summary(model, x)
    assert entropy < 0.9 and spread > 0.01
