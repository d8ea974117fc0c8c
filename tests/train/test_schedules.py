"""Cosine learning rate with warm-up, temperature annealing, and applying tau to a model."""
import math

import pytest

from dynconv_np import DynamicConv2d, DynamicLinear
from dynconv_np.nn import Module
from dynconv_np.train.schedules import (CosineWarmupLR, TemperatureAnnealing, apply_temperature,
                                        dynamic_modules)


def test_cosine_warmup_values():
    schedule = CosineWarmupLR(0.4, total_epochs=10, warmup_epochs=2, min_lr=0.0)
    # Warm-up: linear, first step positive, reaching the peak at t = W.
    assert schedule.lr_at(0, 0, 4) == pytest.approx(0.4 * 0.25 / 2)
    assert schedule.lr_at(1, 3, 4) == pytest.approx(0.4)
    assert schedule.lr_at(2, 0, 4) == pytest.approx(0.4)
    # Cosine: half-way through the decay the rate is half the peak; it ends near min_lr.
    assert schedule.lr_at(6, 0, 4) == pytest.approx(0.2)
    assert schedule.lr_at(9, 3, 4) == pytest.approx(0.2 * (1 + math.cos(math.pi * 7.75 / 8)))
    rates = [schedule.lr_at(e, i, 4) for e in range(2, 10) for i in range(4)]
    assert all(a >= b for a, b in zip(rates, rates[1:]))


def test_cosine_without_warmup_starts_at_peak_and_respects_floor():
    schedule = CosineWarmupLR(1.0, total_epochs=4, warmup_epochs=0, min_lr=0.1)
    assert schedule.lr_at(0) == pytest.approx(1.0)
    assert schedule.lr_at(2) == pytest.approx(0.55)


def test_temperature_paper_default_per_epoch_and_per_iteration():
    per_epoch = TemperatureAnnealing()            # 30 -> 1 over 10 epochs, per epoch
    assert [per_epoch.tau_at(e, 5, 10) for e in (0, 5, 10, 50)] == \
        pytest.approx([30.0, 15.5, 1.0, 1.0])
    per_iteration = TemperatureAnnealing(per_iteration=True)
    assert per_iteration.tau_at(0, 5, 10) == pytest.approx(30 - 29 * 0.05)
    assert per_iteration.tau_at(9, 9, 10) == pytest.approx(30 - 29 * 0.99)
    taus = [per_iteration.tau_at(e, i, 10) for e in range(12) for i in range(10)]
    assert all(a > b for a, b in zip(taus[:100], taus[1:101])) and set(taus[100:]) == {1.0}


def test_apply_temperature_reaches_every_dynamic_module():
    class Net(Module):
        def __init__(self):
            super().__init__()
            self.layers = [DynamicConv2d(2, 2, 1, backend="numpy"), Module(), DynamicLinear(3, 2)]

        def children(self):
            return self.layers

    net = Net()
    assert len(dynamic_modules(net)) == 2
    assert apply_temperature(net, 7.5) == 2
    assert [m.temperature for m in dynamic_modules(net)] == [7.5, 7.5]


@pytest.mark.parametrize("make, match", [
    (lambda: CosineWarmupLR(0.0, 10), "base_lr must be > 0"),
    (lambda: CosineWarmupLR(0.1, 10, warmup_epochs=10), r"warmup_epochs must be in \[0, total"),
    (lambda: CosineWarmupLR(0.1, 10, min_lr=0.2), r"min_lr must be in \[0, base_lr"),
    (lambda: TemperatureAnnealing(start=0.0), "temperature"),
    (lambda: TemperatureAnnealing(epochs=0), "annealing length"),
    (lambda: CosineWarmupLR(0.1, 10).lr_at(0, 5, 5), "0 <= iteration < iterations_per_epoch"),
    (lambda: apply_temperature(Module(), -1.0), "temperature"),
])
def test_bad_arguments_are_named(make, match):
    with pytest.raises(ValueError, match=match):
        make()
