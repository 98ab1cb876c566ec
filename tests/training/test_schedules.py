"""Learning-rate schedules against hand-computed values."""

import math

import numpy as np
import pytest

from tfasc.config.schema import PhaseConfig, ScheduleConfig
from tfasc.training.schedules import PhasedSchedule, build_schedule


def rates(schedule, steps):
    return np.array([float(schedule(s)) for s in steps])


def test_ssn_paper_schedule():
    # Sec. 6.1: 1e-4 for 50 epochs, exponential 1e-4 → 1e-6 over 200, then 1e-6 for 100 (350 epochs).
    config = ScheduleConfig(name="phases", phases=(
        PhaseConfig(epochs=50, start=1e-4),
        PhaseConfig(epochs=200, start=1e-4, end=1e-6, shape="exponential"),
        PhaseConfig(epochs=100, start=1e-6),
    ))
    schedule = build_schedule(config, learning_rate=1e-4, epochs=350, steps_per_epoch=10)
    got = rates(schedule, [0, 499, 500, 1500, 2499, 2500, 3499, 9999])
    expected = [1e-4, 1e-4, 1e-4, 1e-4 * (1e-2) ** 0.5, 1e-4 * (1e-2) ** (1999 / 2000), 1e-6, 1e-6, 1e-6]
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_piecewise_constant():
    config = ScheduleConfig(name="piecewise_constant", boundaries=(2, 5), values=(0.1, 0.01, 0.001))
    schedule = build_schedule(config, learning_rate=0.1, epochs=8, steps_per_epoch=4)
    np.testing.assert_allclose(rates(schedule, [0, 7, 8, 19, 20, 31, 100]), [0.1, 0.1, 0.01, 0.01, 0.001, 0.001, 0.001], rtol=1e-6)


def test_linear_and_exponential_decay():
    linear = build_schedule(ScheduleConfig(name="linear_decay", final_learning_rate=1e-6), learning_rate=1e-4, epochs=10, steps_per_epoch=10)
    np.testing.assert_allclose(rates(linear, [0, 50, 100, 150]), [1e-4, (1e-4 + 1e-6) / 2, 1e-6, 1e-6], rtol=1e-5)
    exp = build_schedule(ScheduleConfig(name="exponential_decay", final_learning_rate=1e-3, decay_epochs=4), learning_rate=1e-1, epochs=10, steps_per_epoch=1)
    np.testing.assert_allclose(rates(exp, [0, 1, 2, 4, 9]), [1e-1, 1e-1 * 10 ** -0.5, 1e-2, 1e-3, 1e-3], rtol=1e-5)


def test_one_cycle_matches_pytorch_formula():
    peak, pct, div, final_div = 1e-2, 0.3, 25.0, 1e4
    # 10 epochs x 10 steps = 100 steps: 30 rising, 70 falling.
    schedule = build_schedule(ScheduleConfig(name="one_cycle", warmup_fraction=pct), learning_rate=peak, epochs=10, steps_per_epoch=10)
    initial, final = peak / div, peak / div / final_div

    def cos_anneal(a, b, t):
        return b + (a - b) / 2 * (1 + math.cos(math.pi * t))

    for step in [0, 10, 29, 30, 31, 60, 99]:
        expected = cos_anneal(initial, peak, step / 30) if step < 30 else cos_anneal(peak, final, (step - 30) / 70)
        assert float(schedule(step)) == pytest.approx(expected, rel=1e-4)


def test_constant_and_serialization():
    schedule = build_schedule(ScheduleConfig(), learning_rate=3e-4, epochs=2, steps_per_epoch=5)
    np.testing.assert_allclose(rates(schedule, [0, 9, 50]), [3e-4] * 3, rtol=1e-6)
    again = PhasedSchedule.from_config(schedule.get_config())
    np.testing.assert_allclose(rates(again, [0, 9]), [3e-4] * 2, rtol=1e-6)
    with pytest.raises(ValueError, match="unknown phase shape"):
        PhasedSchedule([1], [1.0], [1.0], ["wiggly"])
