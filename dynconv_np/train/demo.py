"""``python -m dynconv_np demo``: a static CNN against its dynamic twin, over several seeds.

Both networks are ``models.small.small_cnn`` with the same depth and width; the dynamic one
makes every convolution but the first a K-kernel dynamic convolution (paper section 3.2). Each
seed s builds both networks from seed s and trains them on the same batches (``fit(seed=s)``),
with the same SGD, learning-rate schedule and epochs; the dynamic one also anneals its softmax
temperature from 30 to 1 (section 3.3) unless ``--no-anneal`` (then tau = 1 throughout).

The table reports, per network: parameters and multiply-adds per image (``models.profile``;
"extra" is the dynamic network's attention + aggregation MAdds as a share of the static MAdds),
the mean training time per run, and final train and test accuracy as mean +- sample standard
deviation over the seeds.

The default width (4 stem channels) is deliberately small: the static network is then
capacity-limited on the digits (it does not fit the training set), which is the regime where the
paper says dynamic convolution helps (light-weight networks limited in depth and width).
"""
import argparse
import sys
import time

import numpy as np

from .data import DATASETS, load_dataset
from .loop import TrainConfig, fit
from .schedules import apply_temperature
from ..backends import available_backends
from ..models.profile import profile
from ..models.small import small_cnn

DEFAULTS = dict(dataset="digits", epochs=15, seeds=3, width=4, num_kernels=4, batch_size=32,
                lr=0.1, anneal_epochs=5.0, backend="numba")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m dynconv_np demo",
        description="Train a small static CNN and its dynamic twin (every convolution but the "
                    "first dynamic) over several seeds; print params, MAdds, training time and "
                    "accuracy (mean +- std over seeds).")
    d = DEFAULTS
    parser.add_argument("--dataset", choices=DATASETS, default=d["dataset"],
                        help="digits (embedded, default) or a dataset read from --data-dir")
    parser.add_argument("--data-dir", default=None,
                        help="directory with the MNIST/Fashion-MNIST IDX files or CIFAR-10 batches")
    parser.add_argument("--epochs", type=_positive_int, default=d["epochs"])
    parser.add_argument("--seeds", type=_positive_int, default=d["seeds"],
                        help="number of seeds (0, 1, ..., SEEDS-1)")
    parser.add_argument("--width", type=_positive_int, default=d["width"],
                        help="stem channels w (later stages 2w, 4w, ...)")
    parser.add_argument("--num-kernels", type=_positive_int, default=d["num_kernels"],
                        help="K, kernels per dynamic convolution (paper: 4)")
    parser.add_argument("--no-anneal", action="store_true",
                        help="plain softmax attention (tau = 1 throughout) instead of 30 -> 1")
    parser.add_argument("--anneal-epochs", type=float, default=d["anneal_epochs"],
                        help="epochs over which tau goes 30 -> 1, per iteration (paper: 10 of "
                             "its long schedule; default 5 of the demo's 15)")
    parser.add_argument("--batch-size", type=_positive_int, default=d["batch_size"])
    parser.add_argument("--lr", type=float, default=d["lr"], help="peak learning rate")
    parser.add_argument("--backend", choices=available_backends(), default=d["backend"])
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return parser


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive int; received {text}")
    return value


def run(args, dataset, out=None):
    """Train and evaluate both networks for every seed; return {name: list of per-seed results}
    (each a dict with the trained "model" and its "history")."""
    out = sys.stdout if out is None else out
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                         anneal_epochs=None if args.no_anneal else args.anneal_epochs)
    print(f"dataset {dataset.name}: {len(dataset.x_train)} train / {len(dataset.x_test)} test "
          f"images of {'x'.join(map(str, dataset.image_shape))}, {dataset.num_classes} classes; "
          f"{args.epochs} epochs, batch {args.batch_size}, SGD lr {args.lr} (cosine, 1 epoch "
          f"warm-up, Nesterov 0.9, wd 5e-4); width {args.width}, K = {args.num_kernels}, tau "
          f"{'1 (no annealing)' if args.no_anneal else f'30 -> 1 over {args.anneal_epochs:g} epochs'}"
          f"; seeds 0..{args.seeds - 1}; backend {args.backend}", file=out, flush=True)
    results = {"static": [], "dynamic": []}
    for seed in range(args.seeds):
        for name in results:
            model = small_cnn(dataset.image_shape, dataset.num_classes, width=args.width,
                              dynamic=name == "dynamic", num_kernels=args.num_kernels,
                              backend=args.backend, rng=seed)
            if args.no_anneal:
                apply_temperature(model, 1.0)
            history = fit(model, dataset, config, seed=seed, progress=not args.no_progress,
                          description=f"{name:<7} seed {seed}")
            results[name].append({"model": model, "history": history})
    return results


def format_table(dataset, results):
    """The summary table (one row per network) as a string."""
    shape = dataset.image_shape
    static_madds = profile(results["static"][0]["model"], shape).madds
    header = (f"{'network':<9}{'params':>9}{'MAdds/img':>11}{'extra':>8}{'train s':>9}"
              f"{'train acc %':>15}{'test acc %':>15}")
    lines = [header, "-" * len(header)]
    for name, runs in results.items():
        cost = profile(runs[0]["model"], shape)
        extra = (cost.attention + cost.aggregation) / static_madds
        seconds = np.mean([r["history"].train_seconds for r in runs])
        train = [100 * r["history"].final["train_acc"] for r in runs]
        test = [100 * r["history"].final["test_acc"] for r in runs]
        lines.append(f"{name:<9}{cost.params:>9,}{cost.madds:>11,}{100 * extra:>7.1f}%"
                     f"{seconds:>9.1f}{_mean_std(train):>15}{_mean_std(test):>15}")
    lines.append("")
    for name, runs in results.items():
        per_seed = ", ".join(f"{100 * r['history'].final['test_acc']:.1f}" for r in runs)
        lines.append(f"test accuracy % per seed, {name}: {per_seed}")
    return "\n".join(lines)


def _mean_std(values):
    std = np.std(values, ddof=1) if len(values) > 1 else 0.0
    return f"{np.mean(values):.1f} +- {std:.1f}"


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        dataset = load_dataset(args.dataset, args.data_dir)
    except (OSError, ValueError) as error:          # missing or malformed data: say which file
        parser.error(str(error))
    results = run(args, dataset)
    print(format_table(dataset, results))
    print(f"total wall time {time.perf_counter() - start:.0f} s "
          f"(std: sample standard deviation over seeds; train acc: last epoch's running accuracy)")
    return 0
