"""What the attention of a trained dynamic network does, layer by layer, on one batch.

``attention_diagnostics(model, x, y)`` runs ``model`` on ``x`` in eval mode (restoring its
mode afterwards) and measures, for every dynamic layer (``nn.is_dynamic``) with its attention
pi (N, K):

    entropy        mean over images of H(pi_n) / log K: 1 = uniform mix, 0 = one kernel
    max pi         mean over images of max_k pi_nk (1/K = uniform, 1 = one kernel)
    usage          mean over images of pi_nk, per kernel k: how much of the layer's gradient
                   kernel k receives (dL/dW_k = sum_n pi_nk dL/dW(x_n)); 1/K each = even
    spread         mean over k of the standard deviation of pi_nk over the images: 0 means
                   every image gets the same mix, i.e. the layer acts as one static kernel
    std z/tau      mean over images of the standard deviation over k of z_n / tau, the logits
                   the softmax sees (pi = softmax(z / tau)), recovered from pi as std_k log pi_nk;
                   ``logit_std`` (times tau) is the scale of the logits themselves
    kernel cos     mean cosine similarity of the K kernels W_k over the K (K - 1) / 2 pairs:
                   near 1 means the kernels have collapsed into copies of one kernel, so no
                   mix of them differs from any other

and, given labels ``y``, the two tests that tell whether pi is used at all:

    shuffled       accuracy when every image gets another image's attention: a fixed random
                   permutation of the batch with no fixed point, pi'_n = pi_perm(n), with pi
                   the attention of the clean pass
    frozen         accuracy when every image gets the batch's mean attention, pi'_n = mean pi

each for one layer at a time (in its row) and for all dynamic layers at once (the totals line;
layers without the hook, such as ``FDYConv2d``, get no test). A layer whose attention has more
axes, (N, K, ...), counts every position as one sample in its statistics.
If neither costs accuracy, the network does not use its attention: it behaves as a static
network whose kernels are the mean mix. The replacement goes through the dynamic layers'
``attention_override`` hook (``nn/dynamic.py``), set and cleared by ``override_attention``.

The result, an ``AttentionDiagnostics``, prints as a table with a legend and a verdict line.
``AttentionMonitor(x, y)`` computes it after every epoch as a callback of ``train.fit``;
``collect_attention`` returns each layer's pi, and ``attention_probe`` measures how well a
property of the images (a label) can be read from pi by a linear classifier.
"""
import textwrap
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from .backends import to_host
from .nn.module import Module, is_dynamic

__all__ = ["AttentionDiagnostics", "AttentionMonitor", "LayerAttention", "attention_diagnostics",
           "attention_layers", "attention_probe", "collect_attention", "derangement",
           "override_attention"]


@dataclass(frozen=True)
class LayerAttention:
    """The statistics of one dynamic layer (see the module docstring for each field).

    ``shuffled_acc`` / ``frozen_acc`` are None when no labels were given or the layer has no
    ``attention_override`` hook."""
    name: str
    layer: str
    num_kernels: int
    tau: float
    entropy: float
    max_pi: float
    usage: tuple
    spread: float
    logit_std: float
    logit_scale: float
    kernel_cosine: float
    kernel_cosine_max: float
    shuffled_acc: float = None
    frozen_acc: float = None


@dataclass(frozen=True)
class AttentionDiagnostics:
    """Per-layer ``LayerAttention`` rows and the whole-network tests, on ``n`` images.

    accuracy: on the clean pass; shuffled_acc / frozen_acc: every dynamic layer's attention
    replaced at once; *_se: the standard error of the accuracy drop, from the per-image paired
    differences. None where no labels were given."""
    n: int
    layers: tuple
    accuracy: float = None
    shuffled_acc: float = None
    frozen_acc: float = None
    shuffled_se: float = None
    frozen_se: float = None

    def verdict(self):
        """One sentence: whether the network uses its attention, and how input-dependent it is."""
        if not self.layers:
            return "no dynamic layers: nothing to diagnose"
        entropy = np.mean([layer.entropy for layer in self.layers])
        cosine = np.mean([layer.kernel_cosine for layer in self.layers])
        mix = (f"mean entropy {entropy:.2f} x log K, kernels' mean pairwise cosine {cosine:.2f}")
        if self.accuracy is None:
            return mix + " (pass labels to test whether pi is used)"
        if self.shuffled_acc is None:
            return mix + " (no layer has the attention_override hook: pi's use is not tested)"
        drop = 100 * (self.accuracy - self.shuffled_acc)
        frozen = 100 * (self.accuracy - self.frozen_acc)
        se = 100 * max(self.shuffled_se, 1e-12)
        if drop > 2 * se:
            used = (f"pi is used: giving each image another image's attention costs "
                    f"{drop:.1f} +- {100 * self.shuffled_se:.1f} points and the mean attention "
                    f"{frozen:.1f} +- {100 * self.frozen_se:.1f}")
        else:
            used = (f"pi is not detectably used: another image's attention changes accuracy by "
                    f"{-drop:+.1f} +- {100 * self.shuffled_se:.1f} points (the mean attention "
                    f"{-frozen:+.1f}); the layers act as static kernels")
        return f"{used}; {mix}"

    def __str__(self):
        return format_diagnostics(self)


def format_diagnostics(result):
    """The readable table of an ``AttentionDiagnostics`` (what ``str(result)`` gives)."""
    if not result.layers:
        return f"attention diagnostics on {result.n} images: no dynamic layers"
    percent = lambda value: "-" if value is None else f"{100 * value:.1f}"  # noqa: E731
    headers = ("layer", "K", "tau", "entropy", "max pi", "usage per kernel", "spread",
               "std z/tau", "kernel cos", "shuffled %", "frozen %")
    rows = [(layer.name, str(layer.num_kernels), f"{layer.tau:.3g}", f"{layer.entropy:.3f}",
             f"{layer.max_pi:.3f}", " ".join(f"{u:.2f}" for u in layer.usage),
             f"{layer.spread:.3f}", f"{layer.logit_scale:.3g}", f"{layer.kernel_cosine:.2f}",
             percent(layer.shuffled_acc), percent(layer.frozen_acc)) for layer in result.layers]
    if result.shuffled_acc is not None:
        rows.append(("all layers", "", "", "", "", "", "", "", "", percent(result.shuffled_acc),
                     percent(result.frozen_acc)))
    if result.accuracy is None:                  # no labels: no tests to show
        headers, rows = headers[:-2], [row[:-2] for row in rows]
    widths = [max(len(row[i]) for row in [headers] + rows) for i in range(len(headers))]
    lines = ["  ".join(cell.ljust(w) if i in (0, 5) else cell.rjust(w)
                       for i, (cell, w) in enumerate(zip(row, widths))).rstrip()
             for row in [headers] + rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    title = f"attention diagnostics on {result.n} images"
    if result.accuracy is not None:
        title += f" (accuracy {percent(result.accuracy)} %)"
    legend = ("entropy: H(pi) / log K (1 uniform, 0 one kernel); max pi: 1/K when uniform; "
              "usage: mean pi_k\n(1/K each = even); spread: std of pi_k across images (0: one "
              "mix for all, a static kernel);\nstd z/tau: of the logits the softmax sees "
              "(pi = softmax(z / tau)); kernel cos: mean pairwise cosine\nof the K kernels (1: "
              "copies)" + ("; shuffled / frozen: accuracy with each image given another "
                           "image's\nattention / the mean attention, in this layer ('all "
                           "layers': in every one at once)" if result.accuracy is not None
                           else ""))
    verdict = textwrap.fill("verdict: " + result.verdict(), 100, subsequent_indent="  ")
    return "\n".join([title] + lines + [legend, verdict])


def attention_layers(model):
    """(name, layer) of every dynamic layer below ``model``, in order (``nn.is_dynamic``)."""
    if not isinstance(model, Module):
        raise TypeError(f"model must be a dynconv_np.nn.Module; received {type(model).__name__}")
    return [(name.rstrip(".") or "(model)", module) for name, module in model.named_modules()
            if is_dynamic(module) and hasattr(module, "attention")]


@contextmanager
def override_attention(overrides):
    """Within the block, each layer of ``overrides`` (a dict {layer: function pi -> pi'})
    replaces its attention pi (N, K) by function(pi) in eval-mode forwards; on exit every
    layer's previous ``attention_override`` is restored (also after an exception)."""
    previous = {}
    try:
        for layer, function in overrides.items():
            if not hasattr(type(layer), "attention_override"):
                raise TypeError(f"{type(layer).__name__} has no attention_override hook")
            previous[layer] = layer.attention_override
            layer.attention_override = function
        yield
    finally:
        for layer, function in previous.items():
            layer.attention_override = function


def derangement(n, rng=None):
    """A random permutation of range(n) with no fixed point (one n-cycle; n >= 2)."""
    if n < 2:
        raise ValueError(f"a permutation without fixed points needs n >= 2; received {n}")
    order = np.random.default_rng(rng).permutation(n)
    perm = np.empty(n, dtype=np.int64)
    perm[order] = np.roll(order, -1)
    return perm


def attention_diagnostics(model, x, y=None, seed=0, batch_size=512):
    """The diagnostics of the module docstring for ``model`` on images ``x`` (labels ``y``
    optional) -> ``AttentionDiagnostics``. ``seed`` draws the shuffling permutation;
    ``batch_size`` bounds one forward call. The model's train/eval mode is restored."""
    layers = attention_layers(model)
    x = np.asarray(x)
    n = len(x)
    if y is not None:
        y = np.asarray(y)
        if y.shape != (n,):
            raise ValueError(f"y must hold one label per image ({n},); received {y.shape}")
    was_training = [module.training for module in model.modules()]
    model.eval()
    try:
        logits, recorded = _run(model, x, batch_size, layers)
        rows = [_layer_stats(name, layer, recorded[index])
                for index, (name, layer) in enumerate(layers)]
        if y is None or not layers or n < 2:
            return AttentionDiagnostics(n, tuple(rows))
        correct = np.argmax(logits, axis=1) == y
        perm = derangement(n, seed)
        replace = {"shuffled": lambda pi: pi[perm],
                   "frozen": lambda pi: np.broadcast_to(pi.mean(axis=0), pi.shape)}
        hooked = [index for index, (_, layer) in enumerate(layers)
                  if hasattr(type(layer), "attention_override")]
        if not hooked:
            return AttentionDiagnostics(n, tuple(rows), accuracy=float(correct.mean()))
        tests = {}
        for kind, function in replace.items():
            per_layer = {}
            for index in hooked:
                per_layer[index] = _correct_with(model, x, y, batch_size, layers,
                                                 {index: function(recorded[index])})
            every = _correct_with(model, x, y, batch_size, layers,
                                  {index: function(recorded[index]) for index in hooked})
            tests[kind] = per_layer, every
        rows = [_with_tests(row, index, tests) for index, row in enumerate(rows)]
        drop = {kind: correct.astype(float) - every for kind, (_, every) in tests.items()}
        return AttentionDiagnostics(
            n, tuple(rows), accuracy=float(correct.mean()),
            shuffled_acc=float(tests["shuffled"][1].mean()),
            frozen_acc=float(tests["frozen"][1].mean()),
            shuffled_se=float(drop["shuffled"].std() / np.sqrt(n)),
            frozen_se=float(drop["frozen"].std() / np.sqrt(n)))
    finally:
        for module, mode in zip(model.modules(), was_training):
            module.training = mode


def collect_attention(model, x, batch_size=512):
    """[pi (N, K) float64 per dynamic layer] of ``model`` on ``x`` (eval mode; restored)."""
    layers = attention_layers(model)
    was_training = [module.training for module in model.modules()]
    model.eval()
    try:
        return _run(model, np.asarray(x), batch_size, layers)[1]
    finally:
        for module, mode in zip(model.modules(), was_training):
            module.training = mode


def attention_probe(model, x_train, labels_train, x_test, labels_test, steps=500, lr=0.5,
                    l2=1e-3, batch_size=512):
    """How well a property of the images (``labels_*``, integers 0..C-1, e.g. their style) can
    be read from the attention alone -> balanced accuracy on the test images (the mean over the
    C classes of the share of that class's images classified right: chance is 1 / C whatever
    the class frequencies), or None without dynamic layers.

    The read-out is a linear softmax classifier on the standardised log pi of every dynamic
    layer (concatenated), fitted to the training images by ``steps`` full-batch gradient steps
    with every class weighted equally (L2 penalty ``l2``). A high score means the attention
    encodes the property; whether the network uses it is what the shuffled and frozen tests
    of ``attention_diagnostics`` say."""
    features = []
    for x in (x_train, x_test):
        pis = collect_attention(model, x, batch_size)
        if not pis:
            return None
        features.append(np.concatenate([np.log(np.maximum(pi, 1e-12)) for pi in pis], axis=1))
    mean, std = features[0].mean(axis=0), features[0].std(axis=0) + 1e-8
    f_train, f_test = ((f - mean) / std for f in features)
    labels_train, labels_test = np.asarray(labels_train), np.asarray(labels_test)
    classes = int(max(labels_train.max(), labels_test.max())) + 1
    onehot = np.eye(classes)[labels_train]
    counts = np.maximum(np.bincount(labels_train, minlength=classes), 1)
    sample_weight = (1.0 / (classes * counts))[labels_train][:, None]   # sums to 1
    weight, bias = np.zeros((f_train.shape[1], classes)), np.zeros(classes)
    for _ in range(steps):
        z = f_train @ weight + bias
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        g = (p - onehot) * sample_weight
        weight -= lr * (f_train.T @ g + l2 * weight)
        bias -= lr * g.sum(axis=0)
    predicted = np.argmax(f_test @ weight + bias, axis=1)
    present = [c for c in range(classes) if np.any(labels_test == c)]
    return float(np.mean([np.mean(predicted[labels_test == c] == c) for c in present]))


class AttentionMonitor:
    """A callback for ``train.fit``: ``attention_diagnostics(model, x, y)`` after every
    ``every``-th epoch, kept in ``results`` as (epoch, AttentionDiagnostics) pairs.

    It adds two numbers to the epoch's record (``History.epochs``): "attention_entropy" and
    "kernel_cosine", each the mean over the dynamic layers; ``file`` (e.g. sys.stdout) also
    prints the table each time.
    """

    def __init__(self, x, y=None, every=1, seed=0, batch_size=512, file=None):
        if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 1:
            raise ValueError(f"every must be a positive int; received {every!r}")
        self.x, self.y, self.every, self.seed = x, y, int(every), seed
        self.batch_size, self.file = batch_size, file
        self.results = []

    def __call__(self, model, record):
        epoch = record.get("epoch", len(self.results) + 1)
        if epoch % self.every:
            return None
        result = attention_diagnostics(model, self.x, self.y, self.seed, self.batch_size)
        self.results.append((epoch, result))
        if self.file is not None:
            print(f"epoch {epoch}: {result}", file=self.file, flush=True)
        if not result.layers:
            return None
        return {"attention_entropy": float(np.mean([r.entropy for r in result.layers])),
                "kernel_cosine": float(np.mean([r.kernel_cosine for r in result.layers]))}


# -- the measurements -------------------------------------------------------------------------

def _run(model, x, batch_size, layers, overrides=None):
    """Logits of ``model`` on ``x`` in batches, and each layer's pi (N, K) float64; with
    ``overrides`` ({layer index: pi' for all N images}) those layers use pi' instead."""
    logits, recorded = [], [[] for _ in layers]
    for start in range(0, len(x), batch_size):
        stop = min(start + batch_size, len(x))
        replace = {layers[index][1]: (lambda pi, p=full[start:stop]: p)
                   for index, full in (overrides or {}).items()}
        with override_attention(replace):
            logits.append(np.asarray(model.forward(x[start:stop])))
        for index, (_, layer) in enumerate(layers):
            recorded[index].append(np.asarray(layer.attention, dtype=np.float64))
    return np.concatenate(logits), [np.concatenate(r) if r else None for r in recorded]


def _correct_with(model, x, y, batch_size, layers, overrides):
    logits, _ = _run(model, x, batch_size, layers, overrides)
    return (np.argmax(logits, axis=1) == y).astype(float)


def _layer_stats(name, layer, pi):
    k = pi.shape[1]
    if pi.ndim > 2:      # attention per position as well (N, K, ...): each position a sample
        pi = np.moveaxis(pi, 1, -1).reshape(-1, k)
    log_pi = np.log(np.maximum(pi, 1e-300))
    entropy = -np.sum(pi * log_pi, axis=1)
    logit_scale = float(np.mean(log_pi.std(axis=1)))
    tau = float(layer.temperature)
    weight = np.asarray(to_host(layer.params["weight"]), dtype=np.float64).reshape(k, -1)
    norms = np.maximum(np.linalg.norm(weight, axis=1), 1e-300)
    cosine = (weight @ weight.T) / np.outer(norms, norms)
    pairs = cosine[np.triu_indices(k, 1)] if k > 1 else np.ones(1)
    return LayerAttention(
        name=name, layer=type(layer).__name__, num_kernels=k, tau=tau,
        entropy=float(entropy.mean() / np.log(k)) if k > 1 else 0.0,
        max_pi=float(pi.max(axis=1).mean()), usage=tuple(float(u) for u in pi.mean(axis=0)),
        spread=float(pi.std(axis=0).mean()), logit_std=logit_scale * tau,
        logit_scale=logit_scale, kernel_cosine=float(pairs.mean()),
        kernel_cosine_max=float(pairs.max()))


def _with_tests(row, index, tests):
    values = {}
    for kind, (per_layer, _) in tests.items():
        if index in per_layer:
            values[f"{kind}_acc"] = float(per_layer[index].mean())
    return LayerAttention(**{**row.__dict__, **values})
