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


# -- the temperature schedule family ----------------------------------------------------------

from dynconv_np.train.schedules import (ConstantTemperature, LinearTemperature,  # noqa: E402
                                        StepTemperature, TemperatureSchedule,
                                        TwoSlopeTemperature)


def test_linear_schedule_is_the_paper_line_per_iteration():
    schedule = TemperatureSchedule.linear(30, 1, epochs=2)
    reference = TemperatureAnnealing(30, 1, 2, per_iteration=True)
    for epoch in range(4):
        for iteration in range(5):
            assert schedule.tau_at(epoch, iteration, 5) == pytest.approx(
                reference.tau_at(epoch, iteration, 5))
    assert schedule.tau_at(1, 0, 4) == pytest.approx(15.5) and schedule.end_epoch == 2
    per_epoch = LinearTemperature(30, 1, 2, per_iteration=False)
    assert per_epoch.tau_at(0, 3, 4) == 30 and per_epoch.tau_at(1, 3, 4) == pytest.approx(15.5)


def test_stepwise_schedule_31_to_1_in_steps_of_3_per_epoch():
    schedule = TemperatureSchedule.stepwise()
    assert isinstance(schedule, StepTemperature) and not schedule.per_iteration
    taus = [schedule.tau_at(epoch, iteration, 4) for epoch in range(12) for iteration in range(4)]
    assert taus[::4] == [31, 28, 25, 22, 19, 16, 13, 10, 7, 4, 1, 1]
    assert all(taus[i] == taus[i - i % 4] for i in range(len(taus)))   # constant in an epoch
    assert schedule.end_epoch == 10
    slow = StepTemperature(30, 2, step=4, every=2)          # floor at the end value
    assert [slow.tau_at(e) for e in (0, 1, 2, 13, 14, 30)] == [30, 30, 26, 6, 2, 2]
    assert slow.end_epoch == 14


def test_constant_and_two_slope_schedules():
    assert [ConstantTemperature(2.5).tau_at(e, 1, 3) for e in (0, 7)] == [2.5, 2.5]
    assert TemperatureSchedule.constant().tau_at(0) == 1.0
    schedule = TemperatureSchedule.two_slope(30, 5, 1, knee=1, epochs=9)
    assert isinstance(schedule, TwoSlopeTemperature)
    assert schedule.tau_at(0, 0, 2) == 30 and schedule.tau_at(0, 1, 2) == pytest.approx(17.5)
    assert schedule.tau_at(1) == pytest.approx(5) and schedule.tau_at(5) == pytest.approx(3)
    assert schedule.tau_at(9) == 1 and schedule.tau_at(20) == 1 and schedule.end_epoch == 9
    t = [schedule.tau(v) for v in (0.999999, 1.0, 1.000001)]         # continuous at the knee
    assert max(t) - min(t) < 1e-4


def test_every_schedule_describes_itself_and_anneals_a_model():
    net = DynamicConv2d(2, 2, 1, backend="numpy")
    for schedule in (TemperatureSchedule.linear(), TemperatureSchedule.stepwise(),
                     TemperatureSchedule.constant(3.0), TemperatureSchedule.two_slope()):
        assert isinstance(schedule, TemperatureSchedule)
        assert "tau" in schedule.describe() and type(schedule).__name__ in repr(schedule)
        apply_temperature(net, schedule.tau_at(100))
        assert net.temperature == schedule.end


@pytest.mark.parametrize("make, error, match", [
    (lambda: StepTemperature(1, 30), ValueError, "need start >= end"),
    (lambda: StepTemperature(step=0), ValueError, "step must be > 0"),
    (lambda: StepTemperature(every=-1), ValueError, "every must be > 0"),
    (lambda: LinearTemperature(epochs=0), ValueError, "annealing length"),
    (lambda: LinearTemperature(per_iteration=1), TypeError, "per_iteration"),
    (lambda: ConstantTemperature(0.0), ValueError, "temperature"),
    (lambda: TwoSlopeTemperature(knee=10, epochs=10), ValueError, "knee < epochs"),
    (lambda: TwoSlopeTemperature(middle=-1), ValueError, "middle"),
    (lambda: LinearTemperature().tau_at(-1), ValueError, "epoch >= 0"),
])
def test_schedule_arguments_are_checked(make, error, match):
    with pytest.raises(error, match=match):
        make()
