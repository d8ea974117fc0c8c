"""``python -m dynconv_np demo``: the table it prints, its options, and its errors."""
import io

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
    rows = {line.split()[0]: line.split() for line in out.splitlines()
            if line.split() and line.split()[0] in ("static", "dynamic")}
    for name, dynamic in (("static", False), ("dynamic", True)):
        cost = profile(small_cnn(width=2, dynamic=dynamic, num_kernels=2, backend="numpy"),
                       (1, 8, 8))
        assert rows[name][1] == f"{cost.params:,}" and rows[name][2] == f"{cost.madds:,}"
        accuracy = float(rows[name][-3])                  # test accuracy mean (percent)
        assert 0 <= accuracy <= 100 and rows[name][-2] == "+-"
    assert rows["static"][3] == "0.0%" and rows["dynamic"][3] != "0.0%"
    assert "test accuracy % per seed, static:" in out and "total wall time" in out


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
