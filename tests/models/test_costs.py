"""The ``costs`` command prints the tables it promises, from the profiles it claims."""
import pytest

from dynconv_np.models import costs, profile


def test_summary_lists_every_model_with_its_extra(capsys):
    assert costs.main(["--resolution", "64"]) == 0
    out = capsys.readouterr().out
    for name in costs.MODELS:
        assert f"\n{name} " in out
    static, dynamic = costs.static_and_dynamic("resnet10", 64)
    extra = 100 * (dynamic.madds - static.madds) / static.madds
    row = next(line for line in out.splitlines() if line.startswith("resnet10 "))
    assert row.split()[1:5] == [f"{static.params / 1e6:.2f}M", f"{dynamic.params / 1e6:.2f}M",
                                f"{static.madds / 1e6:.1f}M", f"{dynamic.madds / 1e6:.1f}M"]
    assert row.split()[-2] == f"+{extra:.1f}%"
    lines = out.splitlines()
    assert len({len(line) for line in lines[1:3 + len(costs.MODELS)]}) == 1  # aligned columns


def test_per_layer_total_row_is_the_profile_total(capsys):
    assert costs.main(["--model", "mobilenet_v3_small", "--per-layer", "--resolution", "64"]) == 0
    out = capsys.readouterr().out
    model = costs.MODELS["mobilenet_v3_small"](dynamic=True, backend="numpy", rng=0)
    result = profile(model, (3, 64, 64))
    total = next(line for line in out.splitlines() if line.startswith("total")).split()
    assert total[1:] == [f"{v:,}" for v in (result.params, result.conv, result.attention_pool,
                                            result.attention_fc, result.aggregation)]
    assert sum(line.split()[1:2] == ["DynamicConv2d"] for line in out.splitlines()) == 33


def test_time_flag_reports_a_forward(capsys):
    assert costs.main(["--model", "mobilenet_v3_small", "--time", "--backend", "numpy",
                       "--resolution", "32", "--repeats", "1"]) == 0
    timing = capsys.readouterr().out.split("Forward of one")[1]
    row = next(line for line in timing.splitlines() if line.startswith("mobilenet_v3_small"))
    assert len(row.split()) == 8 and row.split()[-2] == "ms"


@pytest.mark.parametrize("argv", [["--per-layer"], ["--model", "vgg16"], ["--resolution", "8"]])
def test_bad_arguments_exit_with_usage(argv):
    with pytest.raises(SystemExit) as exit_info:
        costs.main(argv)
    assert exit_info.value.code == 2


@pytest.mark.parametrize("variant, label", [("condconv", "CondConv"), ("odconv", "ODConv"),
                                            ("dcd", "DCD"), ("dyconv", "DY")])
def test_variant_table_is_static_vs_that_variant(variant, label, capsys):
    assert costs.main(["--variant", variant, "--resolution", "64"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Static vs {label}") and f"{label} params" in out
    static, dynamic = costs.static_and_dynamic("resnet10", 64, variant=variant)
    assert dynamic.madds > static.madds and dynamic.params > static.params
    row = next(line for line in out.splitlines() if line.startswith("resnet10 ")).split()
    assert row[1:5] == [f"{static.params / 1e6:.2f}M", f"{dynamic.params / 1e6:.2f}M",
                        f"{static.madds / 1e6:.1f}M", f"{dynamic.madds / 1e6:.1f}M"]
    extra = dynamic.attention + dynamic.aggregation
    assert row[-2] == f"+{100 * extra / static.madds:.1f}%"
    assert dynamic.madds - static.madds == extra        # the variant changes no conv count


def test_variant_per_layer_names_the_layer_class(capsys):
    assert costs.main(["--model", "resnet10", "--per-layer", "--variant", "odconv",
                       "--resolution", "64"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("resnet10, ODConv (K=4), 64 x 64")
    assert sum(line.split()[1:2] == ["ODConv2d"] for line in out.splitlines()) == 11   # 8 + 3 shortcuts


def test_fdy_is_not_a_costs_variant(capsys):
    with pytest.raises(SystemExit):
        costs.main(["--variant", "fdy"])
