"""What every tfasc command shares: user errors become one clear line and exit status 2."""

from __future__ import annotations

import sys
from typing import Callable

import tfasc  # noqa: F401


def run_command(action: Callable[[], str]) -> int:
    """Run ``action`` (which returns what to print on success) and map user errors to exit code 2.

    A bad recipe, bad dataset metadata or unreadable audio is the user's to fix: print the message,
    not a traceback. Anything else is a bug and keeps its traceback.
    """
    from tfasc.config import RecipeError
    from tfasc.data.datasets.base import DatasetError

    try:
        message = action()
    except (RecipeError, DatasetError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(message)
    return 0
