"""Model complexity: parameters, DCASE-rule model size, MACs, and what the int8 flatbuffer stores.

Conventions (stated in every report so numbers are comparable):

- Parameters: every weight of the float model (trainable and not, BatchNorm statistics included),
  each variable counted once however many times its layer is called (shared layers, section 2.1
  of 'QTI Submission to DCASE 2020: Model Efficient Acoustic Scene Classification', DCASE 2020 Task
  1B technical report, entry Chang_QTI_task1b), pruning/QAT bookkeeping variables (masks,
  thresholds, quantizer ranges) excluded.
- Model size, DCASE 2020 Task 1B rule: non-zero parameters x bits per parameter (32/16/8),
  in bytes and KB (1 KB = 1024 bytes, the DCASE convention).
- MACs per inference: multiply-accumulates of every kernel layer (``tfasc.compress.kernels``:
  Conv1D/2D, depthwise, separable and transposed convolutions, Dense; a tfasc layer's own
  ``count_macs`` from its contract), per call, so a layer called N times counts N times.
  BatchNorm, activations, pooling, adds and the feature extraction are not counted. Zeros from
  pruning are counted (dense kernels on a Cortex-M). A layer that owns weights and is neither in
  the kernel table nor declares a contract is an error naming it, never left uncounted.

Models take ``[batch, freq, time, channels]`` features or ``[batch, samples, channels]`` waveforms.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

import tfasc  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
import tensorflow as tf
import tf_keras as keras

from tfasc.deploy.flatbuffer import flatbuffer_storage

from tfasc.compress.graph import ModelGraph
from tfasc.compress.kernels import inner_layer, kernels_of, layer_macs

DCASE_BITS = (32, 16, 8)


def model_variables(model: keras.Model) -> list[tf.Variable]:
    """The model's own weights, each once; wrapper bookkeeping variables left out."""
    seen: set[int] = set()
    found = []
    for layer in model.layers:
        for variable in inner_layer(layer).weights:
            if id(variable) not in seen:
                seen.add(id(variable))
                found.append(variable)
    return found


@dataclasses.dataclass(frozen=True, kw_only=True)
class ParameterCount:
    """Parameters of a model, shared variables counted once.

    Attributes:
        params: all weights (trainable and non-trainable).
        trainable_params: trainable weights only.
        nonzero_params: weights that are not exactly zero (after pruning).
    """

    params: int
    trainable_params: int
    nonzero_params: int

    def dcase_size_bytes(self, bits: int) -> float:
        """DCASE 2020 Task 1B model size: non-zero parameters x ``bits`` / 8."""
        if bits <= 0:
            raise ValueError(f"bits={bits}: expected a positive number of bits per parameter")
        return self.nonzero_params * bits / 8


def count_parameters(model: keras.Model) -> ParameterCount:
    """Parameters, trainable parameters and non-zero parameters of ``model``."""
    variables = model_variables(model)
    trainable_ids = {id(v) for v in model.trainable_weights}
    params = sum(int(np.prod(v.shape)) for v in variables)
    trainable = sum(int(np.prod(v.shape)) for v in variables if id(v) in trainable_ids)
    nonzero = sum(int(np.count_nonzero(v.numpy())) for v in variables)
    return ParameterCount(params=params, trainable_params=trainable, nonzero_params=nonzero)


def _shape_tuple(shape: Any) -> tuple[int, ...]:
    shape = tf.TensorShape(shape)
    return tuple(int(d) if d is not None else 1 for d in shape.as_list())


def _node_shapes(node) -> tuple[tuple[int, ...], tuple[int, ...]]:
    inputs = tf.nest.flatten(node.input_tensors)
    outputs = tf.nest.flatten(node.output_tensors)
    return _shape_tuple(inputs[0].shape), _shape_tuple(outputs[0].shape)


@dataclasses.dataclass(frozen=True, kw_only=True)
class MacCount:
    """Multiply-accumulates per inference.

    Attributes:
        macs: total over all counted layer calls.
        per_call: ``(layer name, MACs)`` per call with MACs, in graph order (a shared layer
            appears N times).
    """

    macs: int
    per_call: tuple[tuple[str, int], ...]


def count_macs(model: keras.Model) -> MacCount:
    """MACs of one inference of ``model`` (batch 1); see the module docstring for what counts.

    Raises:
        tfasc.compress.kernels.UndeclaredLayerError: a layer owns weights but its MACs are unknown.
    """
    per_call: list[tuple[str, int]] = []
    for node in ModelGraph(model).nodes:  # the nodes of this model, not of other models
        if node.is_input:
            continue
        input_shape, output_shape = _node_shapes(node)
        macs = layer_macs(node.layer, input_shape, output_shape)
        if macs:
            per_call.append((inner_layer(node.layer).name, macs))
    return MacCount(macs=sum(m for _, m in per_call), per_call=tuple(per_call))


def distinct_kernels(model: keras.Model) -> int:
    """Distinct kernel variables of the model's kernel layers (a shared layer once)."""
    return len({id(kernel) for layer in model.layers for kernel in kernels_of(layer)})


def profile_model(
    model: keras.Model, *, clip_seconds: float, tflite_int8: bytes | None = None
) -> dict[str, Any]:
    """Complexity report for report.json: parameters, DCASE-rule sizes, MACs, flatbuffer storage.

    Args:
        model: the float (or stripped) model, ``[batch, freq, time, channels]`` -> logits.
        clip_seconds: audio duration one inference covers, for MACs per second of audio.
        tflite_int8: the int8 flatbuffer, to report its actual weight storage.
    """
    if clip_seconds <= 0:
        raise ValueError(f"clip_seconds={clip_seconds}: expected the positive duration of one input clip")
    params = count_parameters(model)
    macs = count_macs(model)
    report: dict[str, Any] = {
        "params": params.params,
        "trainable_params": params.trainable_params,
        "nonzero_params": params.nonzero_params,
        "dcase_size_bytes": {f"{bits}bit": params.dcase_size_bytes(bits) for bits in DCASE_BITS},
        "dcase_size_kb": {f"{bits}bit": params.dcase_size_bytes(bits) / 1024 for bits in DCASE_BITS},
        "macs": macs.macs,
        "macs_per_second_of_audio": macs.macs / clip_seconds,
        "clip_seconds": clip_seconds,
        "macs_per_call": [{"layer": name, "macs": m} for name, m in macs.per_call],
        "conventions": (
            "params: all weights incl. BatchNorm statistics, shared variables once; size: non-zero "
            "params x bits (DCASE 2020 1B), KB = 1024 bytes; MACs: every kernel layer (convolutions, "
            "Dense, tfasc layers' own counts) per call (shared layers once per call), "
            "BN/activations/pooling/adds/feature extraction not counted"
        ),
    }
    if tflite_int8 is not None:
        report["tflite_int8"] = {"file_bytes": len(tflite_int8), **dataclasses.asdict(flatbuffer_storage(tflite_int8))}
    return report
