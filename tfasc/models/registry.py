"""Model registry: a model family is a ``build`` function registered by name.

``tfasc.models.build(name, input_shape, num_classes, **kwargs)`` returns an uncompiled
``tf_keras.Model`` taking features laid out ``[batch, freq, time, channels]`` (or waveforms
``[batch, samples, channels]`` for waveform models) and returning class logits ``[batch, classes]``.
"""

from __future__ import annotations

import inspect
from typing import Callable

from tfasc.registry import Registry

_BUILDERS: Registry[Callable] = Registry("model")


def register(name: str) -> Callable[[Callable], Callable]:
    """Decorator registering a builder ``fn(input_shape, num_classes, **kwargs) -> tf_keras.Model``."""
    return _BUILDERS.register(name)


def available() -> tuple[str, ...]:
    """Names of every registered model, sorted."""
    return _BUILDERS.available()


def builder(name: str) -> Callable:
    """The build function registered as ``name``; an unknown name suggests the nearest one."""
    return _BUILDERS.get(name)


#: Builder arguments tfasc passes from the data, never from a recipe: ``sigmoid_outputs``, whether the
#: outputs are independent sigmoids or a softmax (:func:`tfasc.metrics.sigmoid_outputs`), for a model
#: whose output combines predictions (``wave_resnet``'s mean over levels).
DATA_ARGUMENTS = ("sigmoid_outputs",)


def build(name: str, input_shape, num_classes: int, *, sigmoid_outputs: bool | None = None, **kwargs):
    """Build the registered model ``name`` for ``input_shape`` (no batch axis) and ``num_classes``;
    ``sigmoid_outputs`` goes to builders that take it (others return logits either way)."""
    fn = builder(name)
    if sigmoid_outputs is not None and "sigmoid_outputs" in inspect.signature(fn).parameters:
        kwargs["sigmoid_outputs"] = bool(sigmoid_outputs)
    return fn(tuple(input_shape), int(num_classes), **kwargs)
