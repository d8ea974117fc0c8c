"""``numba_fast/compiling.py``: one notice on stderr when a first call is slow (compiling),
none when it is fast (a cache load), once per process."""
import time

import numpy as np

from dynconv_np.backends.numba_fast import compiling


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
