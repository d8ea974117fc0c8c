"""The benchmark's timing plumbing (dynconv_np.bench.timing): phases, rounds, first calls,
alternation, statistics and steal.

Speed itself is never asserted in tests (``python -m dynconv_np bench`` measures it); these
check that the numbers the tables are built from are collected the way their headers say.
"""
import pytest

from dynconv_np.bench import layers, timing

TWO_LAYERS = layers.TINY_SUITE[:2]


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
    monkeypatch.setattr(timing, "PHASE_PAUSE_S", 0.0)


@pytest.mark.parametrize("repeats, rounds, per_measurement", [(6, 3, 6), (5, 2, 4), (2, 5, 5)])
def test_rounds_split_the_repeats_and_skip_the_first_call(repeats, rounds, per_measurement):
    log = []
    results = timing.time_in_rounds(_recording_libraries(log), TWO_LAYERS, repeats, rounds)
    assert set(results) == {"a", "b"}
    for library in ("a", "b"):
        for spec in TWO_LAYERS:
            t = results[library][spec.name]
            assert len(t.fwd) == len(t.fwd_bwd) == per_measurement
            assert t.first_call_s >= 0
            # one untimed first call (fwd_bwd) besides the timed ones
            calls = [kind for lib, name, kind in log if (lib, name) == (library, spec.name)]
            assert calls.count("fwd_bwd") == per_measurement + 1
            assert calls.count("fwd") == per_measurement


def test_phases_alternate_by_round_and_never_interleave():
    log = []
    timing.time_in_rounds(_recording_libraries(log), TWO_LAYERS, repeats=4, rounds=2)
    timed = log[2 * len(TWO_LAYERS):]  # after each library's first calls
    libraries_in_order = [lib for i, (lib, _, _) in enumerate(timed)
                          if i == 0 or timed[i - 1][0] != lib]
    assert libraries_in_order == ["a", "b", "a", "b"]


def test_alternating_calls_take_turns_after_one_untimed_call_each():
    log = []
    times = timing.time_alternating((lambda: log.append("a"), lambda: log.append("b")), 3)
    assert log == ["a", "b"] * 4
    assert [len(t) for t in times] == [3, 3]
    assert all(s >= 0 for t in times for s in t)


def test_timing_statistics():
    t = timing.Timing(fwd=[3.0, 1.0, 2.0], fwd_bwd=[5.0, 4.0], first_call_s=9.0)
    assert t.median("fwd") == 2.0 and t.minimum("fwd") == 1.0
    assert t.median("fwd_bwd") == 4.5 and t.minimum("fwd_bwd") == 4.0
    assert timing.STATISTICS["median"](t, "fwd") == 2.0
    assert timing.STATISTICS["min"](t, "fwd_bwd") == 4.0


def test_steal_share_is_the_stolen_part_of_the_elapsed_jiffies():
    assert timing.steal_share((10, 1000), (40, 1300)) == pytest.approx(0.1)
    assert timing.steal_share(None, (40, 1300)) is None
    assert timing.steal_share((10, 1000), (10, 1000)) is None   # no time elapsed


def test_steal_report_prints_a_share_or_nothing(capsys):
    timing.report_steal(timing.cpu_times())
    out = capsys.readouterr().out
    assert out == "" or "(steal) during the timed rounds:" in out


def test_calls_per_round():
    assert timing.calls_per_round(30, 5) == 6
    assert timing.calls_per_round(2, 5) == 1
