"""One progress line per step on standard output, prefixed ``[tfasc]``."""

from __future__ import annotations


def log(message: str) -> None:
    print(f"[tfasc] {message}", flush=True)
