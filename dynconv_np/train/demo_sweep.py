"""The sweep that chose the demo's defaults (``python -m dynconv_np demo --sweep``): each
setting over the same seeds, against the static net of the same width."""
import sys
import time
from dataclasses import replace

import numpy as np

from .data import load_dataset
from .demo_options import MONITOR_IMAGES, DemoOptions
from .demo_report import mean_std
from .loop import fit
from .schedules import dynamic_modules
from ..diagnostics import AttentionMonitor, attention_diagnostics
from ..models.profile import profile


def sweep(out=None, seeds=10, epochs=20, progress=False):
    """Train the settings that chose the defaults and print one row each: test accuracy
    (mean +- std over seeds), the paired difference to the static net of the same width
    (mean +- standard error, seeds ahead, per seed), the kernels' final pairwise cosine and
    what shuffling the attention costs. About 5 minutes on 2 cores."""
    out = sys.stdout if out is None else out
    base = DemoOptions(epochs=epochs, seeds=seeds, progress=progress)
    from .schedules import StepTemperature
    settings = [
        ("digits-mixed", "tau 30 -> 1 over 10 % (2 epochs)", base),
        ("digits-mixed", "tau 30 -> 1 over a third", replace(base, anneal_epochs=epochs / 3)),
        ("digits-mixed", "tau 31 -> 1 stepwise, 3 per epoch", replace(
            base, schedule=StepTemperature(31.0, 1.0, 3.0))),
        ("digits-mixed", "tau = 1 throughout", replace(base, anneal=False)),
        ("digits", "tau 30 -> 1 over 10 % (2 epochs)", base),
    ]
    data = {name: load_dataset(name) for name in ("digits-mixed", "digits")}
    statics, default = {}, None
    rows = []
    start = time.perf_counter()
    for dataset_name, label, options in settings:
        dataset = data[dataset_name]
        if dataset_name not in statics:
            statics[dataset_name] = [_train_one(dataset, options, False, s) for s in range(seeds)]
        static = [r["history"].final["test_acc"] for r in statics[dataset_name]]
        runs = [_train_one(dataset, options, True, s) for s in range(seeds)]
        rows.append(_sweep_row(dataset, f"dynamic, {label}", static, runs))
        accuracy = np.array([r["history"].final["test_acc"] for r in runs])
        if default is None:
            default = accuracy
        elif dataset_name == "digits-mixed":
            diff = 100 * (accuracy - default)
            rows[-1] += (f"\n{'':13}against the default (first row): {diff.mean():+.1f} +- "
                         f"{diff.std(ddof=1) / np.sqrt(len(diff)):.1f} (se), "
                         f"{int(np.sum(diff > 0))}/{len(diff)} ahead")
        print(rows[-1], file=out, flush=True)
    for width in (3, 4):
        dataset = data["digits-mixed"]
        options = replace(base, static_width=width)
        runs = [_train_one(dataset, options, False, s) for s in range(seeds)]
        static = [r["history"].final["test_acc"] for r in statics["digits-mixed"]]
        rows.append(_sweep_row(dataset, f"static, width {width}", static, runs))
        print(rows[-1], file=out, flush=True)
    print(f"(each row against the static width-2 net of the same seeds; sweep took "
          f"{time.perf_counter() - start:.0f} s)", file=out)
    return rows


def _train_one(dataset, options, dynamic, seed):
    model = options.build(dataset, dynamic, seed)
    monitor = AttentionMonitor(dataset.x_test[:MONITOR_IMAGES])
    history = fit(model, dataset, options.config(), seed=seed, progress=options.progress,
                  description=f"sweep {'dynamic' if dynamic else 'static'} seed {seed}",
                  callbacks=[monitor] if dynamic else ())
    return {"model": model, "history": history}


def _sweep_row(dataset, label, static, runs):
    acc = [r["history"].final["test_acc"] for r in runs]
    diff = 100 * (np.asarray(acc) - np.asarray(static))
    madds = profile(runs[0]["model"], dataset.image_shape).madds
    text = (f"{dataset.name:<13}{label:<38} MAdds {madds:>6,}  test "
            f"{mean_std(100 * np.asarray(acc))}  vs static w2 {mean_std(100 * np.asarray(static))}: {diff.mean():+.1f} +- "
            f"{diff.std(ddof=1) / np.sqrt(len(diff)):.1f} (se), {int(np.sum(diff > 0))}/"
            f"{len(diff)} ahead [{' '.join(f'{d:+.1f}' for d in diff)}]")
    if dynamic_modules(runs[0]["model"]):
        diagnosed = [attention_diagnostics(r["model"], dataset.x_test, dataset.y_test)
                     for r in runs]
        cosine = [np.mean([layer.kernel_cosine for layer in d.layers]) for d in diagnosed]
        drop = [100 * (d.accuracy - d.shuffled_acc) for d in diagnosed]
        text += (f"\n{'':13}kernel cosine {mean_std(cosine, 2)}, shuffled pi costs "
                 f"{mean_std(drop)} points")
    return text
