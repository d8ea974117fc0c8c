"""``python -m dynconv_np demo``: a static CNN against its dynamic twin, over several seeds.

Both networks are ``models.small.small_cnn`` with the same depth and width; the dynamic one
makes every convolution but the first a K-kernel dynamic convolution (paper section 3.2). Each
seed s builds both networks from seed s and trains them on the same batches (``fit(seed=s)``),
with the same SGD, learning-rate schedule and epochs; the dynamic one also anneals its softmax
temperature from ``--tau-start`` to 1 over the first ``--anneal-epochs`` (section 3.3).

The report: per network, parameters and multiply-adds per image (``models.profile``; "extra" is
the dynamic network's attention + aggregation MAdds as a share of the static MAdds), mean
training time per run, final running training accuracy and test accuracy (mean +- sample
standard deviation over the seeds); the per-seed test accuracies and their paired differences;
a one-line verdict (ahead / behind / within noise: is the mean paired difference more than two
standard errors from zero?); the trained dynamic net's attention diagnostics
(``dynconv_np.diagnostics``) and what they mean in words; and what the run does not show.

Defaults, and why (the sweep behind them: ``python -m dynconv_np demo --sweep``):

* dataset ``digits-mixed`` (``train/mixed_digits.py``): the embedded digits, each shown clean
  and in one drawn style (inverted, bold, blurred, noisy). It is constructed from real data to
  favour input-dependent kernels: a global property of the image changes which filter is
  right. On the plain digits (``--dataset digits``) the dynamic twin does not help.
* width 2 (channels 2, 4, 4): a light network whose width limits it (the paper's regime).
* tau 30 -> 1 over the first 10 % of the epochs. While tau is high, pi is near uniform, so every
  kernel W_k receives nearly the same gradient (dL/dW_k = sum_n pi_nk dL/dW(x_n)) and the K
  kernels become near-copies of each other; once they are copies, no attention can mix them
  into different kernels. A long anneal (a third of the run) leaves them closer to copies and
  the net behind the short anneal on every seed of the sweep; the paper anneals over its first
  10 of about 300 epochs. The sweep also finds tau = 1 throughout as good as the short anneal
  here: with this library's initialisation the logits start small, so pi is near uniform at
  tau = 1 already (tutorial 01).
* 20 epochs, 10 seeds: the differences at stake are a few points, so the spread over seeds and
  the paired differences are printed with them; the whole run takes about a minute on 2 cores
  (57-63 s measured, with other work on the machine).
* backend "numba", the library's default: on 8 x 8 images in batches of 32 every call is tiny,
  and the engine runs such calls on one thread. Measured on 2 cores, one run of 20 epochs
  takes 1.9 s (static) and 2.3 s (dynamic) against 2.2 s and 3.0 s on the NumPy reference
  (``--backend numpy``): the whole demo 48 s against 58 s. The first run in a fresh
  environment also compiles the kernels (announced on stderr; ``python -m dynconv_np warmup``
  compiles them ahead), which makes the first demo 64 s.
"""
import argparse
import sys
import textwrap
import time
from dataclasses import replace

from .data import DATASETS, load_dataset
from .demo_options import DEFAULTS, MONITOR_IMAGES, DemoOptions
from .demo_plot import has_matplotlib, plot
from .demo_report import describe_setup, format_report
from .demo_sweep import sweep
from .loop import fit
from ..backends import available_backends, get_backend
from ..diagnostics import AttentionMonitor, attention_layers
from ..models.builder import VARIANTS


class _HelpFormatter(argparse.HelpFormatter):
    """Appends "(default: X)" to an option's help, unless its default is None or False (then
    the help says what happens)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default is not None and action.default is not False and \
                action.default is not argparse.SUPPRESS and "%(default)" not in text:
            text += " (default: %(default)s)"
        return text

    def _split_lines(self, text, width):     # keep "digits-mixed" and "--data-dir" whole
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


def build_parser():
    d = DEFAULTS
    parser = argparse.ArgumentParser(
        prog="python -m dynconv_np demo", usage="python -m dynconv_np demo [options]",
        formatter_class=_HelpFormatter,
        description="Train a small static CNN and its dynamic twin (every convolution but the "
                    "first dynamic) on the same batches over several seeds; print params, "
                    "MAdds, time and accuracy (mean +- std over seeds), the paired per-seed "
                    "differences with a verdict, and what the dynamic net's attention does.")
    parser.add_argument("--dataset", choices=DATASETS, default=d["dataset"],
                        help="digits-mixed: the embedded digits, each clean and in one random "
                             "style (built to favour input-dependent kernels); digits: the "
                             "plain embedded digits; the others are read from --data-dir")
    parser.add_argument("--data-dir", metavar="DIR", default=None,
                        help="directory with the MNIST/Fashion-MNIST IDX files or CIFAR-10 "
                             "batches")
    parser.add_argument("--epochs", metavar="N", type=_positive_int, default=d["epochs"],
                        help="training epochs per run")
    parser.add_argument("--seeds", metavar="N", type=_positive_int, default=d["seeds"],
                        help="number of seeds, 0 to N-1; each trains both networks")
    parser.add_argument("--width", metavar="W", type=_positive_int, default=d["width"],
                        help="stem channels (later stages 2W, 4W, ...)")
    parser.add_argument("--variant", choices=VARIANTS, default=d["variant"],
                        help="the dynamic twin's layer: dyconv (DynamicConv2d, the paper's), "
                             "condconv (CondConv2d, own routing per layer, E = K experts), "
                             "odconv (ODConv2d), dcd (DCDConv2d, K does not apply)")
    parser.add_argument("--num-kernels", metavar="K", type=_positive_int,
                        default=d["num_kernels"],
                        help="kernels per dynamic convolution (paper: 4)")
    parser.add_argument("--attention-hidden", metavar="H", type=_positive_int, default=None,
                        help="hidden width of every attention branch (default: "
                             "max(C_in // 4, 4), the paper's reduction by 4)")
    parser.add_argument("--tau-start", metavar="TAU", type=_positive_float,
                        default=d["tau_start"],
                        help="softmax temperature at the start, lowered linearly to 1")
    parser.add_argument("--anneal-epochs", metavar="E", type=_positive_float, default=None,
                        help="epochs over which tau falls to 1, per iteration (default: 10%% "
                             "of --epochs; the paper: its first 10 of about 300)")
    parser.add_argument("--no-anneal", action="store_true",
                        help="plain softmax attention: tau = 1 throughout")
    parser.add_argument("--batch-size", metavar="N", type=_positive_int,
                        default=d["batch_size"], help="images per SGD step")
    parser.add_argument("--lr", type=_positive_float, default=d["lr"],
                        help="peak learning rate (SGD, Nesterov momentum 0.9, cosine schedule "
                             "with a 1 epoch warm-up)")
    parser.add_argument("--weight-decay", metavar="WD", type=_non_negative_float,
                        default=d["weight_decay"], help="SGD weight decay")
    parser.add_argument("--backend", choices=available_backends(), default=d["backend"],
                        help="numba (the default) is 15-25%% faster per step than numpy on "
                             "these tiny images; it compiles its kernels on first use (or "
                             "ahead: python -m dynconv_np warmup); numpy compiles nothing")
    parser.add_argument("--plot", metavar="FILE.png", default=None,
                        help="also draw learning curves, attention per layer and the "
                             "temperature schedule into this file (needs matplotlib)")
    parser.add_argument("--sweep", action="store_true",
                        help="instead, run the sweep behind the defaults (about 5 minutes on 2 "
                             "cores): anneal lengths, plain digits, wider static nets")
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


def _non_negative_float(text):
    value = float(text)
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0; received {text}")
    return value


def options_from_args(args):
    """The ``DemoOptions`` of parsed command-line ``args``."""
    return DemoOptions(epochs=args.epochs, seeds=args.seeds, width=args.width,
                       num_kernels=args.num_kernels, batch_size=args.batch_size, lr=args.lr,
                       weight_decay=args.weight_decay, tau_start=args.tau_start,
                       anneal_epochs=args.anneal_epochs, anneal=not args.no_anneal,
                       attention_hidden=args.attention_hidden, backend=args.backend,
                       progress=not args.no_progress, variant=args.variant)


# -- training ---------------------------------------------------------------------------------

def diagnosable(model):
    """Whether ``diagnostics.attention_diagnostics`` applies to ``model``: it has dynamic layers
    and each exposes its attention as pi (N, K) with the ``attention_override`` hook the shuffle
    test needs (DynamicConv2d; not ODConv's four attentions, CondConv's routing or DCD)."""
    layers = attention_layers(model)
    return bool(layers) and all(hasattr(type(layer), "attention_override") for _, layer in layers)


def compare(dataset, options=None, out=None, **changes):
    """Train the static net and its dynamic twin on ``dataset`` (any ``train.data.Dataset``:
    x_train, y_train, x_test, y_test, classes) for every seed; return
    {"static": [run, ...], "dynamic": [run, ...]}, each run a dict with the trained "model",
    its "history" (``train.loop.History``) and, for the dynamic net, "monitor" (the
    ``AttentionMonitor`` of the run, None where ``diagnosable`` is False). ``changes`` override fields of ``options``
    (``DemoOptions``), e.g. ``compare(data, epochs=5, seeds=3)``."""
    options = replace(options or DemoOptions(), **changes)
    out = sys.stdout if out is None else out
    print(describe_setup(dataset, options), file=out, flush=True)
    results = {"static": [], "dynamic": []}
    total = 2 * options.seeds
    for seed in range(options.seeds):
        for name in results:
            model = options.build(dataset, name == "dynamic", seed)
            monitor = (AttentionMonitor(dataset.x_test[:MONITOR_IMAGES])
                       if name == "dynamic" and diagnosable(model) else None)
            run_index = 2 * seed + (name == "dynamic") + 1
            history = fit(model, dataset, options.config(), seed=seed, progress=options.progress,
                          description=f"{name} net, seed {seed} (run {run_index}/{total})",
                          callbacks=[monitor] if monitor is not None else ())
            results[name].append({"model": model, "history": history, "monitor": monitor})
    return results


def run(args, dataset, out=None):
    """``compare`` with the options of parsed command-line ``args``."""
    return compare(dataset, options_from_args(args), out=out)


# -- the report -------------------------------------------------------------------------------


# -- the picture ------------------------------------------------------------------------------


# -- the sweep behind the defaults ------------------------------------------------------------


# -- the command ------------------------------------------------------------------------------


def main(argv=None, dataset=None):
    """The command line (``python -m dynconv_np demo --help``); ``dataset`` replaces the one
    ``--dataset`` names (a ``train.data.Dataset`` you built)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    start = time.perf_counter()
    if args.sweep:
        sweep(progress=not args.no_progress)
        return 0
    if args.plot is not None and not has_matplotlib():
        parser.error("--plot needs matplotlib (pip install matplotlib)")
    try:
        get_backend(args.backend)
    except (RuntimeError, ImportError) as error:     # e.g. cuda without a GPU
        parser.error(str(error).splitlines()[0])
    if dataset is None:
        try:
            dataset = load_dataset(args.dataset, args.data_dir)
        except (OSError, ValueError) as error:          # missing or malformed data: say which
            message = str(error).replace("pass data_dir", "pass --data-dir DIR")
            parser.error(message)
    options = options_from_args(args)
    results = compare(dataset, options)
    print(format_report(dataset, results, options))
    if args.plot is not None:
        print(f"picture: {plot(args.plot, dataset, results, options)}")
    print(f"total wall time {time.perf_counter() - start:.0f} s")
    return 0
