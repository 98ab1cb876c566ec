"""What a model will cost on the device before it is trained: int8 flash, tensor arena and MACs.

The architecture search (``tfasc.search``) rejects candidates by these numbers. They come from the
real toolchain, not formulas: the untrained model's export form (``tfasc.compress.export_form``) is
converted to a full-integer int8 flatbuffer with random representative data (post-training
quantization; weights and ops are what QAT would produce, ranges are not), and TFLite Micro's
allocator reports the arena. Flash is the flatbuffer's size, what the device stores; the arena is
TFLite Micro's "Arena allocation total" on the host (the device's may differ by kernel
implementation, ``../shared/notes/cortex-m-emulation.md``).

Measured against the QAT export of the same architecture (a searched FSDD model, README): the
flatbuffer came out 9 % larger (62,704 vs 57,080 bytes), the arena 0.3 % larger. Converting through
TF-MOT QAT here would match it, at three times the cost per candidate (38 s vs 12.5 s measured).
"""

from __future__ import annotations

import dataclasses

import numpy as np

import tfasc  # noqa: F401
import tf_keras as keras

from tfasc.compress.export_form import to_export_form
from tfasc.deploy import convert, flatbuffer, tflm
from tfasc.deploy.profile import count_macs


@dataclasses.dataclass(frozen=True)
class DeviceEstimate:
    """``flash_bytes``: int8 flatbuffer size; ``arena_bytes``: TFLite Micro arena; ``macs``: per inference."""

    flash_bytes: int
    arena_bytes: int
    macs: int
    tflite_int8: bytes = dataclasses.field(repr=False, compare=False)

    def to_dict(self) -> dict[str, int]:
        return {"flash_bytes": self.flash_bytes, "arena_bytes": self.arena_bytes, "macs": self.macs}


def random_inputs(input_shape, examples: int, seed: int = 0) -> np.ndarray:
    """Standard-normal ``[examples, *input_shape]`` float32 (the models see normalized features)."""
    return np.random.default_rng(seed).standard_normal((examples, *input_shape)).astype(np.float32)


def estimate_int8(model: keras.Model, *, examples: int = 4, seed: int = 0) -> DeviceEstimate:
    """Convert ``model`` (float, untrained is fine) to int8 and measure flash, arena and MACs.

    Raises ``tfasc.deploy.flatbuffer`` / converter errors when the model does not convert to
    builtin int8 ops: such a model cannot be deployed, whatever its accuracy.
    """
    exported = to_export_form(model)
    data = random_inputs(tuple(model.inputs[0].shape[1:]), examples, seed)
    tflite = convert.to_tflite(exported, kind="int8", representative_data=[x[np.newaxis] for x in data])
    flatbuffer.check_builtin_only(tflite)
    arena = _arena_bytes(tflite)
    return DeviceEstimate(flash_bytes=len(tflite), arena_bytes=arena, macs=count_macs(model).macs, tflite_int8=tflite)


#: Largest arena tried (activations of a 128x128 input with 192 channels need megabytes).
MAX_ARENA_BYTES = 1 << 30


def _arena_bytes(tflite: bytes) -> int:
    """TFLite Micro's arena total, given an arena that grows x4 until the model allocates."""
    size = 10 * len(tflite) + (1 << 20)
    while True:
        try:
            return tflm.arena_bytes_used(tflite, arena_size=size)
        except RuntimeError:  # "TFLM failed to allocate tensors": too small an arena
            if size >= MAX_ARENA_BYTES:
                raise
            size *= 4
