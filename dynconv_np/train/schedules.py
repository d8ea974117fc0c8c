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

``TemperatureSchedule`` (at the end of this module) gathers the temperature schedules as one
family: linear per iteration (the line above), stepwise per epoch (31 -> 1 in steps of 3, as a
widely used port), constant, and two-slope; ``TrainConfig(temperature_schedule=...)`` uses one.
"""
import math
import numbers

import numpy as np

from .._validation import _finite, _is_int, check_temperature
from ..nn.module import Module, is_dynamic


class CosineWarmupLR:
    """lr(t) above; ``lr_at(epoch, iteration, iterations_per_epoch)``."""

    def __init__(self, base_lr, total_epochs, warmup_epochs=0, min_lr=0.0):
        _real(base_lr, "base_lr")
        if not base_lr > 0:
            raise ValueError(f"base_lr must be > 0; received {base_lr!r}")
        _real(total_epochs, "total_epochs")
        if not total_epochs > 0:
            raise ValueError(f"total_epochs must be > 0; received {total_epochs!r}")
        _real(warmup_epochs, "warmup_epochs")
        if not 0 <= warmup_epochs < total_epochs:
            raise ValueError(f"warmup_epochs must be in [0, total_epochs={total_epochs}); "
                             f"received {warmup_epochs!r}")
        _real(min_lr, "min_lr")
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
        # float64's range: a float32 layer refuses a tau outside its own when it is applied
        self.start = _temperature(start, "start")
        self.end = _temperature(end, "end")
        _real(epochs, "epochs (the annealing length)")
        if not epochs > 0:
            raise ValueError(f"epochs (the annealing length) must be > 0; received {epochs!r}")
        if not isinstance(per_iteration, (bool, np.bool_)):
            raise TypeError(f"per_iteration must be True or False; received {per_iteration!r}")
        self.epochs, self.per_iteration = float(epochs), bool(per_iteration)

    def tau_at(self, epoch, iteration=0, iterations_per_epoch=1):
        t = _progress(epoch, iteration if self.per_iteration else 0, iterations_per_epoch)
        return self.start + (self.end - self.start) * min(t / self.epochs, 1.0)


def dynamic_modules(model):
    """Every dynamic module below ``model`` (itself included), in order (``nn.is_dynamic``)."""
    return [module for module in model.modules() if is_dynamic(module)]


def apply_temperature(model, tau):
    """Set ``temperature = tau`` on every dynamic module below ``model``; return how many."""
    if not isinstance(model, Module):
        raise TypeError(f"model must be a dynconv_np.nn.Module; received {type(model).__name__}")
    tau = check_temperature(tau, np.float64)
    modules = dynamic_modules(model)
    for module in modules:
        module.temperature = tau
    return len(modules)


def _real(value, name):
    """A finite real number (not a bool): else TypeError/ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number; received {type(value).__name__} "
                        f"{value!r}")
    if not _finite(value):
        raise ValueError(f"{name} must be finite; received {value!r}")
    return float(value)


def _temperature(tau, name):
    try:
        return check_temperature(tau, np.float64)
    except (TypeError, ValueError) as error:
        raise type(error)(f"{name}: {error}") from None


def _progress(epoch, iteration, iterations_per_epoch):
    _real(epoch, "epoch")
    for name, value in (("iteration", iteration), ("iterations_per_epoch", iterations_per_epoch)):
        if not _is_int(value):
            raise TypeError(f"{name} must be an int; received {value!r}")
    if not iterations_per_epoch >= 1:
        raise ValueError(f"iterations_per_epoch must be >= 1; received {iterations_per_epoch!r}")
    if not (epoch >= 0 and 0 <= iteration < iterations_per_epoch):
        raise ValueError(f"need epoch >= 0 and 0 <= iteration < iterations_per_epoch="
                         f"{iterations_per_epoch}; received epoch={epoch!r}, iteration={iteration!r}")
    return epoch + iteration / iterations_per_epoch


# -- the temperature schedule family ----------------------------------------------------------
#
#   linear      tau(t) = start + (end - start) min(t / A, 1)          per iteration (this library)
#   stepwise    tau(t) = max(start - step floor(t / every), end)      per epoch: 31, 28, ..., 1
#                                                                     (a widely used port)
#   constant    tau(t) = tau
#   two-slope   start -> middle linearly over [0, knee], middle -> end over [knee, A], then end
#
# t is the training progress in epochs (t = e + i / I). Each schedule is a ``TemperatureSchedule``
# with ``tau_at(epoch, iteration, iterations_per_epoch)`` (what ``train.fit`` calls before every
# step; ``TrainConfig(temperature_schedule=...)``), ``end_epoch`` (from where tau stays at
# ``end``) and ``describe()`` (one line for logs).

class TemperatureSchedule:
    """Base of the temperature schedules; build one with the class methods ``linear``,
    ``stepwise``, ``constant`` and ``two_slope`` (or the classes themselves)."""

    per_iteration = True
    end = 1.0

    def tau(self, t):
        """tau at training progress ``t`` (epochs, >= 0)."""
        raise NotImplementedError

    def tau_at(self, epoch, iteration=0, iterations_per_epoch=1):
        """tau for iteration ``iteration`` of epoch ``epoch`` (sampled once per epoch, at its
        start, when the schedule is not ``per_iteration``)."""
        t = _progress(epoch, iteration, iterations_per_epoch)
        return float(self.tau(t if self.per_iteration else math.floor(t)))

    @property
    def end_epoch(self):
        """The progress (epochs) from which tau stays at ``end``."""
        raise NotImplementedError

    def describe(self):
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}: {self.describe()}"

    @classmethod
    def linear(cls, start=30.0, end=1.0, epochs=10.0, per_iteration=True):
        return LinearTemperature(start, end, epochs, per_iteration)

    @classmethod
    def stepwise(cls, start=31.0, end=1.0, step=3.0, every=1.0):
        return StepTemperature(start, end, step, every)

    @classmethod
    def constant(cls, tau=1.0):
        return ConstantTemperature(tau)

    @classmethod
    def two_slope(cls, start=30.0, middle=5.0, end=1.0, knee=1.0, epochs=10.0):
        return TwoSlopeTemperature(start, middle, end, knee, epochs)


class LinearTemperature(TemperatureSchedule):
    """start -> end linearly over ``epochs``, then end (the paper's 30 -> 1 over 10 epochs);
    per iteration unless ``per_iteration=False`` (then per epoch, as ``TemperatureAnnealing``'s
    default)."""

    def __init__(self, start=30.0, end=1.0, epochs=10.0, per_iteration=True):
        self.start, self.end = _temperature(start, "start"), _temperature(end, "end")
        self.epochs = _positive(epochs, "epochs (the annealing length)")
        if not isinstance(per_iteration, (bool, np.bool_)):
            raise TypeError(f"per_iteration must be True or False; received {per_iteration!r}")
        self.per_iteration = bool(per_iteration)

    def tau(self, t):
        return self.start + (self.end - self.start) * min(t / self.epochs, 1.0)

    @property
    def end_epoch(self):
        return self.epochs

    def describe(self):
        return (f"tau {self.start:g} -> {self.end:g} linearly over {self.epochs:g} epochs "
                f"({'per iteration' if self.per_iteration else 'per epoch'}), then {self.end:g}")


class StepTemperature(TemperatureSchedule):
    """tau = max(start - step floor(t / every), end): lowered by ``step`` every ``every``
    epochs (default 31, 28, ..., 4, 1 over 10 epochs, as a widely used PyTorch port)."""

    per_iteration = False

    def __init__(self, start=31.0, end=1.0, step=3.0, every=1.0):
        self.start, self.end = _temperature(start, "start"), _temperature(end, "end")
        if self.start < self.end:
            raise ValueError(f"a stepwise schedule lowers tau: need start >= end; received "
                             f"start={start!r}, end={end!r}")
        self.step = _positive(step, "step")
        self.every = _positive(every, "every")

    def tau(self, t):
        return max(self.start - self.step * math.floor(t / self.every), self.end)

    @property
    def end_epoch(self):
        return math.ceil((self.start - self.end) / self.step) * self.every

    def describe(self):
        return (f"tau {self.start:g} -> {self.end:g} in steps of {self.step:g} every "
                f"{self.every:g} epoch(s) (reaches {self.end:g} at epoch {self.end_epoch:g})")


class ConstantTemperature(TemperatureSchedule):
    """tau fixed (tau = 1: the plain softmax, no annealing)."""

    def __init__(self, tau=1.0):
        self.end = _temperature(tau, "tau")

    def tau(self, t):
        return self.end

    @property
    def end_epoch(self):
        return 0.0

    def describe(self):
        return f"tau {self.end:g} throughout"


class TwoSlopeTemperature(TemperatureSchedule):
    """start -> middle linearly over [0, knee] epochs, middle -> end over [knee, epochs],
    then end (per iteration): a fast drop out of the uniform regime, then a slow approach."""

    def __init__(self, start=30.0, middle=5.0, end=1.0, knee=1.0, epochs=10.0):
        self.start, self.middle = _temperature(start, "start"), _temperature(middle, "middle")
        self.end = _temperature(end, "end")
        self.knee = _positive(knee, "knee")
        self.epochs = _positive(epochs, "epochs")
        if not self.knee < self.epochs:
            raise ValueError(f"need 0 < knee < epochs; received knee={knee!r}, "
                             f"epochs={epochs!r}")

    def tau(self, t):
        if t < self.knee:
            return self.start + (self.middle - self.start) * t / self.knee
        fraction = min((t - self.knee) / (self.epochs - self.knee), 1.0)
        return self.middle + (self.end - self.middle) * fraction

    @property
    def end_epoch(self):
        return self.epochs

    def describe(self):
        return (f"tau {self.start:g} -> {self.middle:g} over {self.knee:g} epoch(s), then -> "
                f"{self.end:g} by epoch {self.epochs:g} (per iteration)")


def _positive(value, name):
    value = _real(value, name)
    if not value > 0:
        raise ValueError(f"{name} must be > 0; received {value!r}")
    return value
