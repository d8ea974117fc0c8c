"""The demo's report in words: the setup, the table over seeds, the paired verdict, what the
attention diagnostics mean, and what the run does not show."""
import math
import textwrap

import numpy as np

from .demo_options import DemoOptions
from ..diagnostics import attention_diagnostics, attention_probe
from ..models.profile import profile
from ..models.small import small_cnn


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
    variant = options.variant_name
    if variant == "DyConv":
        layer = f"K = {options.num_kernels}, attention hidden width {hidden}"
    elif variant == "CondConv":
        layer = f"E = {options.num_kernels} experts, own sigmoid routing per layer"
    elif variant == "ODConv":
        layer = f"K = {options.num_kernels}, four attentions, branch width max(C_in / 16, 16)"
    else:
        layer = "dynamic channel fusion, latent sqrt(C_in) (K does not apply)"
    tau = (options.temperature_schedule.describe() if options.has_temperature
           else f"no temperature in {variant}")
    networks = (f"networks: width {options.width}{static}; dynamic twin {variant}: {layer}; "
                f"{tau}")
    return "\n".join([data] + [textwrap.fill(line, 100, subsequent_indent="  ")
                               for line in (training, networks)])


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


def paired_verdict(static, dynamic, name="dynamic"):
    """One line from per-seed test accuracies (fractions, paired by seed): ahead / behind /
    within noise, by whether the mean paired difference is more than two standard errors
    from zero. ``name``: the dynamic net's (its variant, "DyConv", "ODConv", ...)."""
    diff = 100 * (np.asarray(dynamic) - np.asarray(static))
    per_seed = ", ".join(f"{d:+.1f}" for d in diff)
    if len(diff) < 2:
        return (f"verdict: one seed, no spread to judge noise by: {name} - static = "
                f"{diff[0]:+.1f} points (run --seeds 3 or more for a verdict)")
    mean, se = diff.mean(), diff.std(ddof=1) / np.sqrt(len(diff))
    word = ("AHEAD of" if mean > 0 else "BEHIND") if abs(mean) > 2 * se else "WITHIN NOISE of"
    return (f"verdict: {name} is {word} static: {mean:+.1f} +- {se:.1f} points (mean paired "
            f"difference +- its standard error, {len(diff)} seeds, {int(np.sum(diff > 0))} "
            f"ahead)\n  per seed, {name} - static: {per_seed}")


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
                     f"{seconds:>9.1f}{mean_std(train):>15}{mean_std(test):>15}")
    lines.append("* running accuracy over the last epoch's batches, in training mode (the "
                 "weights change while it is\n  measured); test accuracy: eval mode, after the "
                 f"last epoch; +- : sample std over {options.seeds} seed(s)")
    lines.append("")
    for name, runs in results.items():
        per_seed = ", ".join(f"{100 * r['history'].final['test_acc']:.1f}" for r in runs)
        lines.append(f"test accuracy % per seed, {name}: {per_seed}")
    static = [r["history"].final["test_acc"] for r in results["static"]]
    dynamic = [r["history"].final["test_acc"] for r in results["dynamic"]]
    lines.append(paired_verdict(static, dynamic, options.variant_name))
    lines.append("")
    lines += _attention_report(dataset, results, options)
    lines.append("")
    lines += _caveats(dataset, results, options)
    return "\n".join(lines)


def _attention_report(dataset, results, options):
    runs, schedule = results["dynamic"], options.temperature_schedule
    if runs[0]["monitor"] is None:      # demo.diagnosable: no (N, K) attention with the hook
        return [textwrap.fill(
            f"attention diagnostics: the shuffle test (another image's attention, the mean "
            f"attention) does not apply to {options.variant_name} layers: it replaces one "
            f"softmax mix pi (N, K) per layer through DynamicConv2d's attention_override hook, "
            f"which {options.variant_name} does not have (its attention: "
            f"{_ATTENTION_FORM.get(options.variant_name, 'another form')})", 100,
            subsequent_indent="  ")]
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
                     f"{mean_std(drop)} points, the mean attention {mean_std(frozen)};\n"
                     f"  entropy {mean_std(entropy, 2)} x log K; kernel cosine "
                     f"{mean_std(cosine, 2)}")
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


_ATTENTION_FORM = {"CondConv": "sigmoid routing weights (N, E), not a softmax mix",
                   "ODConv": "four attentions {channel, filter, spatial, kernel}",
                   "DCD": "lambda (N, C_out) and Phi (N, L, L), no kernels to mix"}


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
                   f"{' and '.join(wider)}; " + (
                       "on digits-mixed those wider static nets beat the dynamic twin (python -m "
                       "dynconv_np demo --sweep measures it)" if options.variant == "dyconv" else
                       f"the sweep (--sweep) measured that only for DyConv, not for "
                       f"{options.variant_name}"))
    if options.has_temperature:
        bullets.append("a long anneal: while tau is high pi is near uniform, every kernel gets "
                       "nearly the same gradient and the K kernels become near-copies, which no "
                       "attention can mix into different kernels; hence tau reaches 1 after 10 % "
                       "of the run (try --anneal-epochs with a third of --epochs)")
    return ["what this run does not show:"] + [
        textwrap.fill(text, 100, initial_indent="  - ", subsequent_indent="    ")
        for text in bullets]


def mean_std(values, digits=1):
    """"m +- s" (sample std) for two or more values, "m" for one."""
    if len(values) < 2:
        return f"{np.mean(values):.{digits}f}"
    return f"{np.mean(values):.{digits}f} +- {np.std(values, ddof=1):.{digits}f}"
