"""The network benchmark's run and tables (``python -m dynconv_np bench --networks``; the suite,
the twin check, the timed calls and the memory probes are in ``networks.py``): times per
library, ratios against PyTorch (the faster of oneDNN on and off) and against our numpy
backend, the float64 twin checks, and peak memory of a training step."""
import os
import time

from . import networks, timing
from .layers import import_torch


MODES = (("train", "fwd_bwd"), ("infer", "fwd"))


def _rows(suite):
    for spec in suite:
        for mode, part in MODES:
            if mode == "infer" or spec.train:
                yield spec, mode, part


def _cell(t, part):
    return f"{timing.ms(t.median(part))} {timing.ms(t.minimum(part))}"


def print_times(suite, results, first_inference, subject):
    """One row per network and mode: median and fastest ms of each library, and the
    subject's first call (training step: its first step; inference: its first forward)."""
    libraries = list(results)
    head = f"{'network':20} {'mode':5} | " + " | ".join(f"{networks.TITLES.get(name, name):^19}"
                                                        for name in libraries)
    head += f" | {subject + ' 1st s':>11}"
    print("\n" + head)
    print(f"{'':20} {'':5} | " + " | ".join(f"{'med ms':>9} {'min ms':>9}" for _ in libraries)
          + f" | {'':>11}")
    print("-" * len(head))
    for spec, mode, part in _rows(suite):
        first = (results[subject][spec.name].first_call_s if mode == "train"
                 else first_inference[subject][spec.name])
        print(f"{spec.name:20} {mode:5} | "
              + " | ".join(_cell(results[name][spec.name], part) for name in libraries)
              + f" | {first:11.3f}")


def ratios(results, subject, spec_name, part):
    """{column: ratio} for one row: the subject over the faster torch (medians, minima; the
    faster by median named in "torch"), and over each other backend (medians, minima)."""
    mine = results[subject][spec_name]
    row = {}
    torches = [name for name, _ in networks.TORCH_LIBRARIES if name in results]
    if torches:
        best = min(torches, key=lambda name: results[name][spec_name].median(part))
        row["torch"] = best
        for statistic, of in timing.STATISTICS.items():
            theirs = min(of(results[name][spec_name], part) for name in torches)
            row[f"/ torch {statistic}"] = of(mine, part) / theirs
    for other in results:
        if other != subject and other not in torches:
            for statistic, of in timing.STATISTICS.items():
                row[f"/ {other} {statistic}"] = (of(mine, part)
                                                  / of(results[other][spec_name], part))
    return row


def print_ratios(suite, results, subject):
    """Ratios of the subject's times (below 1: the subject is faster)."""
    first = next(_rows(suite))
    columns = [c for c in ratios(results, subject, first[0].name, first[2]) if c != "torch"]
    if not columns:
        return
    head = (f"{'network':20} {'mode':5} | "
            + " ".join(f"{subject + ' ' + column:>22}" for column in columns)
            + (f" | {'faster torch':>17}" if any("torch" in c for c in columns) else ""))
    print("\n" + head)
    print("-" * len(head))
    for spec, mode, part in _rows(suite):
        row = ratios(results, subject, spec.name, part)
        line = (f"{spec.name:20} {mode:5} | "
                + " ".join(f"{row[column]:22.3f}" for column in columns))
        if "torch" in row:
            line += f" | {networks.TITLES[row['torch']]:>17}"
        print(line)


def print_twin_checks(suite):
    print(f"\nPyTorch twin check (float64, ours on numpy, one training step on {networks.CHECK_BATCH} "
          "samples): largest relative difference of logits / gradients / parameters after the "
          "step / running statistics / eval logits")
    failed = []
    for spec in suite:
        errors = networks.check_twin(spec)
        worst = max(errors.values())
        print(f"  {spec.name:20} " + " / ".join(
            f"{errors[key]:.1e}" for key in ("logits", "gradients", "parameters after the step",
                                             "running statistics", "eval logits"))
              + ("" if worst <= networks.CHECK_TOLERANCE else f"  FAILED (> {networks.CHECK_TOLERANCE:g})"))
        if worst > networks.CHECK_TOLERANCE:
            failed.append(spec.name)
    if failed:
        raise RuntimeError(f"the PyTorch twin differs from our network: {', '.join(failed)}")


def print_memory(suite, backends, torch, tiny):
    specs = [spec for spec in suite if spec.memory and spec.train]
    if not specs:
        return
    rss = [] if tiny else list(backends) + (["torch"] if torch is not None else [])
    columns = [f"{name} traced" for name in backends] + [f"{name} RSS" for name in rss]
    print(f"\nTraining step peak memory, MiB (traced: NumPy allocations seen by tracemalloc "
          f"during one step, this process; RSS: rise of the resident set during one step in a "
          f"fresh process, {', '.join(f'{k}={v}' for k, v in networks.MALLOC_ENV.items())}"
          + ("; RSS not with --tiny" if tiny else "") + ")")
    print(f"{'network':20} {'batch':>5} | " + " ".join(f"{c:>13}" for c in columns))
    methods = set()
    for spec in specs:
        cells = [networks.traced_step_peak(spec, name) for name in backends]
        for name in rss:
            peak, method = networks.rss_step_peak(spec, name, tiny)
            cells.append(peak)
            methods.add(method)
        print(f"{spec.name:20} {spec.batch:5} | "
              + " ".join(f"{cell / 2**20:13.1f}" for cell in cells))
    if methods:
        print(f"(RSS measured as {', '.join(sorted(methods))})")


def run(tiny=False, repeats=30, rounds=5, backends=("numba", "numpy")):
    """Check the twins, time the suite (or its tiny version) on ``backends`` and PyTorch
    (oneDNN on and off), print the tables and the memory of a training step."""
    suite = networks.TINY_SUITE if tiny else networks.SUITE
    subject = backends[0]
    torch = import_torch()
    if torch is None:
        print("torch is not importable: PyTorch columns left out (pip install 'dynconv_np[bench]')")
    else:
        torch.set_num_threads(os.cpu_count() or 1)
    print(f"Network section: {os.cpu_count()} cores, {repeats} timed calls per measurement in "
          f"{rounds} rounds, float32, K={networks.NUM_KERNELS}, backends {', '.join(backends)}"
          + ("" if torch is None else f", PyTorch {torch.__version__} with oneDNN on and off")
          + (", tiny suite" if tiny else ""))
    timing.report_load("before")
    if torch is not None:
        print_twin_checks(suite)
    first_inference = {}
    libraries = {}
    for name in list(backends) + ([] if torch is None else [n for n, _ in networks.TORCH_LIBRARIES]):
        firsts = []
        first_inference[name] = firsts
        libraries[name] = networks.library_calls(name, firsts)
    before = timing.cpu_times()
    results = timing.time_in_rounds(libraries, suite, repeats, rounds)
    timing.report_steal(before)
    first_inference = {name: {spec.name: seconds for spec, seconds in zip(suite, firsts)}
                       for name, firsts in first_inference.items()}
    print_times(suite, results, first_inference, subject)
    print_ratios(suite, results, subject)
    time.sleep(timing.PHASE_PAUSE_S)
    print_memory(suite, backends, torch, tiny)
    timing.report_load("after")
