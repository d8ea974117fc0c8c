"""Timing plumbing of the benchmarks: calls timed on the host clock, phases in rounds, the
medians and minima the tables print, and how busy the machine was (load, steal).

Knows nothing about layers or libraries: a "library" is a name and a function that turns a
spec (anything with a ``name``) into two closures, ``(fwd, fwd_bwd)``.
"""
import os
import statistics
import time
from dataclasses import dataclass, field

PHASE_PAUSE_S = 0.3  # lets the previous library's spinning threads fall asleep


@dataclass
class Timing:
    """Seconds of each timed call of one spec and library, and of its untimed first call."""
    fwd: list = field(default_factory=list)
    fwd_bwd: list = field(default_factory=list)
    first_call_s: float = 0.0

    def median(self, part):
        """Median seconds of ``part`` ("fwd" or "fwd_bwd")."""
        return statistics.median(getattr(self, part))

    def minimum(self, part):
        """Fastest call of ``part``: the one least disturbed by other work on the machine."""
        return min(getattr(self, part))


STATISTICS = {"median": Timing.median, "min": Timing.minimum}


def time_calls(fn, repeats):
    """Seconds of each of ``repeats`` calls of ``fn()``."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def calls_per_round(repeats, rounds):
    """Timed calls of each closure per phase: the repeats split over the rounds, at least 1."""
    return max(1, repeats // rounds)


def time_in_rounds(libraries, suite, repeats, rounds):
    """{library: {spec name: Timing}}, timed in ``rounds`` rounds of one phase per library.

    ``libraries`` maps a name to ``calls(spec) -> (fwd, fwd_bwd)``. Each phase times one
    library alone (``calls_per_round(repeats, rounds)`` calls of each closure per spec), so
    thread pools never interleave; repeating the phases in rounds spreads the load that other
    tenants of a shared machine put on it over every library alike, instead of letting one
    library's phase land in a busy minute. The first call of each spec (JIT compile or
    cache load, first touch of memory) is a ``fwd_bwd`` timed apart and left out of the
    statistics.
    """
    calls, results = {}, {}
    for library, make_calls in libraries.items():
        time.sleep(PHASE_PAUSE_S)
        for spec in suite:
            fwd, fwd_bwd = make_calls(spec)
            start = time.perf_counter()
            fwd_bwd()
            calls[library, spec.name] = (fwd, fwd_bwd)
            results.setdefault(library, {})[spec.name] = Timing(
                first_call_s=time.perf_counter() - start)
    per_round = calls_per_round(repeats, rounds)
    for _ in range(rounds):
        for library in libraries:
            time.sleep(PHASE_PAUSE_S)
            for spec in suite:
                fwd, fwd_bwd = calls[library, spec.name]
                timing = results[library][spec.name]
                timing.fwd += time_calls(fwd, per_round)
                timing.fwd_bwd += time_calls(fwd_bwd, per_round)
    return results


def time_alternating(fns, repeats):
    """[seconds of each call] per function in ``fns``, calling them in turn ``repeats`` times
    (a, b, a, b, ...), after one untimed call of each. Alternating lets a busy spell of the
    machine weigh on all of them alike, and a function timed between calls of another one
    finds the caches as the other one left them (cold, when the other is a whole pass)."""
    for fn in fns:
        fn()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, fn_times in zip(fns, times):
            fn_times += time_calls(fn, 1)
    return times


def cpu_times():
    """(steal, total) jiffies of all CPUs from /proc/stat (Linux), or None elsewhere."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:9]]
    except (OSError, ValueError, IndexError):
        return None
    if len(fields) < 8:
        return None
    return fields[7], sum(fields)


def steal_share(before, after):
    """Share of CPU time between two ``cpu_times()`` that the hypervisor took, or None."""
    if before is None or after is None or after[1] == before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1])


def report_steal(before, what="the timed rounds"):
    """On a virtual machine the hypervisor can take CPU time from it ("steal"): say how much."""
    share = steal_share(before, cpu_times())
    if share is not None:
        print(f"CPU time taken by the hypervisor (steal) during {what}: {100 * share:.0f}%")


def report_load(when):
    """Other processes make multi-threaded timings meaningless: say how busy the machine was."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):   # not on every platform
        return
    note = "" if load < 0.5 else " (the machine is busy: parallel timings are unreliable)"
    print(f"1-minute load average {when} the run: {load:.2f}{note}")


def ms(seconds):
    """Seconds as milliseconds, 9 characters wide with 2 decimals."""
    return f"{seconds * 1e3:9.2f}"
