"""What every tfasc command shares: quiet native logs, and user errors as one line with exit status 2."""

from __future__ import annotations

import logging
import os
import sys
from typing import Callable


class _ExpectedRetracing(logging.Filter):
    """Drops TensorFlow's "triggered tf.function retracing" warning.

    Every stage builds new models (pruned, quantization-aware, export form) and each one's first
    ``predict`` traces its graph; TensorFlow counts traces per code location across all those models
    and calls it excessive. It is the expected one trace per model, not a bug to report.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


def quiet_tensorflow() -> None:
    """Silence TensorFlow's C++ start-up noise (CUDA / TensorRT probing) and the expected-retracing
    warning for a command-line run.

    Set by the commands, not by ``import tfasc``: a library import must not change a user's
    logging. A user's own ``TF_CPP_MIN_LOG_LEVEL`` wins; real failures still raise in Python.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    tf_logger = logging.getLogger("tensorflow")
    if not any(isinstance(f, _ExpectedRetracing) for f in tf_logger.filters):
        tf_logger.addFilter(_ExpectedRetracing())


def run_command(action: Callable[[], str]) -> int:
    """Run ``action`` (which returns what to print on success) and map user errors to exit code 2.

    A bad recipe, dataset metadata, audio file, loader option or run directory
    (:class:`tfasc.errors.UserError`) is the user's to fix: print the message on one line, not a
    traceback. Anything else is a bug and keeps its traceback.
    """
    quiet_tensorflow()
    from tfasc.errors import UserError

    try:
        message = action()
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(message)
    return 0
