"""Schedules: cosine learning rate with linear warm-up, and the paper's temperature annealing.

Both are functions of the training progress t, measured in epochs (a float: iteration i of
epoch e with I iterations per epoch is t = e + i / I).

Learning rate (warm-up W epochs, T epochs in all, peak lr0, floor lr_min):

    lr(t) = lr0 (t + 1/I) / W                                             t < W  (linear warm-up)
    lr(t) = lr_min + (lr0 - lr_min) (1 + cos(pi (t - W) / (T - W))) / 2     t >= W (cosine decay)

The warm-up's first step already has a positive rate (lr0 / (W I)) and reaches lr0 at t = W.

Temperature (paper section 3.3: "tau reduces linearly from 30 to 1 in the first 10 epochs"):

    tau(t) = tau0 + (tau1 - tau0) min(t / A, 1)          tau0 = 30, tau1 = 1, A = 10 epochs

Per-iteration annealing uses t = e + i / I; per-epoch annealing uses t = e (the same line,
sampled at the start of each epoch). ``apply_temperature`` sets it on every module below the
model that has a ``temperature`` attribute (the dynamic layers).
"""
import math

from .._validation import check_temperature
from ..nn.module import is_dynamic


class CosineWarmupLR:
    """lr(t) above; ``lr_at(epoch, iteration, iterations_per_epoch)``."""

    def __init__(self, base_lr, total_epochs, warmup_epochs=0, min_lr=0.0):
        if not base_lr > 0:
            raise ValueError(f"base_lr must be > 0; received {base_lr!r}")
        if not total_epochs > 0:
            raise ValueError(f"total_epochs must be > 0; received {total_epochs!r}")
        if not 0 <= warmup_epochs < total_epochs:
            raise ValueError(f"warmup_epochs must be in [0, total_epochs={total_epochs}); "
                             f"received {warmup_epochs!r}")
        if not 0 <= min_lr <= base_lr:
            raise ValueError(f"min_lr must be in [0, base_lr={base_lr}]; received {min_lr!r}")
        self.base_lr, self.total_epochs = float(base_lr), float(total_epochs)
        self.warmup_epochs, self.min_lr = float(warmup_epochs), float(min_lr)

    def lr_at(self, epoch, iteration=0, iterations_per_epoch=1):
        t = _progress(epoch, iteration, iterations_per_epoch)
        if t < self.warmup_epochs:
            return self.base_lr * (t + 1.0 / iterations_per_epoch) / self.warmup_epochs
        fraction = min((t - self.warmup_epochs) / (self.total_epochs - self.warmup_epochs), 1.0)
        return self.min_lr + (self.base_lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * fraction))


class TemperatureAnnealing:
    """tau(t) above; ``per_iteration=False`` anneals once per epoch (t = epoch)."""

    def __init__(self, start=30.0, end=1.0, epochs=10, per_iteration=False):
        self.start, self.end = check_temperature(start), check_temperature(end)
        if not epochs > 0:
            raise ValueError(f"epochs (the annealing length) must be > 0; received {epochs!r}")
        self.epochs, self.per_iteration = float(epochs), bool(per_iteration)

    def tau_at(self, epoch, iteration=0, iterations_per_epoch=1):
        t = _progress(epoch, iteration if self.per_iteration else 0, iterations_per_epoch)
        return self.start + (self.end - self.start) * min(t / self.epochs, 1.0)


def dynamic_modules(model):
    """Every dynamic module below ``model`` (itself included), in order (``nn.is_dynamic``)."""
    return [module for module in model.modules() if is_dynamic(module)]


def apply_temperature(model, tau):
    """Set ``temperature = tau`` on every dynamic module below ``model``; return how many."""
    tau = check_temperature(tau)
    modules = dynamic_modules(model)
    for module in modules:
        module.temperature = tau
    return len(modules)


def _progress(epoch, iteration, iterations_per_epoch):
    if not iterations_per_epoch >= 1:
        raise ValueError(f"iterations_per_epoch must be >= 1; received {iterations_per_epoch!r}")
    if not (epoch >= 0 and 0 <= iteration < iterations_per_epoch):
        raise ValueError(f"need epoch >= 0 and 0 <= iteration < iterations_per_epoch="
                         f"{iterations_per_epoch}; received epoch={epoch!r}, iteration={iteration!r}")
    return epoch + iteration / iterations_per_epoch
