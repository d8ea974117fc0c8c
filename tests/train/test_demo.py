"""``python -m dynconv_np demo``: the report it prints (table, verdict, attention), its options,
its picture, and its errors (one line, exit status 2)."""
import io
import re
import sys

import numpy as np
import pytest

from dynconv_np import DynamicConv2d, cli
from dynconv_np.nn import DCDConv2d
from dynconv_np.models.profile import profile
from dynconv_np.models.small import small_cnn
from dynconv_np.train import demo, demo_plot, demo_report
from dynconv_np.train.data import Dataset, load_digits

TINY = ["--epochs", "1", "--seeds", "2", "--width", "2", "--num-kernels", "2",
        "--backend", "numpy", "--no-progress"]


@pytest.fixture(scope="module")
def tiny_report():
    out = io.StringIO()
    sys_stdout, sys.stdout = sys.stdout, out
    try:
        assert cli.main(["demo"] + TINY) == 0
    finally:
        sys.stdout = sys_stdout
    return out.getvalue()


def test_default_is_digits_mixed_and_the_table_has_profiled_costs(tiny_report):
    out = tiny_report
    assert "dataset digits-mixed: 2694 train / 900 test images of 1x8x8, 10 classes" in out
    assert "a task built to favour input-dependent kernels" in out
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
    assert "train acc % *" in out and "* running accuracy" in out and "training mode" in out
    assert "test accuracy % per seed, static:" in out and "total wall time" in out


def test_report_states_a_verdict_and_explains_the_attention(tiny_report):
    out = tiny_report
    verdict = re.search(r"verdict: DyConv is (AHEAD of|BEHIND|WITHIN NOISE of) static: "
                        r"[+-]\d+\.\d \+- \d+\.\d points .*2 seeds", out)
    assert verdict, out
    assert re.search(r"per seed, DyConv - static: [+-]\d+\.\d, [+-]\d+\.\d", out)
    assert "attention diagnostics on 900 images" in out and "all layers" in out
    assert "in words: pi is" in out and "balanced accuracy" in out
    assert "kernels' mean pairwise cosine during training" in out
    assert "what this run does not show:" in out and "--dataset digits" in out
    assert "per multiply-add" in out


def test_paired_verdict_words():
    static = [0.70, 0.71, 0.72, 0.73]
    assert "AHEAD of" in demo_report.paired_verdict(static, [s + 0.05 for s in static])
    assert "BEHIND" in demo_report.paired_verdict(static, [s - 0.05 + 0.001 * i
                                                    for i, s in enumerate(static)])
    assert "WITHIN NOISE" in demo_report.paired_verdict(static, [0.75, 0.66, 0.76, 0.70])
    line = demo_report.paired_verdict(static, [0.75, 0.76, 0.77, 0.78])
    assert "+5.0 +- 0.0 points" in line and "4 ahead" in line and "+5.0, +5.0" in line
    one = demo_report.paired_verdict([0.5], [0.6])
    assert "one seed" in one and "+-" not in one


def test_one_seed_shows_no_spread_and_plain_digits_one_flag_away(capsys):
    argv = ["--dataset", "digits", "--epochs", "1", "--seeds", "1", "--num-kernels", "2",
            "--no-progress"]
    assert demo.main(argv) == 0
    out = capsys.readouterr().out
    assert "dataset digits: 1347 train / 450 test" in out
    assert "+- 0.0" not in out and "one seed" in out
    assert "favour" not in out.split("\n")[0]


def test_defaults_anneal_over_a_tenth_and_options_reach_the_models():
    args = demo.build_parser().parse_args([])
    options = demo.options_from_args(args)
    assert (args.dataset, args.epochs, args.seeds, args.width) == ("digits-mixed", 20, 10, 2)
    assert options.temperature_schedule.epochs == 2.0
    assert options.config().weight_decay == 5e-4
    args = demo.build_parser().parse_args(["--weight-decay", "0", "--tau-start", "8",
                                           "--attention-hidden", "7", "--epochs", "30"])
    options = demo.options_from_args(args)
    assert options.config().weight_decay == 0.0
    assert options.temperature_schedule.start == 8 and options.temperature_schedule.epochs == 3
    model = options.build(load_digits(), True, seed=0)
    layers = [m for m in model.modules() if isinstance(m, DynamicConv2d)]
    assert layers and {m.hidden for m in layers} == {7} and {m.temperature for m in layers} == {8}
    no_anneal = demo.options_from_args(demo.build_parser().parse_args(["--no-anneal"]))
    assert no_anneal.temperature_schedule.tau_at(0) == 1.0


def test_compare_takes_a_dataset_the_user_builds_and_anneals_to_one():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((48, 1, 6, 6)).astype(np.float32)
    y = (x.mean(axis=(1, 2, 3)) > 0).astype(np.int64)
    mine = Dataset("mine", x[:32], y[:32], x[32:], y[32:], ("low", "high"))
    out = io.StringIO()
    results = demo.compare(mine, out=out, epochs=2, seeds=1, num_kernels=2, progress=False)
    assert "dataset mine: 32 train / 16 test images of 1x6x6, 2 classes" in out.getvalue()
    history = results["dynamic"][0]["history"]
    assert history.final["tau"] == 1.0 and "kernel_cosine" in history.final
    report = demo_report.format_report(mine, results, demo.DemoOptions(epochs=2, seeds=1))
    assert "verdict: one seed" in report and "balanced accuracy" not in report


def test_no_anneal_trains_with_plain_softmax():
    options = demo.DemoOptions(epochs=1, seeds=1, anneal=False, progress=False)
    results = demo.compare(load_digits(), options, out=io.StringIO())
    model = results["dynamic"][0]["model"]
    taus = [m.temperature for m in model.modules() if isinstance(m, DynamicConv2d)]
    assert taus and set(taus) == {1.0}


def test_plot_draws_a_png(tmp_path):
    import matplotlib  # noqa: F401  (the test extra installs it: its absence is an error)
    data = load_digits()
    options = demo.DemoOptions(epochs=2, seeds=1, num_kernels=2, progress=False)
    results = demo.compare(data, options, out=io.StringIO())
    path = demo_plot.plot(str(tmp_path / "demo.png"), data, results, options)
    with open(path, "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_is_one_clear_error(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)     # import matplotlib -> ImportError
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["demo", "--plot", "x.png"] + TINY)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--plot needs matplotlib" in err


@pytest.mark.parametrize("argv, message", [
    (["--dataset", "mnist"], "pass --data-dir DIR"),
    (["--dataset", "cifar10", "--data-dir", "/nonexistent-dir"], "does not exist"),
    (["--epochs", "0"], "must be a positive int"),
    (["--anneal-epochs", "-1"], "must be a finite number > 0"),
    (["--weight-decay", "-1"], "must be a finite number >= 0"),
    (["--backend", "tpu"], "invalid choice"),
])
def test_bad_options_exit_with_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["demo"] + argv + ["--no-progress"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err
    assert err.count("\n") == 1 and err.startswith("python -m dynconv_np demo: error:")
    assert "Traceback" not in err


def test_cuda_without_a_gpu_and_costs_with_an_unknown_backend_are_one_line(capsys):
    from dynconv_np.backends import get_backend
    try:
        get_backend("cuda")
        has_cuda = True
    except Exception:  # noqa: BLE001 - no GPU here: the case under test
        has_cuda = False
    if not has_cuda:
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["demo", "--backend", "cuda", "--no-progress"])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and err.count("\n") == 1 and "cuda" in err
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["costs", "--backend", "tpu"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1 and "invalid choice" in err


def test_help_shows_defaults_in_plain_text(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["demo", "--help"])
    help_text = capsys.readouterr().out
    assert exit_info.value.code == 0
    for option in ("--dataset", "--data-dir", "--epochs", "--seeds", "--width", "--num-kernels",
                   "--no-anneal", "--backend", "--weight-decay", "--tau-start",
                   "--attention-hidden", "--plot", "--sweep"):
        assert option in help_text
    flat = " ".join(help_text.split())
    assert "(default: digits-mixed)" in flat and "(default: 20)" in flat
    assert "`" not in help_text and not re.search(r"#\d|issue", help_text, re.IGNORECASE)
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    top = capsys.readouterr().out
    assert "`" not in top and "demo" in top


def test_attention_summary_uniform_and_input_dependent_and_restores_the_mode():
    data = load_digits()
    x = data.x_test[:16]
    assert demo_report.attention_summary(small_cnn(width=2, backend="numpy", rng=0), x) is None
    model = small_cnn(width=2, dynamic=True, backend="numpy", rng=0)
    dynamic = [m for m in model.modules() if isinstance(m, DynamicConv2d)]
    for layer in dynamic:                       # zero logits: pi = 1/K for every image
        layer.params["fc2_weight"][...] = 0
        layer.params["fc2_bias"][...] = 0
    model.train()
    entropy, spread = demo_report.attention_summary(model, x)
    assert model.training and all(m.training for m in model.modules())
    assert entropy == pytest.approx(1.0, abs=1e-6) and spread == pytest.approx(0.0, abs=1e-7)
    for layer in dynamic:                       # large logits at tau = 1: input-dependent pi
        layer.params["fc2_weight"][...] = 50 * np.random.default_rng(0).standard_normal(
            layer.params["fc2_weight"].shape)
        layer.temperature = 1.0
    model.eval()
    entropy, spread = demo_report.attention_summary(model, x)
    assert not model.training
    assert entropy < 0.9 and spread > 0.01


def test_odconv_variant_trains_and_states_its_verdict(capsys):
    assert cli.main(["demo", "--variant", "odconv", "--epochs", "1", "--seeds", "1",
                     "--width", "2", "--backend", "numpy", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "dynamic twin ODConv: K = 4" in out
    assert re.search(r"verdict: one seed, no spread to judge noise by: ODConv - static = "
                     r"[+-]\d+\.\d points", out), out
    words = " ".join(out.split())                 # the paragraph is wrapped at 100 columns
    assert "the shuffle test" in words and "does not apply to ODConv layers" in words
    cost = profile(small_cnn(width=2, dynamic="odconv", backend="numpy"), (1, 8, 8))
    row = next(line.split() for line in out.splitlines() if line.startswith("dynamic "))
    assert row[1:3] == [f"{cost.params:,}", f"{cost.madds:,}"]
    assert "a long anneal" in out                 # ODConv anneals its temperature too


def test_variant_option_reaches_the_dynamic_net_only():
    options = demo.options_from_args(demo.build_parser().parse_args(["--variant", "dcd"]))
    data = load_digits()
    assert options.variant_name == "DCD" and not options.has_temperature
    assert any(isinstance(m, DCDConv2d) for m in options.build(data, True, 0).modules())
    assert not any(isinstance(m, DCDConv2d) for m in options.build(data, False, 0).modules())
    with pytest.raises(SystemExit):
        demo.build_parser().parse_args(["--variant", "fdy"])
