"""The one base class of every mistake a user can make and fix.

A bad recipe, dataset metadata, audio file, loader option or run directory raises a subclass of
:class:`UserError`; the command-line tools print its message on one line and exit with status 2
(:func:`tfasc.cli.run_command`). Anything else is a bug in tfasc and keeps its traceback.
"""

from __future__ import annotations


class UserError(ValueError):
    """Input the user can fix; the message names the file, key or value and what was expected."""
