"""The benchmark's timing plumbing (dynconv_np.bench): phases, rounds and first calls.

Speed itself is never asserted in tests (it is measured by benchmarks/bench_layers.py);
these check that the numbers the table is built from are collected the way its header says.
"""
import pytest

from dynconv_np import bench

TWO_LAYERS = bench.TINY_SUITE[:2]


def _recording_libraries(log):
    """Fake libraries whose closures log (library, layer, kind) on every call."""
    def make(library):
        def calls(spec):
            return (lambda: log.append((library, spec.name, "fwd")),
                    lambda: log.append((library, spec.name, "fwd_bwd")))
        return calls
    return {name: make(name) for name in ("a", "b")}


@pytest.fixture(autouse=True)
def _no_pause(monkeypatch):
    monkeypatch.setattr(bench, "PHASE_PAUSE_S", 0.0)


@pytest.mark.parametrize("repeats, rounds, per_measurement", [(6, 3, 6), (5, 2, 4), (2, 5, 5)])
def test_rounds_split_the_repeats_and_skip_the_first_call(repeats, rounds, per_measurement):
    log = []
    results = bench.time_in_rounds(_recording_libraries(log), TWO_LAYERS, repeats, rounds)
    assert set(results) == {"a", "b"}
    for library in ("a", "b"):
        for spec in TWO_LAYERS:
            timing = results[library][spec.name]
            assert len(timing.fwd) == len(timing.fwd_bwd) == per_measurement
            assert timing.first_call_s >= 0
            # one untimed first call (fwd_bwd) besides the timed ones
            calls = [kind for lib, name, kind in log if (lib, name) == (library, spec.name)]
            assert calls.count("fwd_bwd") == per_measurement + 1
            assert calls.count("fwd") == per_measurement


def test_phases_alternate_by_round_and_never_interleave():
    log = []
    bench.time_in_rounds(_recording_libraries(log), TWO_LAYERS, repeats=4, rounds=2)
    timed = log[2 * len(TWO_LAYERS):]  # after each library's first calls
    libraries_in_order = [lib for i, (lib, _, _) in enumerate(timed)
                          if i == 0 or timed[i - 1][0] != lib]
    assert libraries_in_order == ["a", "b", "a", "b"]


def test_cli_rejects_more_rounds_than_repeats(capsys):
    with pytest.raises(SystemExit):
        bench.main(["--repeats", "2", "--rounds", "3"])
    assert "--rounds must be between 1 and --repeats (2); received 3" in capsys.readouterr().err
