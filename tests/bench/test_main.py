"""The ``bench`` command (dynconv_np.bench.main): its flags, its place in the CLI, and one
--tiny CPU run end to end."""
import pytest

from dynconv_np import cli
from dynconv_np.bench import main, parse_args, timing


def test_cli_rejects_more_rounds_than_repeats(capsys):
    with pytest.raises(SystemExit):
        main(["--repeats", "2", "--rounds", "3"])
    assert "--rounds must be between 1 and --repeats (2); received 3" in capsys.readouterr().err


def test_rounds_default_to_five_or_the_repeats():
    assert parse_args([]).rounds == 5
    assert parse_args(["--repeats", "3"]).rounds == 3
    assert parse_args(["--repeats", "1", "--section", "gpu"]).rounds == 1


@pytest.mark.parametrize("text", ["cuda", "numba,numba", "", "numba,bogus"])
def test_backends_must_be_distinct_cpu_backends(text, capsys):
    with pytest.raises(SystemExit):
        parse_args(["--backends", text])
    assert "--backends" in capsys.readouterr().err


def test_backends_flag():
    assert parse_args([]).backends == ("numba", "numpy")
    assert parse_args(["--backends", "numpy, numba"]).backends == ("numpy", "numba")


def test_the_cli_dispatches_bench_here(capsys):
    with pytest.raises(SystemExit):
        cli.main(["bench", "--repeats", "2", "--rounds", "3"])
    assert "python -m dynconv_np bench: error: --rounds" in capsys.readouterr().err


def test_tiny_cpu_run_prints_every_table(monkeypatch, capsys):
    monkeypatch.setattr(timing, "PHASE_PAUSE_S", 0.0)
    assert main(["--tiny", "--repeats", "2", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    assert "CPU section:" in out and "tiny suite" in out
    assert "fwd med ms fwd min ms  GFLOP/s  %peak | f+b med ms f+b min ms" in out
    libraries = {line.split()[1] for line in out.splitlines()   # "L1    numba   | ..."
                 if line.startswith("L") and line.split()[1:2] != ["|"]}
    assert {"numba", "numpy"} <= libraries
    if "torch is not importable" not in out:
        assert "numba / torch, medians" in out and "numba / torch, minima" in out
        assert "torch" in libraries
    assert "numba / numpy, medians" in out
    assert "L1: attention + aggregation" in out and "L4: attention + aggregation" in out
    assert "L4 forward+backward peak memory (numba" in out
    assert "import dynconv_np" not in out   # no new processes with --tiny
