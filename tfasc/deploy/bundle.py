"""Deployment bundle for a Cortex-M: the int8 flatbuffer as a C array, its op resolver, its config.

``write_bundle`` writes into ``out_dir``::

    model_int8.tflite   the flatbuffer
    model_data.h/.cc    alignas(16) const unsigned char g_model_data[]; g_model_data_len
    ops.h               tflite::MicroMutableOpResolver<N> with exactly the ops the model uses
    model_config.h      arena size, input shape, input/output scale and zero point, class names,
                        how logits become probabilities (softmax, or a sigmoid per class), the
                        segmenting of a clip's features (if any), and the front end the model was
                        trained with (see below)
    input_path.h        (given a normalization) ``tfasc_features_to_input``: the training input
                        normalization and the int8 input quantization in C
                        (:func:`tfasc.data.normalization.c_header`)
    tfasc_model.h/.cc   the entry points (``tfasc.deploy.c_model``): TfascModelRun for one int8 input and,
                        where the bundle has a PCM path, TfascClassifyPcm from int16 PCM to a label
    frontend.h/.c       (log-mel) the front end in C with CMSIS-DSP, tables from the training
                        parameters (:mod:`tfasc.device.frontend`)
    README.md           what the device pays, the input and output, tfasc_model.cc verbatim and, after
                        the emulated-device check (:mod:`tfasc.device`), the figures per core

The front end is a mapping with a ``"kind"`` key:

- ``"log_mel"``: the input is ``[1, freq, time, channels]`` log-mel features; every other key
  (sample rate, clip seconds, audio channels, the log-mel parameters, standardize mean/std) is
  written as a ``kFeature*`` constant.
- ``"waveform"``: the input is ``[1, samples, channels]`` audio; the header states the sample rate,
  the clip length in samples and seconds, the channels, the standardization and how to turn int16
  PCM into the int8 input (keys ``sample_rate``, ``clip_seconds``, ``audio_channels`` and optional
  ``standardize_mean`` / ``standardize_std`` and ``normalization``). Normalized ``"per_clip"`` (AclNet),
  the device computes each clip's mean and standard deviation itself with ``input_path.h``: the header
  states that arithmetic from int16 PCM and why it is not part of the int8 graph.

With segments (``features.segment_frames: N``, Wu & Lee Sec. 3.1/4.2) the model's input is one
segment ``[1, freq, N, channels]``: the device computes a clip's features ``[freq, frames, channels]``,
cuts them into ``frames // N`` non-overlapping segments of ``N`` frames (dropping the remainder), runs
the int8 model on each (``input_path.h`` normalizes each segment on its own) and averages the
segments' probabilities (softmax, or the sigmoid outputs of a model trained with binary
cross-entropy); ``model_config.h`` states ``kSegmentFrames``, ``kSegmentsPerClip`` and
``kClipFrames`` and the README shows the loop.

Atomic: everything is written into a temporary directory beside ``out_dir`` and renamed into
place; an old bundle is replaced only once the new one is complete.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from tfasc.data.normalization import VARIANCE_FLOOR
from tfasc.files import atomic_path

#: TFLite builtin operator -> ``tflite::MicroMutableOpResolver`` method adding it.
TFLM_RESOLVER_METHODS: dict[str, str] = {
    "ABS": "AddAbs",
    "ADD": "AddAdd",
    "ADD_N": "AddAddN",
    "ARG_MAX": "AddArgMax",
    "ARG_MIN": "AddArgMin",
    "AVERAGE_POOL_2D": "AddAveragePool2D",
    "BATCH_MATMUL": "AddBatchMatMul",
    "BATCH_TO_SPACE_ND": "AddBatchToSpaceNd",
    "CAST": "AddCast",
    "CEIL": "AddCeil",
    "CONCATENATION": "AddConcatenation",
    "CONV_2D": "AddConv2D",
    "COS": "AddCos",
    "CUMSUM": "AddCumSum",
    "DEPTH_TO_SPACE": "AddDepthToSpace",
    "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D",
    "DEQUANTIZE": "AddDequantize",
    "DIV": "AddDiv",
    "ELU": "AddElu",
    "EQUAL": "AddEqual",
    "EXP": "AddExp",
    "EXPAND_DIMS": "AddExpandDims",
    "FILL": "AddFill",
    "FLOOR": "AddFloor",
    "FLOOR_DIV": "AddFloorDiv",
    "FLOOR_MOD": "AddFloorMod",
    "FULLY_CONNECTED": "AddFullyConnected",
    "GATHER": "AddGather",
    "GATHER_ND": "AddGatherNd",
    "GREATER": "AddGreater",
    "GREATER_EQUAL": "AddGreaterEqual",
    "HARD_SWISH": "AddHardSwish",
    "L2_NORMALIZATION": "AddL2Normalization",
    "L2_POOL_2D": "AddL2Pool2D",
    "LEAKY_RELU": "AddLeakyRelu",
    "LESS": "AddLess",
    "LESS_EQUAL": "AddLessEqual",
    "LOG": "AddLog",
    "LOG_SOFTMAX": "AddLogSoftmax",
    "LOGICAL_AND": "AddLogicalAnd",
    "LOGICAL_NOT": "AddLogicalNot",
    "LOGICAL_OR": "AddLogicalOr",
    "LOGISTIC": "AddLogistic",
    "MAX_POOL_2D": "AddMaxPool2D",
    "MAXIMUM": "AddMaximum",
    "MEAN": "AddMean",
    "MINIMUM": "AddMinimum",
    "MUL": "AddMul",
    "NEG": "AddNeg",
    "NOT_EQUAL": "AddNotEqual",
    "PACK": "AddPack",
    "PAD": "AddPad",
    "PADV2": "AddPadV2",
    "PRELU": "AddPrelu",
    "QUANTIZE": "AddQuantize",
    "REDUCE_MAX": "AddReduceMax",
    "RELU": "AddRelu",
    "RELU6": "AddRelu6",
    "RESHAPE": "AddReshape",
    "RESIZE_BILINEAR": "AddResizeBilinear",
    "RESIZE_NEAREST_NEIGHBOR": "AddResizeNearestNeighbor",
    "ROUND": "AddRound",
    "RSQRT": "AddRsqrt",
    "SELECT_V2": "AddSelectV2",
    "SHAPE": "AddShape",
    "SIN": "AddSin",
    "SOFTMAX": "AddSoftmax",
    "SPACE_TO_BATCH_ND": "AddSpaceToBatchNd",
    "SPACE_TO_DEPTH": "AddSpaceToDepth",
    "SPLIT": "AddSplit",
    "SPLIT_V": "AddSplitV",
    "SQRT": "AddSqrt",
    "SQUARE": "AddSquare",
    "SQUARED_DIFFERENCE": "AddSquaredDifference",
    "SQUEEZE": "AddSqueeze",
    "STRIDED_SLICE": "AddStridedSlice",
    "SUB": "AddSub",
    "SUM": "AddSum",
    "SVDF": "AddSvdf",
    "TANH": "AddTanh",
    "TRANSPOSE": "AddTranspose",
    "TRANSPOSE_CONV": "AddTransposeConv",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM",
    "UNPACK": "AddUnpack",
    "ZEROS_LIKE": "AddZerosLike",
}

MODEL_FILE = "model_int8.tflite"
BUNDLE_FILES = (MODEL_FILE, "model_data.h", "model_data.cc", "ops.h", "model_config.h", "tfasc_model.h",
                "tfasc_model.cc", "README.md")


def resolver_methods(ops: Sequence[str]) -> list[str]:
    """The resolver method for each op (sorted, de-duplicated op names).

    Raises:
        ValueError: an op has no known TFLite Micro resolver method (e.g. a custom op).
    """
    unique = sorted(set(ops))
    unknown = [op for op in unique if op not in TFLM_RESOLVER_METHODS]
    if unknown:
        raise ValueError(
            f"ops {unknown} have no TFLite Micro resolver method known to tfasc (known: "
            f"{len(TFLM_RESOLVER_METHODS)} builtins, e.g. CONV_2D -> AddConv2D); the model cannot "
            "be bundled for TFLite Micro as is"
        )
    return [TFLM_RESOLVER_METHODS[op] for op in unique]


def c_array_source(data: bytes, *, header: str = "model_data.h", bytes_per_line: int = 12) -> str:
    """``model_data.cc``: the bytes as a 16-byte aligned C array plus its length."""
    lines = []
    for start in range(0, len(data), bytes_per_line):
        chunk = data[start: start + bytes_per_line]
        lines.append("    " + ", ".join(f"0x{b:02x}" for b in chunk) + ",")
    body = "\n".join(lines)
    return (
        "// Generated by tfasc.deploy.bundle; the int8 TFLite flatbuffer (model_int8.tflite).\n"
        f'#include "{header}"\n\n'
        "// TFLite Micro reads tensors in place: keep the flatbuffer 16-byte aligned.\n"
        "alignas(16) const unsigned char g_model_data[] = {\n"
        f"{body}\n"
        "};\n"
        f"const unsigned int g_model_data_len = {len(data)};\n"
    )


def c_array_header(guard: str = "TFASC_MODEL_DATA_H_") -> str:
    return (
        "// Generated by tfasc.deploy.bundle.\n"
        f"#ifndef {guard}\n#define {guard}\n\n"
        "extern const unsigned char g_model_data[];\n"
        "extern const unsigned int g_model_data_len;\n\n"
        f"#endif  // {guard}\n"
    )


def ops_header(ops: Sequence[str]) -> str:
    """``ops.h``: a resolver type sized to the model and a function registering its ops."""
    methods = resolver_methods(ops)
    adds = "\n".join(
        f"  if (resolver.{m}() != kTfLiteOk) return kTfLiteError;  // {op}"
        for op, m in zip(sorted(set(ops)), methods)
    )
    return (
        "// Generated by tfasc.deploy.bundle: exactly the ops model_int8.tflite uses.\n"
        "#ifndef TFASC_OPS_H_\n#define TFASC_OPS_H_\n\n"
        '#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"\n\n'
        f"constexpr int kTfascOpCount = {len(methods)};\n"
        "using TfascOpResolver = tflite::MicroMutableOpResolver<kTfascOpCount>;\n\n"
        "inline TfLiteStatus TfascRegisterOps(TfascOpResolver& resolver) {\n"
        f"{adds}\n"
        "  return kTfLiteOk;\n"
        "}\n\n"
        "#endif  // TFASC_OPS_H_\n"
    )


def _c_identifier(key: str) -> str:
    cleaned = "".join(c if c.isalnum() else "_" for c in key)
    return "k" + "".join(part[:1].upper() + part[1:] for part in cleaned.split("_") if part)


def _c_float(value: float) -> str:
    if not math.isfinite(value):
        raise ValueError(f"feature/quantization value {value!r}: expected a finite number")
    return f"{float(value)!r}f"


def _c_string(value: str) -> str:
    return json.dumps(value)  # JSON string escapes are valid C string escapes for ASCII/UTF-8


def _feature_lines(params: Mapping[str, Any]) -> list[str]:
    lines = []
    for key in sorted(params):
        value = params[key]
        name = "kFeature" + _c_identifier(key)[1:]
        if isinstance(value, bool):
            lines.append(f"constexpr bool {name} = {'true' if value else 'false'};")
        elif isinstance(value, (int, np.integer)):
            lines.append(f"constexpr int {name} = {int(value)};")
        elif isinstance(value, (float, np.floating)):
            lines.append(f"constexpr float {name} = {_c_float(value)};")
        elif isinstance(value, str):
            lines.append(f"constexpr const char* {name} = {_c_string(value)};")
        elif value is None:
            lines.append(f"// {key}: None")
        else:
            raise ValueError(f"frontend[{key!r}] = {value!r}: expected a bool, int, float, str or None")
    return lines


def _quantization(details: Mapping[str, Any]) -> tuple[float, int]:
    if "quantization" in details:
        scale, zero_point = details["quantization"]
    else:
        scale, zero_point = details["scale"], details["zero_point"]
    return float(scale), int(zero_point)


#: Front ends a bundle can describe (the recipe's ``features.kind``).
FRONTEND_KINDS = ("log_mel", "scalogram", "waveform")
#: Input layout per front end, batch first.
INPUT_LAYOUTS = {"log_mel": "[batch, freq, time, channels]", "scalogram": "[batch, freq, time, channels]",
                 "waveform": "[batch, samples, channels]"}
#: int16 PCM full scale: training reads PCM as ``pcm / 32768`` (``tfasc.data.audio``).
PCM_FULL_SCALE = 32768
_WAVEFORM_REQUIRED = ("sample_rate", "clip_seconds", "audio_channels")
_WAVEFORM_OPTIONAL = ("standardize_mean", "standardize_std", "normalization")
#: Normalizations a waveform model's int16 PCM -> int8 conversion folds into one multiply-add.
_FOLDABLE = (None, "none", "global")


def frontend_kind(frontend: Mapping[str, Any]) -> str:
    """``frontend["kind"]``, checked against ``FRONTEND_KINDS``."""
    kind = frontend.get("kind")
    if kind not in FRONTEND_KINDS:
        raise ValueError(f"frontend kind {kind!r}: expected one of {FRONTEND_KINDS} (the recipe's features.kind)")
    return kind


def _feature_extraction_lines(frontend: Mapping[str, Any]) -> list[str]:
    """A 2-D front-end (log-mel, scalogram): its parameters, which the device must reproduce."""
    return [
        f"// Feature extraction the model was trained with ({frontend['kind']}; compute the same on the device).",
        *_feature_lines({key: value for key, value in frontend.items() if key != "kind"}),
    ]


def _check_waveform(frontend: Mapping[str, Any], shape: Sequence[int]) -> None:
    unknown = sorted(set(frontend) - {"kind", *_WAVEFORM_REQUIRED, *_WAVEFORM_OPTIONAL})
    missing = [key for key in _WAVEFORM_REQUIRED if frontend.get(key) is None]
    if unknown or missing:
        raise ValueError(
            f"waveform frontend: unexpected keys {unknown} / missing keys {missing}; expected "
            f"{list(_WAVEFORM_REQUIRED)} and optionally {list(_WAVEFORM_OPTIONAL)} (log-mel "
            "parameters do not apply to a waveform model)"
        )
    samples = round(float(frontend["sample_rate"]) * float(frontend["clip_seconds"]))
    expected = [1, samples, int(frontend["audio_channels"])]
    if list(shape) != expected:
        raise ValueError(
            f"waveform frontend: the model's input shape is {list(shape)}, but sample_rate x "
            f"clip_seconds and audio_channels give [1, samples, channels] = {expected}"
        )


def pcm_to_input(mean: float, std: float, input_scale: float, input_zero_point: int) -> tuple[float, float]:
    """``(a, b)`` such that the int8 input is ``clamp(round(pcm * a + b))`` for int16 ``pcm``.

    Training feeds ``x = (pcm / 32768 - mean) / std`` and the input tensor holds
    ``q = round(x / scale) + zero_point``; one multiply-add per sample does all three.
    """
    a = 1.0 / (PCM_FULL_SCALE * std * input_scale)
    b = input_zero_point - mean / (std * input_scale)
    return a, b


def _per_clip_lines(mode: str) -> list[str]:
    """What the device computes from int16 PCM for a waveform model normalized per clip, and why
    that is not part of the int8 graph (``input_path.h`` is the code; tested by feeding int16 PCM
    through it in ``tests/deploy/test_raw_pcm.py``)."""
    if mode != "per_clip":
        raise ValueError(f"waveform frontend: normalization {mode!r}: a waveform model is normalized 'none', "
                         "'global' or 'per_clip' (the other modes need a frequency axis)")
    pcm_variance = VARIANCE_FLOOR * PCM_FULL_SCALE**2  # the floor on var(x), in PCM units
    return [
        'constexpr const char* kFeatureNormalization = "per_clip";',
        "// Normalization per clip (Huang & Leanos Sec. 3.2): each clip to zero mean and unit variance over",
        "// all its samples and channels, computed on the device in front of the int8 model, not inside it:",
        "// in the graph the mean and 1 / std would be int8 MEAN / SQUARED_DIFFERENCE / RSQRT ops on the raw",
        "// PCM tensor, whose one int8 scale has to span the loudest recording, so a quiet clip (RMS at",
        "// -40 dBFS) would reach the model as a few of its 256 levels. For the n = kFeatureClipSamples *",
        "// kFeatureAudioChannels int16 samples pcm[i] of one clip (cropped to its first kFeatureClipSamples",
        "// frames or zero-padded at the end, like training), the device computes",
        "//   1. x[i] = pcm[i] / 32768.0f                                  (how training decoded the WAV)",
        f"//   2. mean = sum(x) / n; var = max(sum((x - mean)^2) / n, {VARIANCE_FLOOR!r})   in double, two passes",
        "//   3. y[i] = (x[i] - (float)mean) * (float)(1 / sqrt(var))      in float",
        "//   4. q[i] = clamp(round_half_away(y[i] / kInputScale) + kInputZeroPoint, -128, 127)   in double",
        "// input_path.h's tfasc_features_to_input(x, q) is steps 2-4, the arithmetic of training's",
        "// normalization and of the int8 inputs the export checked in TFLite Micro. The / 32768 cancels: a",
        "// power-of-two scale is exact in binary floating point, so x[i] = (float)pcm[i] gives the same q for",
        f"// every clip with var(pcm) >= {VARIANCE_FLOOR!r} * 32768^2 = {pcm_variance:.3g} (PCM std >= "
        f"{math.sqrt(pcm_variance):.2f} LSB); keep the",
        "// / 32768 for digital near-silence below that, where the variance floor acts on var(x) as in training.",
    ]


def _waveform_lines(frontend: Mapping[str, Any], shape: Sequence[int], input_q: tuple[float, int]) -> list[str]:
    _check_waveform(frontend, shape)
    mean, std = frontend.get("standardize_mean"), frontend.get("standardize_std")
    standardized = mean is not None or std is not None
    mean = 0.0 if mean is None else float(mean)
    std = 1.0 if std is None else float(std)
    if not std > 0:
        raise ValueError(f"waveform frontend: standardize_std={std}: expected a positive standard deviation")
    lines = [
        "// Front end: the raw waveform, no feature extraction. Input layout [samples][channels]:",
        "// interleaved PCM frames are already in that order.",
        f"constexpr int kFeatureSampleRate = {int(frontend['sample_rate'])};",
        f"constexpr int kFeatureClipSamples = {int(shape[1])};",
        f"constexpr float kFeatureClipSeconds = {_c_float(float(frontend['clip_seconds']))};",
        f"constexpr int kFeatureAudioChannels = {int(frontend['audio_channels'])};",
    ]
    if frontend.get("normalization") not in _FOLDABLE:
        return lines + _per_clip_lines(frontend["normalization"])
    if standardized:
        lines += [
            "// Standardization from training: x = (pcm / 32768 - mean) / std.",
            f"constexpr float kFeatureStandardizeMean = {_c_float(mean)};",
            f"constexpr float kFeatureStandardizeStd = {_c_float(std)};",
        ]
    else:
        lines.append("// No standardization: the model was trained on x = pcm / 32768.")
    scale, offset = pcm_to_input(mean, std, *input_q)
    return lines + [
        "// int16 PCM -> int8 input in one multiply-add per sample (pcm / 32768, standardization",
        "// and q = round(x / kInputScale) + kInputZeroPoint folded together):",
        "//   q = clamp(round(pcm * kPcmToInputScale + kPcmToInputOffset), -128, 127)",
        "//   kPcmToInputScale = 1 / (32768 * std * kInputScale)",
        "//   kPcmToInputOffset = kInputZeroPoint - mean / (std * kInputScale)",
        f"constexpr float kPcmToInputScale = {_c_float(scale)};",
        f"constexpr float kPcmToInputOffset = {_c_float(offset)};",
    ]


def _check_segments(kind: str, shape: Sequence[int], segment_frames: int | None, clip_frames: int | None) -> None:
    if segment_frames is None:
        return
    if kind == "waveform":
        raise ValueError(f"segment_frames={segment_frames}: a waveform model's input has no frames to cut")
    if clip_frames is None or not 1 <= segment_frames <= clip_frames:
        raise ValueError(f"segment_frames={segment_frames}, clip_frames={clip_frames}: expected a clip of at least "
                         "one segment's frames")
    if len(shape) != 4 or shape[2] != segment_frames:
        raise ValueError(f"segment_frames={segment_frames}: the model's input shape {list(shape)} is not one segment "
                         f"[1, freq, {segment_frames}, channels]")


def _output_lines(sigmoid_outputs: bool) -> list[str]:
    if sigmoid_outputs:
        return ["// Probabilities: an independent sigmoid per class, p = 1 / (1 + exp(-x)) (trained with",
                "// binary cross-entropy); the largest logit is the most likely class.",
                "constexpr bool kSigmoidOutputs = true;"]
    return ["// Probabilities: the softmax of the logits over the classes; the largest logit is the class.",
            "constexpr bool kSigmoidOutputs = false;"]


def _segment_lines(shape: Sequence[int], segment_frames: int | None, clip_frames: int | None) -> list[str]:
    if segment_frames is None:
        return []
    return [
        "// Segments: the model classifies kSegmentFrames frames of a clip's features at a time. Cut the",
        "// clip's [freq][kClipFrames][channels] features into kSegmentsPerClip non-overlapping segments",
        "// (frames after kSegmentsPerClip * kSegmentFrames are dropped), run the model on each, and",
        "// average the segments' probabilities (softmax, or sigmoid with kSigmoidOutputs): the clip's scores.",
        f"constexpr int kSegmentFrames = {int(segment_frames)};",
        f"constexpr int kClipFrames = {int(clip_frames)};",
        f"constexpr int kSegmentsPerClip = {int(clip_frames) // int(segment_frames)};",
        f"constexpr int kSegmentValues = {int(np.prod(shape[1:]))};  // one segment [freq][kSegmentFrames][channels]",
    ]


def model_config_header(
    *,
    arena_bytes: int,
    input_details: Mapping[str, Any],
    output_details: Mapping[str, Any],
    frontend: Mapping[str, Any],
    class_names: Sequence[str],
    segment_frames: int | None = None,
    clip_frames: int | None = None,
    sigmoid_outputs: bool = False,
    arena_comment: Sequence[str] = (),
) -> str:
    """``model_config.h``: everything the firmware needs besides the model bytes.

    ``frontend`` describes the model's input (see the module docstring): ``{"kind": "log_mel",
    ...feature parameters}`` or ``{"kind": "waveform", "sample_rate", "clip_seconds",
    "audio_channels"[, "standardize_mean", "standardize_std"]}``. ``segment_frames``: the model's
    input is one segment of that many of the ``clip_frames`` frames of a clip's features (see the
    module docstring); ``sigmoid_outputs``: probabilities are per-class sigmoids, not a softmax.
    """
    kind = frontend_kind(frontend)
    shape = [int(d) for d in input_details["shape"]]
    _check_segments(kind, shape, segment_frames, clip_frames)
    in_scale, in_zero = _quantization(input_details)
    out_scale, out_zero = _quantization(output_details)
    names = ", ".join(_c_string(n) for n in class_names)
    frontend_lines = (
        _feature_extraction_lines(frontend) if kind != "waveform" else _waveform_lines(frontend, shape, (in_scale, in_zero))
    )
    lines = [
        "// Generated by tfasc.deploy.bundle.",
        "#ifndef TFASC_MODEL_CONFIG_H_",
        "#define TFASC_MODEL_CONFIG_H_",
        "",
        *(arena_comment or arena_lines(arena_bytes, None)),
        f"constexpr int kTensorArenaSize = {arena_bytes};",
        "",
        f"// Input tensor: {INPUT_LAYOUTS[kind]}, int8; q = round(x / scale) + zero_point.",
        f"constexpr int kInputDims = {len(shape)};",
        f"constexpr int kInputShape[kInputDims] = {{{', '.join(map(str, shape))}}};",
        f"constexpr float kInputScale = {_c_float(in_scale)};",
        f"constexpr int kInputZeroPoint = {in_zero};",
        "",
        "// Output tensor: int8 logits per class; x = scale * (q - zero_point).",
        f"constexpr float kOutputScale = {_c_float(out_scale)};",
        f"constexpr int kOutputZeroPoint = {out_zero};",
        f"constexpr int kNumClasses = {len(class_names)};",
        f"constexpr const char* kClassNames[kNumClasses] = {{{names}}};",
        *_output_lines(sigmoid_outputs),
        "",
        *([*_segment_lines(shape, segment_frames, clip_frames), ""] if segment_frames is not None else []),
        *frontend_lines,
        "",
        "#endif  // TFASC_MODEL_CONFIG_H_",
    ]
    return "\n".join(lines) + "\n"


#: What the README says about the model's input, per PCM path (``tfasc.deploy.c_model.pcm_path``) or,
#: without one, per front end.
_README_INPUT = {
    "log_mel": (
        "Input: int8 `[1, freq, time, channels]` log-mel features. `frontend.c` computes them from int16 PCM with\n"
        "CMSIS-DSP and the training parameters, `input_path.h` normalizes and quantizes them like training\n"
        "(`kInputScale` / `kInputZeroPoint`)."
    ),
    "features": (
        "Input: int8 `[1, freq, time, channels]` {kind} features computed on the device with the `kFeature*`\n"
        "parameters of `model_config.h` (no C front end ships for them{reason}), then normalized and quantized by\n"
        "`input_path.h`'s `tfasc_features_to_input(features, input)`; `TfascModelRun` takes the int8 input."
    ),
    "waveform": (
        "Input: int8 `[1, samples, channels]` raw audio, no feature extraction: int16 PCM converted with\n"
        "`kPcmToInputScale` / `kPcmToInputOffset` (pcm / 32768, the training standardization and the\n"
        "input quantization in one multiply-add)."
    ),
    "waveform_per_clip": (
        "Input: int8 `[1, samples, channels]` raw audio, normalized per clip on the device (not in the graph):\n"
        "`x = pcm / 32768.0f`, then `input_path.h`'s `tfasc_features_to_input(x, q)` (the clip's mean and standard\n"
        "deviation, then `kInputScale` / `kInputZeroPoint`); `model_config.h` states the arithmetic and why."
    ),
}

_README_SEGMENTS = """
## Segments: a clip is the mean of its segments

The model classifies one segment of `kSegmentFrames` frames, not a whole clip (Wu & Lee's
segment-level CNN): `TfascPcmToInputs` cuts a clip's features into `kSegmentsPerClip` non-overlapping
segments (frames after `kSegmentsPerClip * kSegmentFrames` are dropped), each normalized on its own as
training did, and `TfascClassifyOutputs` averages the segments' probabilities. This is how its accuracy
was measured.
"""


def readme_text(*, ops: Sequence[str], arena_bytes: int, model_bytes: int, model_source: str,
                frontend: str = "log_mel", pcm_path: str | None = None, no_frontend_reason: str = "",
                segment_frames: int | None = None, sigmoid_outputs: bool = False, macs: int | None = None,
                device_lines: Sequence[str] = ()) -> str:
    """The bundle's README.md: what the device pays, the files, the input and output, and
    ``tfasc_model.cc`` verbatim (``model_source``: the code the emulated-device check compiled).

    ``frontend`` is the front-end kind (``FRONTEND_KINDS``); ``pcm_path`` the bundle's PCM path
    (:func:`tfasc.deploy.c_model.pcm_path`; None: the device computes the model's int8 input itself,
    ``no_frontend_reason`` says why); ``segment_frames``: the model classifies segments; ``sigmoid_outputs``:
    per-class sigmoids, not a softmax; ``macs``: per inference; ``device_lines``: the emulated-device
    figures (markdown lines)."""
    cost = (f"What the device pays: {model_bytes:,} bytes of flash for the model, a {arena_bytes:,}-byte tensor "
            f"arena{'' if macs is None else f', {macs:,} multiply-accumulates per inference'}.\n\n")
    kind = frontend_kind({"kind": frontend})
    text = (_README_INPUT[pcm_path] if pcm_path else
            _README_INPUT["features"].format(kind=kind.replace("_", "-"),
                                             reason=f": {no_frontend_reason}" if no_frontend_reason else ""))
    activation = ("an independent sigmoid per class of the dequantized logits (`kSigmoidOutputs`: the model "
                  "was trained with binary cross-entropy)" if sigmoid_outputs else
                  "the softmax of the dequantized logits")
    files = [f"`model_int8.tflite` ({model_bytes} bytes)",
             "`model_data.cc/.h` (the same bytes as a 16-byte aligned C array)",
             f"`ops.h` (resolver with the {len(set(ops))} ops used: {', '.join(sorted(set(ops)))})",
             f"`model_config.h` (arena size {arena_bytes} bytes, input shape and quantization, class names, front end)",
             "`tfasc_model.h/.cc` (the entry points below)"]
    if pcm_path in ("log_mel", "waveform_per_clip") or pcm_path is None:
        files.append("`input_path.h` (the training normalization and the int8 quantization)")
    if pcm_path == "log_mel":
        files.append("`frontend.h/.c` (the log-mel front end with CMSIS-DSP, its tables from the training parameters)")
    usage = ("float probabilities[kNumClasses];\nint label = TfascClassifyPcm(pcm, probabilities);  "
             "// kClassNames[label]" if pcm_path else
             "int8_t input[kTfascInputBytes], output[kTfascOutputBytes];\n"
             "tfasc_features_to_input(features, input);  // input_path.h\n"
             "TfascModelRun(input, output);  // int8 logits")
    device = ("\n## On the device\n\n" + "\n".join(device_lines) + "\n") if device_lines else ""
    build = "" if not device_lines else (
        "\nBuild it for a real board with the same sources: TFLite Micro with the CMSIS-NN kernels"
        + (" and CMSIS-DSP" if pcm_path == "log_mel" else "")
        + ", these files, and the board's own startup code and linker script in place of the emulator's "
        "(`python -m tfasc.device build deploy --target cortex-m4` writes the firmware and `build.txt`, every\n"
        "compiler command).\n")
    return f"""# tfasc int8 model for TensorFlow Lite Micro

{cost}Files: {'; '.join(files)}.

{text}
Output: int8 logits, one per class in `kClassNames` (dequantized `x = kOutputScale * (q - kOutputZeroPoint)`);
class probabilities are {activation}.
{_README_SEGMENTS if segment_frames is not None else ""}
```cpp
#include "tfasc_model.h"

{usage}
```
{device}{build}
## tfasc_model.cc

```cpp
{model_source.rstrip()}
```
"""


def log_mel_frontend_arguments(frontend: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
    """``(LogMelParams, {"sample_rate", "clip_samples", "audio_channels"})`` of a log-mel ``frontend``
    mapping: the arguments of :func:`tfasc.device.frontend.frontend_files` and ``frontend_costs``.

    Raises:
        KeyError: the mapping does not state the sample rate, clip seconds or audio channels.
    """
    from tfasc.data.features import LogMelParams

    missing = [key for key in ("sample_rate", "clip_seconds", "audio_channels") if frontend.get(key) is None]
    if missing:
        raise KeyError(f"the front end does not state {', '.join(missing)}")
    params = LogMelParams(**{key: frontend[key] for key in LogMelParams.names() if key in frontend})
    sample_rate = float(frontend["sample_rate"])
    return params, {"sample_rate": sample_rate, "clip_samples": round(sample_rate * float(frontend["clip_seconds"])),
                    "audio_channels": int(frontend["audio_channels"])}


def log_mel_frontend_files(frontend: Mapping[str, Any]) -> tuple[dict[str, str], str]:
    """``(files, reason)``: the C front end for a log-mel ``frontend`` (:mod:`tfasc.device.frontend`), or no
    files and the one-line reason CMSIS-DSP cannot reproduce these parameters (e.g. an ``n_fft`` that is
    not a power of two)."""
    from tfasc.device.frontend import frontend_files

    try:
        params, clip = log_mel_frontend_arguments(frontend)
        return frontend_files(params, **clip), ""
    except KeyError as error:
        return {}, error.args[0]
    except ValueError as error:
        return {}, str(error)


def arena_lines(arena_bytes: int, device_arenas: Mapping[str, int] | None) -> list[str]:
    """``model_config.h``'s words on ``kTensorArenaSize``: where the number comes from."""
    if not device_arenas:
        return ["// Tensor arena: bytes TFLite Micro allocated for this model (RecordingMicroAllocator),",
                "// rounded up to 16; add headroom if your platform's kernels need scratch buffers."]
    measured = ", ".join(f"{name} {size:,}" for name, size in device_arenas.items())
    return ["// Tensor arena: the largest of the bytes TFLite Micro used on each emulated core with the",
            f"// CMSIS-NN kernels ({measured}), rounded up to 16, no headroom added: each",
            "// kernel variant needs its own scratch buffers, so a core or kernel build not listed here",
            "// must measure its own (TfascArenaUsedBytes())."]


def write_bundle(
    out_dir: str | os.PathLike,
    tflite_int8: bytes,
    *,
    arena_bytes: int,
    input_details: Mapping[str, Any],
    frontend: Mapping[str, Any],
    ops: Sequence[str],
    class_names: Sequence[str],
    output_details: Mapping[str, Any] | None = None,
    normalization=None,
    segment_frames: int | None = None,
    clip_frames: int | None = None,
    sigmoid_outputs: bool = False,
    macs: int | None = None,
    device_arenas: Mapping[str, int] | None = None,
    device_lines: Sequence[str] = (),
) -> Path:
    """Write the deployment bundle into ``out_dir`` atomically; returns ``out_dir``.

    Args:
        tflite_int8: the int8 flatbuffer.
        arena_bytes: tensor-arena bytes (``tfasc.deploy.tflm.arena_bytes_used``, or the largest measured
            on the emulated cores); rounded up to 16.
        input_details: ``shape`` and ``quantization`` (scale, zero point), as
            ``tf.lite.Interpreter.get_input_details()[0]`` gives them.
        frontend: the model's front end, ``{"kind": "log_mel" | "waveform", ...}``: for log-mel
            the feature parameters (sample rate, clip seconds, audio channels, n_fft, hop, mels,
            standardize mean/std, ...); for waveform ``sample_rate``, ``clip_seconds``,
            ``audio_channels`` and optionally ``standardize_mean`` / ``standardize_std``.
        ops: builtin op names (``tfasc.deploy.flatbuffer.ops_used``).
        class_names: output class names, in output order.
        output_details: like ``input_details`` for the output; read from the flatbuffer if omitted.
        normalization: the training input normalization (:class:`tfasc.data.normalization.Normalization`);
            given, ``input_path.h`` reproduces it and the input quantization in C, for one model
            input (one segment with ``segment_frames``: per-clip modes then normalize each segment).
        segment_frames, clip_frames: the model's input is a segment of ``segment_frames`` of a
            clip's ``clip_frames`` frames; the device averages the segments' probabilities.
        sigmoid_outputs: probabilities are per-class sigmoids (binary cross-entropy), not a softmax.
        macs: multiply-accumulates of one inference, stated in the README with the flash and arena.
        device_arenas: arena bytes measured per emulated core (``model_config.h`` says so).
        device_lines: the emulated-device figures for the README (markdown lines).
    """
    from tfasc.deploy import c_model

    if arena_bytes <= 0:
        raise ValueError(f"arena_bytes={arena_bytes}: expected the positive arena size in bytes")
    if not class_names:
        raise ValueError("class_names is empty: expected one name per output class")
    kind, mode = frontend_kind(frontend), frontend.get("normalization")
    if kind == "waveform" and mode not in _FOLDABLE and getattr(normalization, "mode", None) != mode:
        raise ValueError(f"waveform frontend normalization {mode!r}: the device computes it with input_path.h; "
                         f"pass that normalization (got {normalization!r:.80})")
    if output_details is None:
        from tfasc.deploy.convert import io_quantization

        output_q = io_quantization(tflite_int8)[1]
        output_details = {"shape": output_q.shape, "quantization": (output_q.scale, output_q.zero_point)}
    arena = -(-int(arena_bytes) // 16) * 16
    config_header = model_config_header(
        arena_bytes=arena, input_details=input_details, output_details=output_details, frontend=frontend,
        class_names=class_names, segment_frames=segment_frames, clip_frames=clip_frames,
        sigmoid_outputs=sigmoid_outputs, arena_comment=arena_lines(arena, device_arenas),
    )  # first: it checks the front end against the model
    frontend_sources, no_frontend = log_mel_frontend_files(frontend) if kind == "log_mel" else ({}, "")
    if kind == "log_mel" and frontend_sources and normalization is None:
        no_frontend = "no normalization was given"
    path = c_model.pcm_path(kind, getattr(normalization, "mode", None) if normalization is not None else None,
                            has_frontend=bool(frontend_sources))
    shape = [int(d) for d in input_details["shape"]]
    segments = 1 if segment_frames is None else int(clip_frames) // int(segment_frames)
    clip_samples = (round(float(frontend["sample_rate"]) * float(frontend["clip_seconds"]))
                    * int(frontend["audio_channels"])) if path else None
    feature_values = (shape[1] * int(clip_frames) * shape[3] if segment_frames is not None else int(np.prod(shape[1:]))
                      ) if path == "log_mel" else None
    source = c_model.model_source(path=path, segments=segment_frames is not None)
    files: dict[str, bytes | str] = {
        MODEL_FILE: bytes(tflite_int8),
        "model_data.h": c_array_header(),
        "model_data.cc": c_array_source(bytes(tflite_int8)),
        "ops.h": ops_header(ops),
        "model_config.h": config_header,
        c_model.MODEL_HEADER: c_model.model_header(
            input_shape=shape, output_shape=output_details["shape"], path=path, model_inputs=segments,
            clip_pcm_values=clip_samples, feature_values=feature_values),
        c_model.MODEL_SOURCE: source,
        **(frontend_sources if path == "log_mel" else {}),
        "README.md": readme_text(
            ops=ops, arena_bytes=arena, model_bytes=len(tflite_int8), model_source=source, frontend=kind,
            pcm_path=path, no_frontend_reason=no_frontend, segment_frames=segment_frames,
            sigmoid_outputs=sigmoid_outputs, macs=macs, device_lines=device_lines,
        ),
    }
    if normalization is not None:
        from tfasc.data.normalization import c_header

        in_scale, in_zero = _quantization(input_details)
        files["input_path.h"] = c_header(normalization, tuple(input_details["shape"])[1:], in_scale, in_zero)
    out = Path(out_dir)
    with atomic_path(out, directory=True) as staging:
        for name, content in files.items():
            if isinstance(content, bytes):
                (staging / name).write_bytes(content)
            else:
                (staging / name).write_text(content, encoding="utf-8")
    return out
