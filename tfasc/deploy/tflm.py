"""Run an int8 flatbuffer in the real TensorFlow Lite Micro interpreter, check it, size its arena.

Uses the ``tflite-micro`` Python package (``tflite_micro.python.tflite_micro.runtime``), the same
C++ kernels a Cortex-M build compiles (reference kernels). Inputs are int8 arrays in the model's
input layout (``[n, freq, time, channels]`` features or ``[n, samples, channels]`` waveforms),
invoked one example (``[1, ...]``) at a time.

TFLite Micro matches ``tf.lite.Interpreter`` bit for bit only against TFLite's reference kernels
(``OpResolverType.BUILTIN_REF``); the optimized kernels may differ by one LSB.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys

import numpy as np

from tfasc.deploy.convert import run_tflite_raw
from tfasc.deploy.native import captured_native_stderr

_ARENA_LINE = re.compile(rb"Arena allocation total (\d+) bytes")


def _runtime():
    # Imported lazily: the C extension is only needed when a model is actually run.
    from tflite_micro.python.tflite_micro import runtime

    return runtime


def _interpreter(tflite_bytes: bytes, arena_size: int | None):
    return _runtime().Interpreter.from_bytes(bytes(tflite_bytes), arena_size=arena_size)


def run_tflm(tflite_bytes: bytes, inputs: np.ndarray, *, arena_size: int | None = None) -> np.ndarray:
    """Invoke TFLite Micro once per example; ``inputs`` in the input tensor's dtype.

    Args:
        inputs: ``[n, ...]`` in the model's input layout (int8 for an int8 model).
        arena_size: tensor arena bytes; ``None`` lets the runtime use 10x the model size.

    Returns:
        ``[n, ...]`` raw outputs in the output tensor's dtype.

    Raises:
        RuntimeError: the arena is too small or an op is missing from TFLite Micro.
    """
    interpreter = _interpreter(tflite_bytes, arena_size)
    details = interpreter.get_input_details(0)
    inputs = np.asarray(inputs)
    if inputs.dtype != details["dtype"]:
        raise ValueError(f"inputs of dtype {inputs.dtype}: the model's input tensor is {np.dtype(details['dtype'])}")
    expected = tuple(int(d) for d in details["shape"][1:])
    if inputs.shape[1:] != expected:
        raise ValueError(f"inputs of shape {inputs.shape}: expected [n, {', '.join(map(str, expected))}]")
    outputs = []
    for example in inputs:
        interpreter.set_input(example[np.newaxis], 0)
        interpreter.invoke()
        outputs.append(np.array(interpreter.get_output(0))[0])
    return np.stack(outputs)


@dataclasses.dataclass(frozen=True, kw_only=True)
class BitExactResult:
    """TFLite Micro vs ``tf.lite.Interpreter`` (reference kernels) on the same int8 inputs.

    Attributes:
        examples: number of inputs compared.
        mismatched_examples: inputs whose outputs differ in at least one element.
        max_abs_diff: largest difference in output LSBs (0 when bit-exact).
        tflm_outputs, reference_outputs: the raw outputs, ``[n, ...]``.
    """

    examples: int
    mismatched_examples: int
    max_abs_diff: int
    tflm_outputs: np.ndarray
    reference_outputs: np.ndarray

    @property
    def bit_exact(self) -> bool:
        return self.mismatched_examples == 0

    def to_dict(self) -> dict[str, int | bool]:
        return {
            "examples": self.examples,
            "mismatched_examples": self.mismatched_examples,
            "max_abs_diff": self.max_abs_diff,
            "bit_exact": self.bit_exact,
        }


def output_differences(outputs: np.ndarray, reference: np.ndarray) -> tuple[int, int]:
    """``(examples whose outputs differ anywhere, largest difference in LSBs)`` of two ``[n, ...]`` int arrays."""
    diff = np.abs(outputs.astype(np.int64) - reference.astype(np.int64)).reshape(len(outputs), -1)
    if not diff.size:
        return 0, 0
    return int(np.count_nonzero(diff.max(axis=1) > 0)), int(diff.max())


def verify_bit_exact(tflite_bytes: bytes, inputs_int8: np.ndarray, *, arena_size: int | None = None) -> BitExactResult:
    """Compare TFLite Micro's outputs with ``tf.lite.Interpreter`` (``BUILTIN_REF``) bit for bit."""
    micro = run_tflm(tflite_bytes, inputs_int8, arena_size=arena_size)
    reference = run_tflite_raw(tflite_bytes, inputs_int8, reference_kernels=True)
    if micro.shape != reference.shape:
        raise ValueError(f"TFLite Micro output shape {micro.shape} differs from TFLite's {reference.shape}")
    mismatched, max_abs_diff = output_differences(micro, reference)
    return BitExactResult(
        examples=len(micro),
        mismatched_examples=mismatched,
        max_abs_diff=max_abs_diff,
        tflm_outputs=micro,
        reference_outputs=reference,
    )


def arena_bytes_used(tflite_bytes: bytes, *, arena_size: int | None = None) -> int:
    """Tensor-arena bytes TFLite Micro allocates for the model (RecordingMicroAllocator total).

    Runs one invoke on zeros (allocations are final after the first invoke), then reads
    "Arena allocation total N bytes" from the allocator's report on fd 2.
    """
    interpreter = _interpreter(tflite_bytes, arena_size)
    details = interpreter.get_input_details(0)
    interpreter.set_input(np.zeros(details["shape"], dtype=details["dtype"]), 0)
    interpreter.invoke()
    with captured_native_stderr() as captured:
        interpreter.print_allocations()
    text = captured[0]
    match = _ARENA_LINE.search(text)
    if match is None:
        raise RuntimeError(f"no arena total in TFLite Micro's allocation report: {text[-500:]!r}")
    return int(match.group(1))


_PROBE_SCRIPT = """
import sys
import numpy as np
from tflite_micro.python.tflite_micro import runtime
blob = sys.stdin.buffer.read()
try:
    interpreter = runtime.Interpreter.from_bytes(blob, arena_size=int(sys.argv[1]))
    details = interpreter.get_input_details(0)
    interpreter.set_input(np.zeros(details["shape"], dtype=details["dtype"]), 0)
    interpreter.invoke()
except RuntimeError:
    sys.exit(3)
"""


def _runs_with_arena(tflite_bytes: bytes, arena_size: int) -> bool:
    """Whether the model allocates and invokes with ``arena_size`` bytes.

    Probed in a child process: for some too-small sizes the TFLite Micro Python wrapper crashes
    (segmentation fault) instead of raising ``RuntimeError`` (measured with tflite-micro
    0.dev20261023182759, e.g. 1400 bytes for a model needing 2800), which would take the
    caller down with it. Any non-zero exit (error or crash) counts as "does not fit".
    """
    completed = subprocess.run(
        [sys.executable, "-c", _PROBE_SCRIPT, str(int(arena_size))],
        input=bytes(tflite_bytes),
        capture_output=True,
        timeout=120,
    )
    return completed.returncode == 0


def smallest_arena(tflite_bytes: bytes, *, low: int = 0, high: int | None = None, resolution: int = 16) -> int:
    """Smallest arena size (to ``resolution`` bytes) with which the model allocates and invokes.

    Bisection on ``arena_size``, each probe in a child process (a failing size raises
    ``RuntimeError`` in the runtime, or crashes it). ``high`` defaults to the recorded arena usage
    plus 256 bytes and is doubled until it works.
    """
    if resolution < 1:
        raise ValueError(f"resolution={resolution}: expected a positive number of bytes")
    if high is None:
        # Start from the recorded usage (measured in-process with a generous, safe arena).
        high = arena_bytes_used(tflite_bytes, arena_size=10 * len(tflite_bytes) + 65536) + 256
        low = max(low, high // 2)
        if _runs_with_arena(tflite_bytes, low):
            low = 0
    for _ in range(8):
        if _runs_with_arena(tflite_bytes, high):
            break
        low, high = high, 2 * high
    else:
        raise RuntimeError(f"the model does not run in TFLite Micro even with a {high}-byte arena")
    while high - low > resolution:
        middle = (low + high) // 2
        if _runs_with_arena(tflite_bytes, middle):
            high = middle
        else:
            low = middle
    return high
