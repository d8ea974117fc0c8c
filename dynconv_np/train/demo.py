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
* backend "numpy": on 8 x 8 images in batches of 32 every call is tiny. Measured on 2 cores,
  a warm Numba engine (which runs such calls on one thread) trains these nets 13-20 % faster
  per epoch (0.086 vs 0.107 s static, 0.117 vs 0.134 s dynamic), but a first run compiles its
  kernels for about 12 s, more than the 7-8 s it then saves over the whole demo; the NumPy
  reference needs no compilation. ``--backend numba`` trains the same networks with the Numba
  kernels (``python -m dynconv_np warmup`` compiles them ahead).
"""
import argparse
import math
import sys
import textwrap
import time
from dataclasses import dataclass, replace

import numpy as np

from .data import DATASETS, load_dataset
from .loop import TrainConfig, fit
from .schedules import ConstantTemperature, LinearTemperature, dynamic_modules
from ..backends import available_backends, get_backend
from ..diagnostics import (AttentionMonitor, attention_diagnostics, attention_probe,
                           collect_attention)
from ..models.profile import profile
from ..models.small import small_cnn

DEFAULTS = dict(dataset="digits-mixed", epochs=20, seeds=10, width=2, num_kernels=4,
                batch_size=32, lr=0.1, weight_decay=5e-4, tau_start=30.0, anneal_fraction=0.1,
                backend="numpy")
MONITOR_IMAGES = 256        # test images the per-epoch attention monitor looks at


@dataclass(frozen=True)
class DemoOptions:
    """What one comparison trains: the networks (width, K, attention width, backend), the
    training (epochs, batch, SGD lr and weight decay) and tau (``schedule``, or linear from
    ``tau_start`` to 1 over ``anneal_epochs``: None = 10 % of the epochs; ``anneal=False``:
    tau = 1 throughout)."""
    epochs: int = DEFAULTS["epochs"]
    seeds: int = DEFAULTS["seeds"]
    width: int = DEFAULTS["width"]
    num_kernels: int = DEFAULTS["num_kernels"]
    batch_size: int = DEFAULTS["batch_size"]
    lr: float = DEFAULTS["lr"]
    weight_decay: float = DEFAULTS["weight_decay"]
    tau_start: float = DEFAULTS["tau_start"]
    anneal_epochs: float = None
    anneal: bool = True
    schedule: object = None
    attention_hidden: int = None
    backend: str = DEFAULTS["backend"]
    progress: bool = True
    static_width: int = None    # the static network's width (default: ``width``)

    @property
    def temperature_schedule(self):
        if self.schedule is not None:
            return self.schedule
        if not self.anneal:
            return ConstantTemperature(1.0)
        anneal = (DEFAULTS["anneal_fraction"] * self.epochs if self.anneal_epochs is None
                  else self.anneal_epochs)
        return LinearTemperature(self.tau_start, 1.0, anneal, per_iteration=True)

    def config(self):
        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                           weight_decay=self.weight_decay,
                           temperature_schedule=self.temperature_schedule)

    def build(self, dataset, dynamic, seed):
        width = self.width if dynamic or self.static_width is None else self.static_width
        schedule = self.temperature_schedule
        return small_cnn(dataset.image_shape, dataset.num_classes, width=width, dynamic=dynamic,
                         num_kernels=self.num_kernels,
                         temperature=schedule.tau_at(0, 0, 1), backend=self.backend, rng=seed,
                         attention_hidden=self.attention_hidden)


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
                        help="numpy needs no compilation; numba is somewhat faster per step "
                             "on these tiny images once its kernels are compiled (about 12 s "
                             "on first use, or ahead with python -m dynconv_np warmup)")
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
                       progress=not args.no_progress)


# -- training ---------------------------------------------------------------------------------

def compare(dataset, options=None, out=None, **changes):
    """Train the static net and its dynamic twin on ``dataset`` (any ``train.data.Dataset``:
    x_train, y_train, x_test, y_test, classes) for every seed; return
    {"static": [run, ...], "dynamic": [run, ...]}, each run a dict with the trained "model",
    its "history" (``train.loop.History``) and, for the dynamic net, "monitor" (the
    ``AttentionMonitor`` of the run). ``changes`` override fields of ``options``
    (``DemoOptions``), e.g. ``compare(data, epochs=5, seeds=3)``."""
    options = replace(options or DemoOptions(), **changes)
    out = sys.stdout if out is None else out
    print(describe_setup(dataset, options), file=out, flush=True)
    results = {"static": [], "dynamic": []}
    total = 2 * options.seeds
    for seed in range(options.seeds):
        for name in results:
            model = options.build(dataset, name == "dynamic", seed)
            monitor = AttentionMonitor(dataset.x_test[:MONITOR_IMAGES])
            run_index = 2 * seed + (name == "dynamic") + 1
            history = fit(model, dataset, options.config(), seed=seed, progress=options.progress,
                          description=f"{name} net, seed {seed} (run {run_index}/{total})",
                          callbacks=[monitor] if name == "dynamic" else ())
            results[name].append({"model": model, "history": history,
                                  "monitor": monitor if name == "dynamic" else None})
    return results


def run(args, dataset, out=None):
    """``compare`` with the options of parsed command-line ``args``."""
    return compare(dataset, options_from_args(args), out=out)


def describe_setup(dataset, options):
    """What one comparison trains, in a few lines: the data, the training, the networks."""
    config = options.config()
    data = (f"dataset {dataset.name}: {len(dataset.x_train)} train / {len(dataset.x_test)} test "
            f"images of {'x'.join(map(str, dataset.image_shape))}, {dataset.num_classes} "
            f"classes")
    if dataset.name == "digits-mixed":
        data += ("\n  (constructed from the embedded digits: each appears clean and in one "
                 "random style - inverted,\n  bold, blurred or noisy - so that a global "
                 "property of the image changes which filter is right:\n  a task built to "
                 "favour input-dependent kernels)")
    warmup = min(config.warmup_epochs, config.epochs - 1)     # as fit applies it
    seeds = "seed 0" if options.seeds == 1 else f"seeds 0..{options.seeds - 1}"
    training = (f"training: {config.epochs} epoch{'s' * (config.epochs > 1)}, batch "
                f"{config.batch_size}, SGD lr {config.lr:g} (cosine, "
                f"{f'{warmup:g} epoch warm-up' if warmup else 'no warm-up'}, Nesterov "
                f"{config.momentum:g}, weight decay {config.weight_decay:g}); {seeds}; backend "
                f"{options.backend}")
    hidden = ("max(C_in // 4, 4)" if options.attention_hidden is None
              else str(options.attention_hidden))
    static = f" (static {options.static_width})" if options.static_width else ""
    networks = (f"networks: width {options.width}{static}, K = {options.num_kernels}, attention "
                f"hidden width {hidden}; {options.temperature_schedule.describe()}")
    return "\n".join([data] + [textwrap.fill(line, 100, subsequent_indent="  ")
                               for line in (training, networks)])


# -- the report -------------------------------------------------------------------------------

def attention_summary(model, x):
    """How input-dependent the learned attention is, on images ``x`` (eval mode, the model's
    mode restored): the mean normalised entropy H(pi_n) / log K over the dynamic layers (1 means
    uniform, 0 one-hot) and the standard deviation of pi_k over the images, averaged over k and
    the layers. None without dynamic layers."""
    result = attention_diagnostics(model, x)
    if not result.layers:
        return None
    return (float(np.mean([layer.entropy for layer in result.layers])),
            float(np.mean([layer.spread for layer in result.layers])))


def paired_verdict(static, dynamic):
    """One line from per-seed test accuracies (fractions, paired by seed): ahead / behind /
    within noise, by whether the mean paired difference is more than two standard errors
    from zero."""
    diff = 100 * (np.asarray(dynamic) - np.asarray(static))
    per_seed = ", ".join(f"{d:+.1f}" for d in diff)
    if len(diff) < 2:
        return (f"verdict: one seed, no spread to judge noise by: dynamic - static = "
                f"{diff[0]:+.1f} points (run --seeds 3 or more for a verdict)")
    mean, se = diff.mean(), diff.std(ddof=1) / np.sqrt(len(diff))
    word = ("AHEAD of" if mean > 0 else "BEHIND") if abs(mean) > 2 * se else "WITHIN NOISE of"
    return (f"verdict: dynamic is {word} static: {mean:+.1f} +- {se:.1f} points (mean paired "
            f"difference +- its standard error, {len(diff)} seeds, {int(np.sum(diff > 0))} "
            f"ahead)\n  per seed, dynamic - static: {per_seed}")


def explain_attention(result):
    """The diagnostics of one trained dynamic net, in words (a few sentences)."""
    if not result.layers:
        return "the network has no dynamic layers"
    entropy = np.mean([layer.entropy for layer in result.layers])
    spread = np.mean([layer.spread for layer in result.layers])
    cosine = np.mean([layer.kernel_cosine for layer in result.layers])
    words = []
    if entropy > 0.95 and spread < 0.02:
        words.append(f"pi is close to uniform (entropy {entropy:.2f} x log K) and nearly the "
                     f"same for every image (spread {spread:.3f}): each dynamic layer acts much "
                     f"like one static kernel, the mean of its K")
    else:
        words.append(f"pi is selective (entropy {entropy:.2f} x log K, 1 = uniform) and differs "
                     f"between images (spread {spread:.3f}; 0 would be one mix for all)")
    if cosine > 0.8:
        words.append(f"the K kernels are near-copies (mean pairwise cosine {cosine:.2f}), so "
                     f"even a selective pi changes the aggregated kernel little")
    else:
        words.append(f"the K kernels differ (mean pairwise cosine {cosine:.2f}; 1 = copies)")
    if result.shuffled_acc is not None:
        drop = 100 * (result.accuracy - result.shuffled_acc)
        frozen = 100 * (result.accuracy - result.frozen_acc)
        if drop > 2 * 100 * result.shuffled_se:
            words.append(f"the network relies on it: giving each image another image's "
                         f"attention costs {drop:.1f} points, the mean attention {frozen:.1f}")
        else:
            words.append(f"the network does not rely on it: another image's attention changes "
                         f"accuracy by {-drop:+.1f} points, the mean attention by {-frozen:+.1f}")
    return textwrap.fill("in words: " + "; ".join(words) + ".", 100, subsequent_indent="  ")


def format_report(dataset, results, options=None):
    """The whole report of a ``compare`` run, as a string."""
    options = options or DemoOptions()
    shape = dataset.image_shape
    static_cost = profile(results["static"][0]["model"], shape)
    header = (f"{'network':<9}{'params':>9}{'MAdds/img':>11}{'extra':>8}{'train s':>9}"
              f"{'train acc % *':>15}{'test acc %':>15}")
    lines = [header, "-" * len(header)]
    for name, runs in results.items():
        cost = profile(runs[0]["model"], shape)
        extra = (cost.attention + cost.aggregation) / static_cost.madds
        seconds = np.mean([r["history"].train_seconds for r in runs])
        train = [100 * r["history"].final["train_acc"] for r in runs]
        test = [100 * r["history"].final["test_acc"] for r in runs]
        lines.append(f"{name:<9}{cost.params:>9,}{cost.madds:>11,}{100 * extra:>7.1f}%"
                     f"{seconds:>9.1f}{_mean_std(train):>15}{_mean_std(test):>15}")
    lines.append("* running accuracy over the last epoch's batches, in training mode (the "
                 "weights change while it is\n  measured); test accuracy: eval mode, after the "
                 f"last epoch; +- : sample std over {options.seeds} seed(s)")
    lines.append("")
    for name, runs in results.items():
        per_seed = ", ".join(f"{100 * r['history'].final['test_acc']:.1f}" for r in runs)
        lines.append(f"test accuracy % per seed, {name}: {per_seed}")
    static = [r["history"].final["test_acc"] for r in results["static"]]
    dynamic = [r["history"].final["test_acc"] for r in results["dynamic"]]
    lines.append(paired_verdict(static, dynamic))
    lines.append("")
    lines += _attention_report(dataset, results, options)
    lines.append("")
    lines += _caveats(dataset, results, options)
    return "\n".join(lines)


def _attention_report(dataset, results, options):
    runs, schedule = results["dynamic"], options.temperature_schedule
    diagnosed = [attention_diagnostics(r["model"], dataset.x_test, dataset.y_test, seed=0)
                 for r in runs]
    if not diagnosed[0].layers:
        return ["the dynamic net has no dynamic layers"]
    probe = None
    styles = getattr(dataset, "style_test", None)
    if styles is not None:
        def read_style(model):
            return attention_probe(model, dataset.x_train, dataset.style_train, dataset.x_test,
                                   styles)
        probe = (np.mean([read_style(r["model"]) for r in runs]),
                 np.mean([read_style(options.build(dataset, True, seed))
                          for seed in range(len(runs))]), 1.0 / len(np.unique(styles)))
    lines = [f"the dynamic net of seed 0, on the {len(dataset.x_test)} test images:",
             str(diagnosed[0]), explain_attention(diagnosed[0])]
    if len(runs) > 1:
        drop = [100 * (d.accuracy - d.shuffled_acc) for d in diagnosed]
        frozen = [100 * (d.accuracy - d.frozen_acc) for d in diagnosed]
        entropy = [np.mean([layer.entropy for layer in d.layers]) for d in diagnosed]
        cosine = [np.mean([layer.kernel_cosine for layer in d.layers]) for d in diagnosed]
        lines.append(f"over the {len(runs)} seeds: another image's attention costs "
                     f"{_mean_std(drop)} points, the mean attention {_mean_std(frozen)};\n"
                     f"  entropy {_mean_std(entropy, 2)} x log K; kernel cosine "
                     f"{_mean_std(cosine, 2)}")
    if probe is not None:
        lines.append(textwrap.fill(
            f"the style (clean, inverted, bold, blurred, noisy) read from pi alone by a linear "
            f"classifier: {100 * probe[0]:.0f} % balanced accuracy on the test images (chance "
            f"{100 * probe[2]:.0f} %), but {100 * probe[1]:.0f} % from the untrained networks' "
            f"pi: the branch sees the image's channel means, which differ by style, so this says "
            f"what pi can encode, not that the network learned to use it (the shuffled test "
            f"above says that)", 100, subsequent_indent="  "))
    curve = np.mean([[record.get("kernel_cosine", np.nan) for record in r["history"].epochs]
                     for r in runs], axis=0)
    if np.all(np.isfinite(curve)):
        points = [f"{curve[0]:.2f} after epoch 1"]
        reached = math.ceil(schedule.end_epoch)      # tau is 1 from the end of this epoch on
        if 1 < reached < len(curve):
            points.append(f"{curve[reached - 1]:.2f} after epoch {reached} (tau reaches 1)")
        peak = int(np.argmax(curve))
        if 0 < peak < len(curve) - 1:
            points.append(f"highest {curve[peak]:.2f} after epoch {peak + 1}")
        points.append(f"{curve[-1]:.2f} at the end")
        lines.append("kernels' mean pairwise cosine during training (mean over seeds):\n  "
                     + ", ".join(points))
    return lines


def _caveats(dataset, results, options):
    dynamic_cost = profile(results["dynamic"][0]["model"], dataset.image_shape).madds
    wider = []
    for width in (options.width + 1, options.width + 2):
        model = small_cnn(dataset.image_shape, dataset.num_classes, width=width,
                          backend="numpy", rng=0)
        madds = profile(model, dataset.image_shape).madds
        wider.append(f"width {width} {madds:,} ({madds / dynamic_cost:.1f}x)")
    bullets = []
    if dataset.name == "digits-mixed":
        bullets.append("the paper's setting: this task is constructed from real digits to favour "
                       "input-dependent kernels; on the plain digits (--dataset digits) the "
                       "dynamic twin is not ahead at this size")
    bullets.append(f"a gain per multiply-add: the comparison is at equal width and depth. The "
                   f"dynamic net costs {dynamic_cost:,} MAdds per image, static nets of "
                   f"{' and '.join(wider)}; on digits-mixed those wider static nets beat the "
                   f"dynamic twin (python -m dynconv_np demo --sweep measures it)")
    bullets.append("a long anneal: while tau is high pi is near uniform, every kernel gets "
                   "nearly the same gradient and the K kernels become near-copies, which no "
                   "attention can mix into different kernels; hence tau reaches 1 after 10 % of "
                   "the run (try --anneal-epochs with a third of --epochs)")
    return ["what this run does not show:"] + [
        textwrap.fill(text, 100, initial_indent="  - ", subsequent_indent="    ")
        for text in bullets]


def _mean_std(values, digits=1):
    """"m +- s" (sample std) for two or more values, "m" for one."""
    if len(values) < 2:
        return f"{np.mean(values):.{digits}f}"
    return f"{np.mean(values):.{digits}f} +- {np.std(values, ddof=1):.{digits}f}"


# -- the picture ------------------------------------------------------------------------------

def plot(path, dataset, results, options=None):
    """Learning curves of both nets (mean over seeds, band from min to max), tau and the
    kernels' pairwise cosine over training, and each dynamic layer's attention distribution on
    the test images (seed 0), into ``path`` (PNG). Needs matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ImportError("--plot needs matplotlib (pip install matplotlib); the run itself "
                          "does not") from error
    options = options or DemoOptions()
    pis = collect_attention(results["dynamic"][0]["model"], dataset.x_test)
    columns = max(2, len(pis))
    fig, axes = plt.subplots(2, columns, figsize=(5.2 * columns, 8.4), squeeze=False)
    epochs = np.arange(1, options.epochs + 1)
    ax = axes[0, 0]
    for name, color in (("static", "C0"), ("dynamic", "C3")):
        for key, style in (("test_acc", "-"), ("train_acc", ":")):
            curves = 100 * np.array([[e[key] for e in r["history"].epochs]
                                     for r in results[name]])
            ax.plot(epochs, curves.mean(axis=0), style, color=color,
                    label=f"{name}, {'test' if key == 'test_acc' else 'train (running)'}")
            if key == "test_acc":
                ax.fill_between(epochs, curves.min(axis=0), curves.max(axis=0), color=color,
                                alpha=0.15)
    ax.set(xlabel="epoch", ylabel="accuracy %",
           title=f"learning curves on {dataset.name} (mean over {options.seeds} seeds)")
    ax.legend(fontsize=8, loc="lower right")
    ax = axes[0, 1]
    schedule = options.temperature_schedule
    t = np.linspace(0, options.epochs, 400, endpoint=False)
    ax.plot(t, [schedule.tau(v if schedule.per_iteration else np.floor(v)) for v in t],
            color="k", label="tau")
    ax.set(xlabel="epoch", ylabel="tau", title="temperature schedule and kernel collapse")
    twin = ax.twinx()
    cosine = np.array([[e.get("kernel_cosine", np.nan) for e in r["history"].epochs]
                       for r in results["dynamic"]])
    twin.plot(epochs, cosine.mean(axis=0), "o-", color="C2", ms=3,
              label="kernels' mean pairwise cosine")
    twin.set_ylim(-0.05, 1.05)
    twin.set_ylabel("mean pairwise cosine of the K kernels", color="C2")
    ax.legend(loc="upper right", fontsize=8)
    twin.legend(loc="center right", fontsize=8)
    for ax in axes[0, 2:]:
        ax.axis("off")
    styles = getattr(dataset, "style_test", None)
    for index, pi in enumerate(pis):
        ax = axes[1, index]
        k = pi.shape[1]
        parts = ax.violinplot([pi[:, j] for j in range(k)], positions=range(k), showmeans=True)
        for body in parts["bodies"]:
            body.set_alpha(0.35)
        if styles is not None:
            from .mixed_digits import STYLES
            for s, name in enumerate(STYLES):
                ax.plot(range(k), pi[styles == s].mean(axis=0), "o-", ms=3, lw=1,
                        label=f"mean, {name}")
            ax.legend(fontsize=7, loc="upper right")
        ax.axhline(1 / k, color="grey", ls=":")
        ax.set(xticks=range(k), xticklabels=[f"W{j + 1}" for j in range(k)], ylim=(0, 1),
               ylabel="pi_k", title=f"dynamic layer {index + 1}: pi on the test images (seed 0)")
    for ax in axes[1, len(pis):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# -- the sweep behind the defaults ------------------------------------------------------------

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
            f"{_mean_std(100 * np.asarray(acc))}  vs static w2 {_mean_std(100 * np.asarray(static))}: {diff.mean():+.1f} +- "
            f"{diff.std(ddof=1) / np.sqrt(len(diff)):.1f} (se), {int(np.sum(diff > 0))}/"
            f"{len(diff)} ahead [{' '.join(f'{d:+.1f}' for d in diff)}]")
    if dynamic_modules(runs[0]["model"]):
        diagnosed = [attention_diagnostics(r["model"], dataset.x_test, dataset.y_test)
                     for r in runs]
        cosine = [np.mean([layer.kernel_cosine for layer in d.layers]) for d in diagnosed]
        drop = [100 * (d.accuracy - d.shuffled_acc) for d in diagnosed]
        text += (f"\n{'':13}kernel cosine {_mean_std(cosine, 2)}, shuffled pi costs "
                 f"{_mean_std(drop)} points")
    return text


# -- the command ------------------------------------------------------------------------------

def _has_matplotlib():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def main(argv=None, dataset=None):
    """The command line (``python -m dynconv_np demo --help``); ``dataset`` replaces the one
    ``--dataset`` names (a ``train.data.Dataset`` you built)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    start = time.perf_counter()
    if args.sweep:
        sweep(progress=not args.no_progress)
        return 0
    if args.plot is not None and not _has_matplotlib():
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
