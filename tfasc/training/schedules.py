"""Learning-rate schedules the papers use, all expressed as phases over optimizer steps.

Every named schedule (piecewise constant, exponential decay, linear decay, one-cycle) becomes a list
of :class:`Phase` s, and one serializable :class:`PhasedSchedule` evaluates any list. The DCASE 2020 1B
report's schedule (entry Chang_QTI_task1b, Sec. 6.1: 1e-4 for 50 epochs, exponential 1e-4 → 1e-6
over 200, 1e-6 for 100) is three phases.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import tfasc  # noqa: F401
import tensorflow as tf
import tf_keras as keras

SHAPES = ("constant", "linear", "exponential", "cosine")


@dataclass(frozen=True)
class Phase:
    """``steps`` optimizer steps going from ``start`` to ``end`` with the given ``shape``."""

    steps: int
    start: float
    end: float
    shape: str = "constant"


def phases_for(schedule, *, learning_rate: float, epochs: int, steps_per_epoch: int) -> list[Phase]:
    """Translate a :class:`tfasc.config.schema.ScheduleConfig` into phases measured in steps."""
    total = epochs * steps_per_epoch
    lr = learning_rate
    name = schedule.name
    if name == "constant":
        return [Phase(total, lr, lr)]
    if name == "piecewise_constant":
        edges = [0, *schedule.boundaries, max(epochs, schedule.boundaries[-1] if schedule.boundaries else 0)]
        return [
            Phase((b - a) * steps_per_epoch, v, v)
            for a, b, v in zip(edges[:-1], edges[1:], schedule.values)
            if b > a
        ] or [Phase(total, schedule.values[0], schedule.values[0])]
    if name in ("exponential_decay", "linear_decay"):
        decay = (schedule.decay_epochs or epochs) * steps_per_epoch
        shape = "exponential" if name == "exponential_decay" else "linear"
        return [Phase(decay, lr, schedule.final_learning_rate, shape)]
    if name == "one_cycle":
        # Smith & Topin (2019) as in PyTorch's OneCycleLR: cosine rise to the peak, cosine fall.
        rise = max(1, round(schedule.warmup_fraction * total))
        initial = lr / schedule.div_factor
        return [
            Phase(rise, initial, lr, "cosine"),
            Phase(max(1, total - rise), lr, initial / schedule.final_div_factor, "cosine"),
        ]
    if name == "phases":
        return [
            Phase(p.epochs * steps_per_epoch, p.start, p.start if p.end is None else p.end, p.shape)
            for p in schedule.phases
        ]
    raise ValueError(f"unknown schedule {name!r}")


@keras.saving.register_keras_serializable(package="tfasc")
class PhasedSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Learning rate as a function of the optimizer step, phase after phase.

    Within a phase of ``n`` steps at fraction ``t = step / n``: constant keeps ``start``; linear
    interpolates; exponential interpolates geometrically (``start · (end/start)^t``); cosine follows
    ``end + (start − end)(1 + cos πt)/2``. After the last phase the last ``end`` is held.
    """

    def __init__(self, steps, starts, ends, shapes):
        if not (len(steps) == len(starts) == len(ends) == len(shapes)) or not steps:
            raise ValueError("PhasedSchedule needs equally long, non-empty steps/starts/ends/shapes")
        for shape in shapes:
            if shape not in SHAPES:
                raise ValueError(f"unknown phase shape {shape!r}; expected one of {SHAPES}")
        self.steps = [int(s) for s in steps]
        self.starts = [float(v) for v in starts]
        self.ends = [float(v) for v in ends]
        self.shapes = list(shapes)

    @classmethod
    def from_phases(cls, phases: list[Phase]) -> "PhasedSchedule":
        return cls([p.steps for p in phases], [p.start for p in phases], [p.end for p in phases], [p.shape for p in phases])

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        rate = tf.constant(self.ends[-1], tf.float32)
        offset = float(sum(self.steps))
        # Walk backwards so the earliest phase containing ``step`` wins.
        for n, start, end, shape in reversed(list(zip(self.steps, self.starts, self.ends, self.shapes))):
            offset -= n
            t = tf.clip_by_value((step - offset) / max(n, 1), 0.0, 1.0)
            if shape == "constant":
                value = tf.constant(start, tf.float32)
            elif shape == "linear":
                value = start + (end - start) * t
            elif shape == "exponential":
                value = start * tf.pow(end / start, t)
            else:
                value = end + (start - end) * 0.5 * (1.0 + tf.cos(math.pi * t))
            rate = tf.where(step < offset + n, value, rate)
        return rate

    def get_config(self):
        return {"steps": self.steps, "starts": self.starts, "ends": self.ends, "shapes": self.shapes}


def build_schedule(schedule, *, learning_rate: float, epochs: int, steps_per_epoch: int) -> PhasedSchedule:
    """The :class:`PhasedSchedule` for a recipe's schedule section."""
    return PhasedSchedule.from_phases(
        phases_for(schedule, learning_rate=learning_rate, epochs=epochs, steps_per_epoch=steps_per_epoch)
    )


def build_optimizer(training, *, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """Adam or SGD with momentum (decoupled weight decay optional) on the recipe's schedule.

    With ``training.ema_decay`` the optimizer also keeps Keras' exponential moving average of the
    trainable weights (``use_ema``): after every step ``ema = decay · ema + (1 − decay) · w``, starting
    from the initial weights, no warm-up or bias correction (ERANN paper, Eq. 6). The averages are
    optimizer variables, so the per-epoch backups hold them; :func:`tfasc.training.loop.fit`
    evaluates with them and leaves them in the model at the end.
    """
    rate = build_schedule(
        training.schedule, learning_rate=training.learning_rate, epochs=training.epochs, steps_per_epoch=steps_per_epoch
    )
    decay = training.weight_decay or None
    ema = {"use_ema": True, "ema_momentum": training.ema_decay} if training.ema_decay is not None else {}
    if training.optimizer == "adam":
        if decay:
            return keras.optimizers.AdamW(learning_rate=rate, weight_decay=decay, **ema)
        return keras.optimizers.Adam(learning_rate=rate, **ema)
    return keras.optimizers.SGD(
        learning_rate=rate, momentum=training.momentum, nesterov=training.nesterov, weight_decay=decay, **ema
    )
