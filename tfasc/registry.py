"""A name → component table with nearest-name suggestions: model families and front-ends use it."""

from __future__ import annotations

import difflib
from typing import Callable, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Components of one ``kind`` (e.g. "model", "front-end") registered by name."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering its target under ``name``; a name is registered once."""

        def decorator(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} name {name!r} is already registered by {self._entries[name]!r}")
            self._entries[name] = entry
            return entry

        return decorator

    def available(self) -> tuple[str, ...]:
        """Every registered name, sorted."""
        return tuple(sorted(self._entries))

    def get(self, name: str) -> T:
        """The entry registered as ``name``; an unknown name is a ``ValueError`` suggesting the nearest."""
        if name not in self._entries:
            close = difflib.get_close_matches(name, self._entries, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"unknown {self.kind} {name!r}{hint} Available: {', '.join(self.available())}")
        return self._entries[name]
