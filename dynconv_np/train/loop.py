"""The training loop: shuffled minibatches, one SGD step per batch, evaluation after each epoch.

One step on a batch (x, y):

    model.zero_grad();  logits = model.forward(x)
    loss, cache = cross_entropy_forward(logits, y);  model.backward(cross_entropy_backward(1, cache))
    optimizer.lr = lr(t);  optimizer.step()

with the learning rate lr(t) and, when annealing, the dynamic layers' temperature tau(t) set
before the forward pass (``schedules.py``; t = epoch + iteration / iterations_per_epoch).

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


@dataclass
class TrainConfig:
    """Hyper-parameters of ``fit``. ``anneal_epochs=None`` anneals tau off (constant)."""
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

    def __post_init__(self):
        for name in ("epochs", "batch_size", "eval_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive int; received {value!r}")


@dataclass
class History:
    """Per-epoch records (dicts: epoch, train_loss, train_acc, test_loss, test_acc, lr, tau) and
    the seconds spent in training steps (evaluation excluded)."""
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


def fit(model, dataset, config=None, seed=0, progress=True, description="train", file=None):
    """Train ``model`` on ``dataset.x_train``/``y_train`` with SGD, evaluating on the test split
    after every epoch; return a ``History``.

    ``config`` is a ``TrainConfig`` (defaults if None). ``progress`` shows one bar for the whole
    run on stderr (or ``file``).
    """
    config = TrainConfig() if config is None else config
    x, y = dataset.x_train, dataset.y_train
    iterations = -(-len(x) // config.batch_size)
    optimizer = SGD(model, config.lr, momentum=config.momentum, nesterov=config.nesterov,
                    weight_decay=config.weight_decay)
    lr_schedule = CosineWarmupLR(config.lr, config.epochs, min(config.warmup_epochs,
                                                               config.epochs - 1))
    annealing = None
    if config.anneal_epochs is not None and dynamic_modules(model):
        annealing = TemperatureAnnealing(config.tau_start, config.tau_end, config.anneal_epochs,
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
                bar.update(epoch=f"{epoch + 1}/{config.epochs}", loss=total_loss / seen)
            history.train_seconds += time.perf_counter() - start
            test_loss, test_acc = evaluate(model, dataset.x_test, dataset.y_test,
                                           config.eval_batch_size)
            history.epochs.append({"epoch": epoch + 1, "train_loss": total_loss / len(x),
                                   "train_acc": correct / len(x), "test_loss": test_loss,
                                   "test_acc": test_acc, "lr": optimizer.lr, "tau": tau})
            bar.update(0, test_acc=test_acc)
    return history
