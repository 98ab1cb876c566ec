"""Fixtures for the device tests: the toolchain and the pinned sources, or a skip saying what is missing.

The sources come from ``$TFASC_DEVICE_SOURCES``, else ``../shared/third_party`` beside the repository
(where this project keeps them); the real FSDD recordings likewise from ``$TFASC_FSDD_ROOT`` or
``../shared/data/fsdd``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tfasc.device import toolchain

REPOSITORY = Path(__file__).resolve().parents[2]


def _first_existing(env: str, *candidates: Path) -> Path | None:
    if os.environ.get(env):
        return Path(os.environ[env])
    return next((path for path in candidates if path.is_dir()), None)


def shared_folder(*parts: str) -> list[Path]:
    """``../shared/<parts>`` beside this repository and beside its parent (a worktree or clone)."""
    return [REPOSITORY.parent.joinpath("shared", *parts), Path("/work/shared").joinpath(*parts)]


@pytest.fixture(scope="session")
def device_sources() -> Path:
    sources = _first_existing(toolchain.SOURCES_ENV, *shared_folder("third_party"))
    problem = toolchain.sources_problem(None if sources is None else sources.resolve())
    if problem:
        pytest.skip(problem)
    return sources.resolve()


@pytest.fixture(scope="session")
def device_toolchain(device_sources) -> toolchain.Toolchain:
    reason = toolchain.unavailable_reason(device_sources)
    if reason:
        pytest.skip(reason)
    return toolchain.find_toolchain(device_sources)


@pytest.fixture(scope="session")
def fsdd_root() -> Path:
    root = _first_existing("TFASC_FSDD_ROOT", *shared_folder("data", "fsdd"))
    if root is None or not (root / "recordings").is_dir():
        pytest.skip("no FSDD recordings: set $TFASC_FSDD_ROOT (a folder with recordings/*.wav)")
    return root
