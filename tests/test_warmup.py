"""``python -m dynconv_np warmup``: every backend and dtype compiled ahead, from the CLI too."""
import io

from dynconv_np import warmup as warmup_module


def test_warmup_runs_every_path_and_reports_each_backend_and_dtype():
    out = io.StringIO()
    warmup_module.warmup(backends=("loops", "numba"), dtypes=("float64",), out=out)
    lines = out.getvalue().splitlines()
    assert [line.split(":")[0].split() for line in lines] == [["loops", "float64"],
                                                              ["numba", "float64"]]
    assert all("ready in" in line for line in lines)


def test_cli_dispatches_warmup(capsys):
    from dynconv_np.cli import main
    assert main(["warmup", "--backends", "loops", "--dtypes", "float64"]) == 0
    assert "loops  float64: ready in" in capsys.readouterr().out
