"""The training loop: shuffled minibatches, one SGD step per batch, evaluation after each epoch.

One step on a batch (x, y):

    model.zero_grad();  logits = model.forward(x)
    loss, cache = cross_entropy_forward(logits, y);  model.backward(cross_entropy_backward(1, cache))
    optimizer.lr = lr(t);  optimizer.step()

with the learning rate lr(t) and, when annealing, the dynamic layers' temperature tau(t) set
before the forward pass (``schedules.py``; t = epoch + iteration / iterations_per_epoch).

Data: ``fit(model, data, ...)`` takes a ``Dataset`` (it trains on x_train/y_train and evaluates
on x_test/y_test after every epoch) or plain arrays ``(x_train, y_train)`` (images (N, C, H, W)
float32/float64, labels (N,) integers). Either way ``validation=(x_val, y_val)`` or
``validation_split=f`` (a fraction of the training arrays held out, the same images whatever
the seed) adds a validation evaluation. Per epoch, ``History.epochs`` records train_loss and
train_acc (running means over the epoch's batches, in training mode: the weights change while
they are measured, and BatchNorm uses batch statistics), val_loss/val_acc and test_loss/test_acc
where there is such a set (eval mode, after the epoch), lr and tau (the last step's).

Callbacks: ``fit(..., callbacks=[f, ...])`` calls ``f(model, record)`` after every epoch's
evaluation (``diagnostics.AttentionMonitor`` is one); a dict it returns is merged into the record.

Seeding: ``fit(..., seed=s)`` draws the batch order from ``np.random.default_rng(s)``; the model
is seeded where it is built (every layer takes ``rng``). Same seed, same data, same backend ->
the same trajectory.
"""
import time
from dataclasses import dataclass, field

import numpy as np

from .losses import accuracy, cross_entropy_backward, cross_entropy_forward
from .optim import SGD
from .progress import ProgressBar
from .schedules import CosineWarmupLR, TemperatureAnnealing, apply_temperature, dynamic_modules
from .._validation import check_float_array


@dataclass
class TrainConfig:
    """Hyper-parameters of ``fit``. ``anneal_epochs=None`` anneals tau off (constant).

    tau follows ``temperature_schedule`` when one is given (a ``schedules.TemperatureSchedule``,
    e.g. ``TemperatureSchedule.stepwise()``), else the linear ``tau_start -> tau_end`` over
    ``anneal_epochs`` (per iteration unless ``anneal_per_iteration=False``)."""
    epochs: int = 10
    batch_size: int = 32
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.0
    tau_start: float = 30.0
    tau_end: float = 1.0
    anneal_epochs: float = 10.0
    anneal_per_iteration: bool = True
    eval_batch_size: int = 512
    temperature_schedule: object = None

    def __post_init__(self):
        for name in ("epochs", "batch_size", "eval_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive int; received {value!r}")


@dataclass
class History:
    """Per-epoch records (dicts: epoch, train_loss, train_acc, [val_loss, val_acc],
    [test_loss, test_acc], lr, tau, and what callbacks add; module docstring) and the seconds
    spent in training steps (evaluation and callbacks excluded)."""
    epochs: list = field(default_factory=list)
    train_seconds: float = 0.0

    @property
    def final(self):
        return self.epochs[-1]


def minibatches(n, batch_size, rng=None):
    """Index arrays covering range(n) in batches (shuffled when an rng is given; last may be short)."""
    order = np.arange(n) if rng is None else rng.permutation(n)
    for start in range(0, n, batch_size):
        yield order[start:start + batch_size]


def train_step(model, optimizer, x, y, label_smoothing=0.0):
    """One forward, backward and SGD update on (x, y); return (loss, number correct)."""
    model.zero_grad()
    logits = model.forward(x)
    loss, cache = cross_entropy_forward(logits, y, label_smoothing)
    model.backward(cross_entropy_backward(1.0, cache))
    optimizer.step()
    return loss, int(np.sum(np.argmax(logits, axis=1) == y))


def evaluate(model, x, y, batch_size=512):
    """(mean cross-entropy, accuracy) of ``model`` on (x, y) in eval mode; restores the mode."""
    was_training = model.training
    model.eval()
    try:
        logits = np.concatenate([model.forward(x[idx]) for idx in minibatches(len(x), batch_size)])
    finally:
        model.train(was_training)
    return cross_entropy_forward(logits, y)[0], accuracy(logits, y)


def fit(model, data, config=None, seed=0, progress=True, description="train", file=None,
        validation=None, validation_split=None, callbacks=()):
    """Train ``model`` with SGD on ``data`` (a ``Dataset`` or ``(x_train, y_train)``), evaluating
    after every epoch (module docstring); return a ``History``.

    ``config`` is a ``TrainConfig`` (defaults if None). ``progress`` shows one bar for the whole
    run on stderr (or ``file``), named ``description``. ``validation`` / ``validation_split``
    and ``callbacks``: module docstring.
    """
    config = TrainConfig() if config is None else config
    x, y, sets = _training_data(data, validation, validation_split)
    iterations = -(-len(x) // config.batch_size)
    optimizer = SGD(model, config.lr, momentum=config.momentum, nesterov=config.nesterov,
                    weight_decay=config.weight_decay)
    lr_schedule = CosineWarmupLR(config.lr, config.epochs, min(config.warmup_epochs,
                                                               config.epochs - 1))
    annealing = None
    if dynamic_modules(model):
        if config.temperature_schedule is not None:
            annealing = config.temperature_schedule
        elif config.anneal_epochs is not None:
            annealing = TemperatureAnnealing(config.tau_start, config.tau_end,
                                             config.anneal_epochs,
                                             per_iteration=config.anneal_per_iteration)
    rng = np.random.default_rng(seed)
    history = History()
    bar = ProgressBar(config.epochs * iterations, description, file=file, disable=not progress)
    with bar:
        for epoch in range(config.epochs):
            model.train()
            start, total_loss, correct, tau = time.perf_counter(), 0.0, 0, None
            for iteration, idx in enumerate(minibatches(len(x), config.batch_size, rng)):
                optimizer.lr = lr_schedule.lr_at(epoch, iteration, iterations)
                if annealing is not None:
                    tau = annealing.tau_at(epoch, iteration, iterations)
                    apply_temperature(model, tau)
                loss, hits = train_step(model, optimizer, x[idx], y[idx], config.label_smoothing)
                total_loss += loss * len(idx)
                correct += hits
                seen = min((iteration + 1) * config.batch_size, len(x))
                bar.update(epoch=f"{epoch + 1}/{config.epochs}", loss=f"{total_loss / seen:.3f}")
            history.train_seconds += time.perf_counter() - start
            record = {"epoch": epoch + 1, "train_loss": total_loss / len(x),
                      "train_acc": correct / len(x)}
            for name, (x_eval, y_eval) in sets.items():
                record[f"{name}_loss"], record[f"{name}_acc"] = evaluate(
                    model, x_eval, y_eval, config.eval_batch_size)
            record.update(lr=optimizer.lr, tau=tau)
            for callback in callbacks:
                extra = callback(model, record)
                if extra:
                    record.update(extra)
            history.epochs.append(record)
            for name in sets:
                bar.update(0, **{name: f"{100 * record[f'{name}_acc']:.1f}%"})
    return history


def _training_data(data, validation, validation_split):
    """(x_train, y_train, {"val": (x, y), "test": (x, y)} for the sets that exist)."""
    if isinstance(data, (tuple, list)) and len(data) == 2:
        (x, y), sets = data, {}
    elif all(hasattr(data, name) for name in ("x_train", "y_train")):
        x, y, sets = data.x_train, data.y_train, {}
        if getattr(data, "x_test", None) is not None:
            sets["test"] = (data.x_test, data.y_test)
    else:
        raise TypeError(f"data must be a Dataset (x_train, y_train, x_test, y_test) or a pair "
                        f"(x_train, y_train); received {type(data).__name__}")
    x, y = _check_pair(x, y, "x_train", "y_train")
    if validation is not None and validation_split is not None:
        raise ValueError("pass validation=(x_val, y_val) or validation_split, not both")
    if validation_split is not None:
        if isinstance(validation_split, bool) or not isinstance(
                validation_split, (float, int, np.floating)) or not 0 < validation_split < 1:
            raise ValueError(f"validation_split must be a fraction in (0, 1); received "
                             f"{validation_split!r}")
        held = int(round(validation_split * len(x)))
        if not 0 < held < len(x):
            raise ValueError(f"validation_split={validation_split} of {len(x)} images leaves an "
                             f"empty training or validation set")
        order = np.random.default_rng(0).permutation(len(x))  # the same split for every seed
        validation = (x[order[:held]], y[order[:held]])
        x, y = x[order[held:]], y[order[held:]]
    if validation is not None:
        if not (isinstance(validation, (tuple, list)) and len(validation) == 2):
            raise TypeError("validation must be a pair (x_val, y_val)")
        sets = {"val": _check_pair(*validation, "x_val", "y_val"), **sets}
    return x, y, sets


def _check_pair(x, y, x_name, y_name):
    """Images (N, ...) float32/float64 and integer labels (N,)."""
    check_float_array(x, x_name)
    if x.ndim < 2 or len(x) == 0:
        raise ValueError(f"{x_name} must be a non-empty batch (N, ...); received shape {x.shape}")
    y = np.asarray(y)
    if y.dtype.kind not in "iu" or y.shape != (len(x),):
        raise ValueError(f"{y_name} must be integer class labels of shape ({len(x)},); received "
                         f"{y.dtype} {y.shape}")
    return x, y.astype(np.int64, copy=False)
