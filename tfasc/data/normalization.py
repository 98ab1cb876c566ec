"""Input normalization: the last step of the input path, shared by training, export, prediction
and the device bundle (one implementation, so all four compute the same numbers).

Modes (``features.normalization``), for a batch ``x`` of front-end outputs ``[n, freq, time,
channels]`` (log-mel) or ``[n, samples, channels]`` (waveform):

- ``none``: ``x`` as the front-end made it.
- ``global``: ``(x - m) / s`` with one mean and standard deviation over every value of the
  training split.
- ``per_frequency``: ``m``, ``s`` per frequency bin (axis 1) over the training split's clips,
  frames and channels (2-D features: log-mel, scalogram).
- ``per_clip``: ``m``, ``s`` of each clip over all its own values (instance normalization; removes
  the recording's level, i.e. the gain of a speaker's or device's channel).
- ``per_clip_frequency``: ``m``, ``s`` of each clip per frequency bin over its frames and channels:
  cepstral mean and variance normalization of speech recognition (removes a stationary channel
  response, a microphone's or room's colouring; 2-D features only).

With ``features.segment_frames`` every model input is a segment of a clip's frames
(:mod:`tfasc.data.segments`): the fitted modes are fitted on the segments (the dropped remainder
frames do not count), and the per-clip modes use each *segment's* own statistics, since the device
normalizes the one segment it feeds the model (``input_path.h`` is laid out per segment).

Arithmetic (what the C bundle reproduces, :func:`c_header`): statistics are accumulated in float64
in two passes (mean, then the mean squared deviation), ``s = sqrt(max(var, VARIANCE_FLOOR))``, and
the output is ``float32(x - float32(m)) * float32(1 / s)`` in float32, so silent or constant clips
stay finite.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

MODES = ("none", "global", "per_frequency", "per_clip", "per_clip_frequency")
#: Modes whose statistics come from the training split (the others need none, or are per clip).
FITTED_MODES = ("global", "per_frequency")
#: Modes whose statistics are each clip's own (computed on the device too).
CLIP_MODES = ("per_clip", "per_clip_frequency")
#: Modes that need a frequency axis (log-mel front-ends).
FREQUENCY_MODES = ("per_frequency", "per_clip_frequency")
#: Floor of the variance: a silent or constant clip (or bin) is centred, not divided by zero.
VARIANCE_FLOOR = 1e-10


class NormalizationError(ValueError):
    """Statistics that do not fit a mode or the features (the message names what and why)."""


def _stat_axes(mode: str, ndim: int) -> tuple[int, ...]:
    """Axes of a batch ``[n, ...]`` of rank ``ndim`` that ``mode``'s statistics reduce over."""
    if mode == "per_clip":
        return tuple(range(1, ndim))
    if mode == "per_clip_frequency":
        return tuple(range(2, ndim))
    raise NormalizationError(f"mode {mode!r} has no per-clip statistics")


def _scale(std: np.ndarray) -> np.ndarray:
    return (1.0 / std).astype(np.float32)


@dataclass(frozen=True)
class Normalization:
    """One mode and, for fitted modes, its statistics (float64; a scalar for ``global``, one value
    per frequency bin for ``per_frequency``, empty otherwise)."""

    mode: str = "none"
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()

    def __post_init__(self):
        if self.mode not in MODES:
            raise NormalizationError(f"normalization mode {self.mode!r}: expected one of {', '.join(MODES)}")
        expected = {"global": 1}.get(self.mode)
        if self.mode in FITTED_MODES:
            if len(self.mean) != len(self.std) or not self.mean or (expected and len(self.mean) != expected):
                raise NormalizationError(
                    f"normalization {self.mode}: expected {expected or 'one per frequency bin'} mean and std "
                    f"values, got {len(self.mean)} and {len(self.std)}")
            values = (*self.mean, *self.std)
            if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values) or min(self.std) <= 0:
                raise NormalizationError(f"normalization {self.mode}: expected finite means and positive standard "
                                         f"deviations, got mean {list(self.mean)[:4]} std {list(self.std)[:4]}")
        elif self.mean or self.std:
            raise NormalizationError(f"normalization {self.mode}: takes no training statistics")

    # -- applying ------------------------------------------------------------------------------

    def _fitted(self, ndim: int) -> tuple[np.ndarray, np.ndarray]:
        mean, std = np.asarray(self.mean, np.float64), np.asarray(self.std, np.float64)
        if self.mode == "per_frequency":  # [freq] -> [1, freq, 1, ...]
            shape = (1, len(mean)) + (1,) * (ndim - 2)
            mean, std = mean.reshape(shape), std.reshape(shape)
        else:
            mean, std = mean.reshape(()), std.reshape(())
        return mean, std

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Normalize a batch ``x [n, ...]``; float32 out."""
        x = np.asarray(x, np.float32)
        if self.mode == "none":
            return x
        if self.mode in FITTED_MODES:
            mean, std = self._fitted(x.ndim)
        else:
            axes = _stat_axes(self.mode, x.ndim)
            wide = x.astype(np.float64)
            mean = wide.mean(axis=axes, keepdims=True)
            variance = np.square(wide - mean).mean(axis=axes, keepdims=True)
            std = np.sqrt(np.maximum(variance, VARIANCE_FLOOR))
        return (x - mean.astype(np.float32)) * _scale(std)

    # -- recording -----------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> "Normalization":
        """The inverse of :meth:`to_json`; :class:`NormalizationError` for anything else."""
        if not isinstance(value, Mapping) or not isinstance(value.get("mode"), str):
            raise NormalizationError(f"expected a mapping with a normalization mode, got {value!r:.80}")
        mean, std = value.get("mean", []), value.get("std", [])
        if not isinstance(mean, list) or not isinstance(std, list):
            raise NormalizationError("expected lists of mean and std values")
        return cls(value["mode"], tuple(mean), tuple(std))

    def matches(self, other: "Normalization") -> bool:
        """Same mode and statistics within float rounding (a recomputation over the same data)."""
        return (self.mode == other.mode and len(self.mean) == len(other.mean) and all(
            math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
            for a, b in zip((*self.mean, *self.std), (*other.mean, *other.std))))

    def describe(self) -> str:
        if self.mode == "global":
            return f"global (mean {self.mean[0]:.4g}, std {self.std[0]:.4g})"
        if self.mode == "per_frequency":
            return f"per_frequency ({len(self.mean)} bins)"
        return self.mode


def fit_normalization(mode: str, features: np.ndarray, *, chunk: int = 256) -> Normalization:
    """The statistics of ``mode`` over a training split ``features [n, ...]`` (read in chunks, so a
    memory-mapped cache is never loaded whole)."""
    if mode not in FITTED_MODES:
        return Normalization(mode)
    if len(features) == 0:
        raise NormalizationError("cannot fit a normalization to an empty feature set")
    axes = (0,) if mode == "global" else (0, *range(2, features.ndim))
    reduce = lambda block: block.sum(axis=axes) if mode == "per_frequency" else block.sum()
    count = features.size if mode == "global" else features.size // features.shape[1]
    total = 0.0
    for start in range(0, len(features), chunk):
        total = total + reduce(np.asarray(features[start : start + chunk], np.float64))
    mean = np.asarray(total / count)
    shape = (1, -1) + (1,) * (features.ndim - 2) if mode == "per_frequency" else ()
    squares = 0.0
    for start in range(0, len(features), chunk):
        block = np.asarray(features[start : start + chunk], np.float64)
        squares = squares + reduce(np.square(block - mean.reshape(shape)))
    std = np.sqrt(np.maximum(np.asarray(squares / count), VARIANCE_FLOOR))
    return Normalization(mode, tuple(float(v) for v in np.ravel(mean)), tuple(float(v) for v in np.ravel(std)))


# ------------------------------------------------------------------------------------------------
# The device side: the same arithmetic in C, with the int8 input quantization
# ------------------------------------------------------------------------------------------------

_CLIP_STATS = [
    "// Mean and 1 / std of n values, two passes in double (as numpy).",
    "static inline void tfasc_clip_stats(const float* x, int n, float* mean, float* scale) {",
    "  double sum = 0.0, squares = 0.0;",
    "  for (int i = 0; i < n; ++i) sum += x[i];",
    "  double m = sum / n;",
    "  for (int i = 0; i < n; ++i) { double d = x[i] - m; squares += d * d; }",
    "  double variance = squares / n;",
    "  if (variance < kTfascVarianceFloor) variance = kTfascVarianceFloor;",
    "  *mean = (float)m;",
    "  *scale = (float)(1.0 / sqrt(variance));",
    "}",
    "",
]


def _c_floats(values) -> str:
    return ", ".join(f"{float(np.float32(v))!r}f" for v in values)


def c_header(normalization: Normalization, feature_shape: tuple[int, ...], input_scale: float,
             input_zero_point: int) -> str:
    """``input_path.h``: ``tfasc_features_to_input(const float* x, int8_t* q)`` for one clip laid out
    like the model input (``feature_shape``, no batch axis; row-major): the normalization above,
    then ``q = clamp(round_half_away(y / input_scale) + input_zero_point, -128, 127)`` exactly as
    tfasc quantizes the input tensor (:meth:`tfasc.deploy.convert.TensorQuantization.quantize`)."""
    shape = [int(d) for d in feature_shape]
    size = int(np.prod(shape))
    bins = shape[0]
    inner = size // bins  # values per frequency bin (time x channels) of a log-mel clip
    fitted = normalization.mode in FITTED_MODES
    mean = np.float32(normalization.mean) if fitted else np.zeros(1, np.float32)
    scale = _scale(np.asarray(normalization.std)) if fitted else np.ones(1, np.float32)
    lines = [
        "// Generated by tfasc.data.normalization: the model's input path after the front-end.",
        f"// Normalization: {normalization.mode} (see tfasc.data.normalization); features laid out",
        f"// {shape} row-major, like the input tensor without its batch axis.",
        "#ifndef TFASC_INPUT_PATH_H_",
        "#define TFASC_INPUT_PATH_H_",
        "",
        "#include <math.h>",
        "#include <stdint.h>",
        "",
        f"#define TFASC_NORMALIZATION_{normalization.mode.upper()} 1",
        f"enum {{ kTfascInputValues = {size}, kTfascFrequencyBins = {bins}, kTfascValuesPerBin = {inner} }};",
        f"static const float kTfascInputScale = {float(input_scale)!r}f;",
        f"static const int kTfascInputZeroPoint = {int(input_zero_point)};",
        *([f"static const float kTfascNormMean[{len(mean)}] = {{{_c_floats(mean)}}};",
           f"static const float kTfascNormScale[{len(scale)}] = {{{_c_floats(scale)}}};  // 1 / std"]
          if fitted else []),
        *([f"static const double kTfascVarianceFloor = {VARIANCE_FLOOR!r};"]
          if normalization.mode in CLIP_MODES else []),
        "",
        "static inline int8_t tfasc_quantize_input(float y) {",
        "  // round half away from zero in double, like the reference quantizer",
        "  double scaled = (double)y / (double)kTfascInputScale;",
        "  double q = (scaled < 0 ? -floor(-scaled + 0.5) : floor(scaled + 0.5)) + kTfascInputZeroPoint;",
        "  return (int8_t)(q < -128 ? -128 : (q > 127 ? 127 : q));",
        "}",
        "",
        *(_CLIP_STATS if normalization.mode in CLIP_MODES else []),
        "static inline void tfasc_features_to_input(const float* x, int8_t* q) {",
    ]
    body = {
        "none": ["  for (int i = 0; i < kTfascInputValues; ++i) q[i] = tfasc_quantize_input(x[i]);"],
        "global": ["  for (int i = 0; i < kTfascInputValues; ++i)",
                   "    q[i] = tfasc_quantize_input((x[i] - kTfascNormMean[0]) * kTfascNormScale[0]);"],
        "per_frequency": ["  for (int i = 0; i < kTfascInputValues; ++i) {",
                          "    int bin = i / kTfascValuesPerBin;",
                          "    q[i] = tfasc_quantize_input((x[i] - kTfascNormMean[bin]) * kTfascNormScale[bin]);",
                          "  }"],
        "per_clip": ["  float mean, scale;",
                     "  tfasc_clip_stats(x, kTfascInputValues, &mean, &scale);",
                     "  for (int i = 0; i < kTfascInputValues; ++i) q[i] = tfasc_quantize_input((x[i] - mean) * scale);"],
        "per_clip_frequency": ["  for (int bin = 0; bin < kTfascFrequencyBins; ++bin) {",
                               "    const float* row = x + bin * kTfascValuesPerBin;",
                               "    float mean, scale;",
                               "    tfasc_clip_stats(row, kTfascValuesPerBin, &mean, &scale);",
                               "    for (int i = 0; i < kTfascValuesPerBin; ++i)",
                               "      q[bin * kTfascValuesPerBin + i] = tfasc_quantize_input((row[i] - mean) * scale);",
                               "  }"],
    }[normalization.mode]
    return "\n".join([*lines, *body, "}", "", "#endif  // TFASC_INPUT_PATH_H_", ""])
