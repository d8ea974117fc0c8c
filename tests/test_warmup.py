"""``python -m dynconv_np warmup`` and the first-use notice of the numba engine."""
import io
import time

import numpy as np

from dynconv_np import warmup as warmup_module
from dynconv_np.backends.numba_fast import compiling


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


def test_a_slow_first_call_prints_one_notice(monkeypatch, capsys):
    monkeypatch.setattr(compiling, "NOTICE_AFTER", 0.01)
    monkeypatch.setattr(compiling, "_called", set())
    monkeypatch.setattr(compiling, "_notice", {"printed": False})

    @compiling.announces_compilation
    def slow(a):
        time.sleep(0.1)
        return a

    a = np.zeros(2, np.float32)
    for _ in range(3):
        slow(a)
    slow(a.astype(np.float64))
    err = capsys.readouterr().err
    assert err.count("compiling Numba kernels for float32, first use only") == 1
    assert "float64" not in err  # one line per process


def test_a_fast_first_call_prints_nothing(monkeypatch, capsys):
    monkeypatch.setattr(compiling, "_called", set())
    monkeypatch.setattr(compiling, "_notice", {"printed": False})

    @compiling.announces_compilation
    def quick(a):
        return a

    quick(np.zeros(1))
    assert capsys.readouterr().err == ""
