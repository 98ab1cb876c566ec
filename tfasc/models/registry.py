"""Model registry: a model family is a ``build`` function registered by name.

``tfasc.models.build(name, input_shape, num_classes, **kwargs)`` returns an uncompiled
``tf_keras.Model`` taking features laid out ``[batch, freq, time, channels]`` (or waveforms
``[batch, samples, channels]`` for waveform models) and returning class logits ``[batch, classes]``.
"""

from __future__ import annotations

import difflib
from typing import Callable

_BUILDERS: dict[str, Callable] = {}


def register(name: str) -> Callable[[Callable], Callable]:
    """Decorator registering a builder ``fn(input_shape, num_classes, **kwargs) -> tf_keras.Model``."""

    def decorator(fn: Callable) -> Callable:
        if name in _BUILDERS:
            raise ValueError(f"model name {name!r} is already registered by {_BUILDERS[name]!r}")
        _BUILDERS[name] = fn
        return fn

    return decorator


def available() -> tuple[str, ...]:
    """Names of every registered model, sorted."""
    return tuple(sorted(_BUILDERS))


def builder(name: str) -> Callable:
    """The build function registered as ``name``; an unknown name suggests the nearest one."""
    if name not in _BUILDERS:
        close = difflib.get_close_matches(name, _BUILDERS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown model {name!r}{hint} Available: {', '.join(available())}")
    return _BUILDERS[name]


def build(name: str, input_shape, num_classes: int, **kwargs):
    """Build the registered model ``name`` for ``input_shape`` (no batch axis) and ``num_classes``."""
    return builder(name)(tuple(input_shape), int(num_classes), **kwargs)
