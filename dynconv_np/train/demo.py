"""``python -m dynconv_np demo``: a static CNN against its dynamic twin, over several seeds.

Both networks are ``models.small.small_cnn`` with the same depth and width; the dynamic one
makes every convolution but the first a K-kernel dynamic convolution (paper section 3.2). Each
seed s builds both networks from seed s and trains them on the same batches (``fit(seed=s)``),
with the same SGD, learning-rate schedule and epochs; the dynamic one also anneals its softmax
temperature from 30 to 1 (section 3.3) unless ``--no-anneal`` (then tau = 1 throughout).

The table reports, per network: parameters and multiply-adds per image (``models.profile``;
"extra" is the dynamic network's attention + aggregation MAdds as a share of the static MAdds),
the mean training time per run, and final train and test accuracy as mean +- sample standard
deviation over the seeds; below it, how input-dependent the dynamic layers' attention turned
out (``attention_summary``), which says whether the K kernels are actually being switched.

Defaults, and why:

* width 2 (channels 2, 4, 4): the static network is then capacity-limited on the digits: it
  does not fit its training set (about 91-92 % training accuracy after 15-20 epochs, 94 % after
  30, measured over 4-5 seeds, where width 3 reaches 97.5-98.5 % and width 6 99.7 %). That is
  the regime the paper targets (light-weight networks whose depth and width are limited).
* 20 epochs, 5 seeds: the accuracy differences at stake are about one point, so the spread over
  seeds is printed with them.
* tau from 30 to 1 over the first third of the epochs (the paper anneals over its first 10
  epochs of a long schedule; the demo's schedule is short).
* backend "numpy": on 8 x 8 images in batches of 32 every convolution is tiny, and the NumPy
  reference (im2col + one BLAS matmul) is faster per step than the Numba kernels, whose
  per-call parallel overhead dominates at this size, and it needs no JIT compilation.
  ``--backend numba`` trains the same networks with the Numba kernels.
"""
import argparse
import sys
import time

import numpy as np

from .data import DATASETS, load_dataset
from .loop import TrainConfig, fit
from .schedules import apply_temperature, dynamic_modules
from ..backends import available_backends
from ..models.profile import profile
from ..models.small import small_cnn

DEFAULTS = dict(dataset="digits", epochs=20, seeds=5, width=2, num_kernels=4, batch_size=32,
                lr=0.1, backend="numpy")


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
    parser.add_argument("--anneal-epochs", type=_positive_float, default=None,
                        help="epochs over which tau goes 30 -> 1, per iteration (paper: the "
                             "first 10 of a long schedule; default: a third of --epochs)")
    parser.add_argument("--batch-size", type=_positive_int, default=d["batch_size"])
    parser.add_argument("--lr", type=_positive_float, default=d["lr"], help="peak learning rate")
    parser.add_argument("--backend", choices=available_backends(), default=d["backend"])
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return parser


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive int; received {text}")
    return value


def _positive_float(text):
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0; received {text}")
    return value


def run(args, dataset, out=None):
    """Train and evaluate both networks for every seed; return {name: list of per-seed results}
    (each a dict with the trained "model" and its "history")."""
    out = sys.stdout if out is None else out
    anneal_epochs = args.epochs / 3 if args.anneal_epochs is None else args.anneal_epochs
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                         anneal_epochs=None if args.no_anneal else anneal_epochs)
    print(f"dataset {dataset.name}: {len(dataset.x_train)} train / {len(dataset.x_test)} test "
          f"images of {'x'.join(map(str, dataset.image_shape))}, {dataset.num_classes} classes; "
          f"{config.epochs} epochs, batch {config.batch_size}, SGD lr {config.lr:g} (cosine, "
          f"{config.warmup_epochs:g} epoch warm-up, Nesterov {config.momentum:g}, weight decay "
          f"{config.weight_decay:g}); width {args.width}, K = {args.num_kernels}, tau "
          f"{'1 (no annealing)' if args.no_anneal else f'30 -> 1 over {anneal_epochs:.3g} epochs'}"
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


def attention_summary(model, x):
    """How input-dependent the learned attention is, on images ``x`` (eval mode).

    For every dynamic layer's pi (N, K): the mean normalised entropy H(pi_n) / log K (1 means
    uniform, 0 one-hot) and the standard deviation of pi_k over the images, averaged over k.
    Returns the two numbers averaged over the dynamic layers (None without dynamic layers).
    """
    layers = dynamic_modules(model)
    if not layers:
        return None
    model.eval()
    model.forward(x)
    entropy, spread = [], []
    for layer in layers:
        pi = layer.attention.astype(np.float64)
        k = pi.shape[1]
        entropy.append(np.mean(-np.sum(pi * np.log(np.maximum(pi, 1e-300)), axis=1)) / np.log(k)
                       if k > 1 else 0.0)
        spread.append(np.mean(pi.std(axis=0)))
    return float(np.mean(entropy)), float(np.mean(spread))


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
    summaries = [attention_summary(r["model"], dataset.x_test) for r in results["dynamic"]]
    if summaries[0] is not None:
        entropy, spread = np.mean(summaries, axis=0)
        lines.append(f"dynamic attention pi on the test images (mean over layers and seeds): "
                     f"entropy {entropy:.3f} x log K, std across images {spread:.3f}\n"
                     f"  (1 and 0 would mean every image mixes the K kernels the same way, "
                     f"i.e. each dynamic layer acts as one static kernel)")
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
