"""The comparison harness: correct ports pass in float64 and float32, planted bugs are found
at the stage where they are, batch semantics are checked, and the CLI reports and exits."""
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the interop tests compare against PyTorch")

import dynconv_np  # noqa: E402
from dynconv_np.interop import harness  # noqa: E402

from . import torch_layers as tl  # noqa: E402

X = np.random.default_rng(1).standard_normal((3, 8, 9, 9))
FORWARD_ROWS = ["pooled", "logits", "pi", "w_n", "b_n", "y"]
BACKWARD_ROWS = ["dw_n", "db_n", "dweight", "dbias", "dpi", "dlogits", "dfc2_weight",
                 "dfc2_bias", "dpooled", "dfc1_weight", "dx"]


def _kaijie(cls=tl.KaijieLayout, out=6, **options):
    torch.manual_seed(0)
    return cls(8, out, 3, **{"padding": 1, **options})


def _tardelean(cls=tl.TardeleanLayout, **options):
    torch.manual_seed(0)
    return cls(4, 2, 8, 6, 3, **{"padding": 1, **options})


@pytest.mark.parametrize("options", [{}, {"stride": 2, "dilation": 2, "padding": 2},
                                     {"groups": 2, "bias": False},
                                     {"groups": 8, "K": 1, "out": 16}])
def test_a_correct_kaijieshi7_port_passes_every_stage(options):
    report = dynconv_np.compare(_kaijie(**options), X, preset="kaijieshi7", verbose=False)
    assert report.passed, report
    stages = [r.stage for r in report.rows if r.dtype == "float64" and r.status == "ok"]
    expected = [s for s in FORWARD_ROWS + BACKWARD_ROWS
                if options.get("bias", True) or s not in ("b_n", "db_n", "dbias")]
    assert stages[:len(expected)] == expected
    assert {r.dtype for r in report.rows} == {"float64", "float32"}
    assert report.config["tau"] == 34.0


def test_a_correct_tardelean_port_passes_with_the_temperature_argument():
    report = dynconv_np.compare(_tardelean(stride=2), X, preset="tardelean", temperature=0.7,
                                verbose=False)
    assert report.passed, report
    assert report.row("dfc1_bias").status == "ok"
    assert report.row("dx", "float32").status == "ok"
    # per-sample kernels were read from the loop of per-sample conv2d calls
    assert report.row("w_n").status == "ok" and report.row("dw_n").status == "ok"


@pytest.mark.parametrize("cls,first", [(tl.KaijieNoTemperature, "pi"),
                                       (tl.KaijieMaxPool, "pooled"),
                                       (tl.KaijieBatchSoftmax, "pi"),
                                       (tl.KaijieDetachedAttention, "dpooled")])
def test_a_planted_bug_is_flagged_at_its_stage(cls, first):
    report = dynconv_np.compare(_kaijie(cls), X, preset="kaijieshi7", verbose=False)
    assert not report.passed
    assert report.first_failure.stage == first
    assert report.first_failure.dtype == "float64"
    upstream = FORWARD_ROWS + BACKWARD_ROWS
    for stage in upstream[:upstream.index(first)]:
        assert report.row(stage).status == "ok", stage
    assert f"first wrong stage: {first} (float64)" in str(report)


def test_the_batch_checks_catch_a_softmax_over_the_batch():
    report = dynconv_np.compare(_kaijie(tl.KaijieBatchSoftmax), X, preset="kaijieshi7",
                                verbose=False)
    assert report.row("batch N=1 [torch]").status == "FAIL"
    assert report.row("batch perm [torch]").status == "ok"     # permutation-equivariant
    assert report.row("batch N=1 [ours]").status == "ok"


def test_a_bias_from_another_sample_fails_at_b_n_and_the_batch_check():
    report = dynconv_np.compare(_tardelean(tl.TardeleanBiasMixup), X, preset="tardelean",
                                verbose=False)
    assert report.first_failure.stage == "b_n"
    assert report.row("w_n").status == "ok"
    assert report.row("batch perm [torch]").status == "FAIL"


def test_the_table_is_printed_and_names_every_column(capsys):
    report = dynconv_np.compare(_kaijie(), X[:2], preset="kaijieshi7")
    out = capsys.readouterr().out
    assert out.strip() == str(report).strip()
    header = out.splitlines()[1].split()
    assert header == ["stage", "dtype", "max", "abs", "max", "rel", "tol", "err/tol", "cond",
                      "status"]
    assert "agree within tolerance" in out.splitlines()[-1]


def test_the_softmax_backward_tolerance_follows_the_cancellation():
    # near-identical kernels: dpi is almost the same for every k, so dz = pi (dpi - <pi, dpi>)
    # cancels; the tolerance (and cond) of dlogits grows by |dpi| / |dz|
    layer = _kaijie()
    with torch.no_grad():
        layer.weight[:] = layer.weight[:1] + 1e-6 * torch.randn_like(layer.weight)
        layer.bias[:] = layer.bias[:1]
    report = dynconv_np.compare(layer, X, preset="kaijieshi7", verbose=False)
    plain = dynconv_np.compare(_kaijie(), X, preset="kaijieshi7", verbose=False)
    assert report.passed, report
    assert report.row("dlogits").cond > 1e4 * plain.row("dlogits").cond
    assert report.row("dlogits").tol == pytest.approx(plain.row("dlogits").tol, rel=0.5)


class _HiddenGeometry(tl.KaijieLayout):
    """Keeps stride/padding/dilation where the harness does not look for them."""

    def __init__(self, *args, **options):
        super().__init__(*args, **options)
        self.geom = {"stride": self.__dict__.pop("stride"),
                     "padding": self.__dict__.pop("padding"),
                     "dilation": self.__dict__.pop("dilation")}

    def __getattr__(self, name):
        if name in ("stride", "padding", "dilation"):
            return self.__dict__["geom"][name]
        return super().__getattr__(name)


def test_geometry_from_arguments_and_errors():
    layer = _kaijie(_HiddenGeometry, stride=2)   # not found: read from its conv2d call
    report = dynconv_np.compare(layer, X, preset="kaijieshi7", verbose=False)
    assert report.passed and "read from its conv2d call" in report.header
    with pytest.raises(ValueError, match="shape"):
        dynconv_np.compare(_kaijie(), X[0], preset="kaijieshi7", verbose=False)
    module = _kaijie()
    del module.attention.temperature
    with pytest.raises(ValueError, match="temperature="):
        dynconv_np.compare(module, X, preset="kaijieshi7", verbose=False)


def test_the_cli_compares_a_class_from_a_file(tmp_path, capsys):
    source = tmp_path / "port.py"
    source.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(tl.__file__.rsplit('/tests/', 1)[0])!r})
        from tests.interop.torch_layers import KaijieLayout, KaijieMaxPool
        """))
    args = ["--preset", "kaijieshi7", "--input-shape", "2,8,7,7",
            "--init-args", '{"in_planes": 8, "out_planes": 4, "kernel_size": 3, "padding": 1}']
    assert harness.main([f"{source}:KaijieLayout"] + args) == 0
    assert "agree within tolerance" in capsys.readouterr().out
    assert harness.main([f"{source}:KaijieMaxPool"] + args) == 1
    assert "first wrong stage: pooled" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        harness.main([f"{source}:Nope"] + args)


class _OurNames(torch.nn.Module):
    """A port that keeps our parameter names, with tau a forward argument."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.weight = torch.nn.Parameter(torch.randn(3, 5, 8, 3, 3, generator=g) / 8)
        self.fc1_weight = torch.nn.Parameter(torch.randn(4, 8, generator=g))
        self.fc1_bias = torch.nn.Parameter(torch.rand(4, generator=g))
        self.fc2_weight = torch.nn.Parameter(torch.randn(3, 4, generator=g))
        self.fc2_bias = torch.nn.Parameter(torch.randn(3, generator=g))
        self.stride, self.padding, self.dilation = 1, 1, 1

    def forward(self, x, tau):
        h = torch.relu(x.mean(dim=(2, 3)) @ self.fc1_weight.T + self.fc1_bias)
        pi = torch.softmax((h @ self.fc2_weight.T + self.fc2_bias) / tau, dim=1)
        w = torch.einsum("nk,koihw->noihw", pi, self.weight)
        return torch.stack([torch.nn.functional.conv2d(x[i], w[i], padding=1)
                            for i in range(len(x))])


@pytest.mark.parametrize("preset", ["dynconv_np", None])
def test_a_port_without_known_hooks_is_compared_where_it_can_be(preset):
    name_map = None if preset else {n: n for n in ("weight", "fc1_weight", "fc1_bias",
                                                   "fc2_weight", "fc2_bias")}
    report = dynconv_np.compare(_OurNames(), X, preset=preset, name_map=name_map,
                                temperature=2.0, verbose=False)
    assert report.passed, report
    assert report.row("pi").status == "n/a" and report.row("pooled").status == "n/a"
    # per-sample kernels from the unbatched conv2d calls, one per sample
    for stage in ("w_n", "y", "dw_n", "dx", "dfc1_bias"):
        assert report.row(stage).status == "ok", stage
