"""Capture what native code (TFLite converter, interpreters, TFLite Micro) prints to fd 2.

Their C++ logging bypasses Python's ``sys.stderr``: the converter's absl warnings, the
interpreter's delegate notice and TFLite Micro's allocation report. Capturing file descriptor 2
lets tfasc read that output (the arena report) and keep a CLI user's console clean, while a
failure still shows everything that was printed.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile


@contextlib.contextmanager
def captured_native_stderr():
    """Redirect fd 2 into a temporary file; yields a list that holds the captured bytes on exit."""
    sys.stderr.flush()
    with tempfile.TemporaryFile() as sink:
        saved = os.dup(2)
        captured: list[bytes] = []
        try:
            os.dup2(sink.fileno(), 2)
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.append(sink.read())


@contextlib.contextmanager
def quiet_native_stderr():
    """Hide native stderr output unless the block raises, in which case it is written out."""
    failed = False
    with captured_native_stderr() as captured:
        try:
            yield
        except BaseException:
            failed = True
            raise
    if failed and captured and captured[0]:
        sys.stderr.write(captured[0].decode(errors="replace"))
