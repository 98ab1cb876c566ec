"""Model complexity: parameters, DCASE-rule model size, MACs, and what the int8 flatbuffer stores.

Conventions (stated in every report so numbers are comparable):

- Parameters: every weight of the float model (trainable and not, BatchNorm statistics included),
  each variable counted once however many times its layer is called (shared layers, Kim et al.
  section 3), pruning/QAT bookkeeping variables (masks, thresholds, quantizer ranges) excluded.
- Model size, DCASE 2020 Task 1B rule: non-zero parameters x bits per parameter (32/16/8),
  in bytes and KB (1 KB = 1024 bytes, the DCASE convention).
- MACs per inference: multiply-accumulates of Conv2D, DepthwiseConv2D and Dense, per call, so a
  layer called N times counts N times. BatchNorm, activations, pooling, adds and the feature
  extraction are not counted. Zeros from pruning are counted (dense kernels on a Cortex-M).
  A custom layer can report its own MACs with ``count_macs(input_shape) -> int``; any other
  custom layer that owns kernels is listed in ``uncounted_layers``.

Models take ``[batch, freq, time, channels]`` features.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import numpy as np

import tfasc  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
import tensorflow as tf
import tf_keras as keras
from tensorflow.lite.python import schema_py_generated as tflite_schema

DCASE_BITS = (32, 16, 8)


def _inner_layer(layer: keras.layers.Layer) -> keras.layers.Layer:
    while isinstance(layer, keras.layers.Wrapper):
        layer = layer.layer
    return layer


def model_variables(model: keras.Model) -> list[tf.Variable]:
    """The model's own weights, each once; wrapper bookkeeping variables left out."""
    seen: set[int] = set()
    found = []
    for layer in model.layers:
        for variable in _inner_layer(layer).weights:
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


def _conv_macs(layer: keras.layers.Layer, output_shape: tuple[int, ...]) -> int:
    kernel = layer.kernel.shape  # [kh, kw, in/groups, out]
    spatial = int(np.prod(output_shape[1:-1]))
    return spatial * int(output_shape[-1]) * int(kernel[0]) * int(kernel[1]) * int(kernel[2])


def _depthwise_macs(layer: keras.layers.Layer, output_shape: tuple[int, ...]) -> int:
    kernel = layer.depthwise_kernel.shape  # [kh, kw, channels, multiplier]
    spatial = int(np.prod(output_shape[1:-1]))
    return spatial * int(output_shape[-1]) * int(kernel[0]) * int(kernel[1])


def _dense_macs(layer: keras.layers.Layer, output_shape: tuple[int, ...]) -> int:
    fan_in = int(layer.kernel.shape[0])
    return int(np.prod(output_shape[1:])) * fan_in


def _node_shapes(node) -> tuple[tuple[int, ...], tuple[int, ...]]:
    inputs = tf.nest.flatten(node.input_tensors)
    outputs = tf.nest.flatten(node.output_tensors)
    return _shape_tuple(inputs[0].shape), _shape_tuple(outputs[0].shape)


@dataclasses.dataclass(frozen=True, kw_only=True)
class MacCount:
    """Multiply-accumulates per inference.

    Attributes:
        macs: total over all counted layer calls.
        per_call: ``(layer name, MACs)`` per call, in graph order (a shared layer appears N times).
        uncounted_layers: custom layers owning kernels whose MACs are unknown (not in ``macs``).
    """

    macs: int
    per_call: tuple[tuple[str, int], ...]
    uncounted_layers: tuple[str, ...]


def count_macs(model: keras.Model) -> MacCount:
    """MACs of one inference of ``model`` (batch 1); see the module docstring for what counts."""
    per_call: list[tuple[str, int]] = []
    uncounted: list[str] = []
    model_nodes = set(model._network_nodes)  # the nodes of this model, not of other models
    for layer in model.layers:
        inner = _inner_layer(layer)
        kind = type(inner)
        for index, node in enumerate(layer._inbound_nodes):
            if model._network_nodes and f"{layer.name}_ib-{index}" not in model_nodes:
                continue
            input_shape, output_shape = _node_shapes(node)
            if kind is keras.layers.Conv2D:
                macs = _conv_macs(inner, output_shape)
            elif kind is keras.layers.DepthwiseConv2D:
                macs = _depthwise_macs(inner, output_shape)
            elif kind is keras.layers.Dense:
                macs = _dense_macs(inner, output_shape)
            elif hasattr(inner, "count_macs"):
                macs = int(inner.count_macs(input_shape))
            else:
                # Normalization statistics ([S, C] in sub-spectral normalization) are not kernels.
                owns_kernels = any("kernel" in w.name for w in inner.weights)
                if owns_kernels and inner.name not in uncounted:
                    uncounted.append(inner.name)
                continue
            per_call.append((inner.name, macs))
    return MacCount(macs=sum(m for _, m in per_call), per_call=tuple(per_call), uncounted_layers=tuple(uncounted))


@dataclasses.dataclass(frozen=True, kw_only=True)
class FlatbufferStorage:
    """Constant (weight) storage of a TFLite flatbuffer.

    Attributes:
        constant_tensors: tensors backed by a non-empty buffer.
        buffers: distinct non-empty buffers those tensors point to (the converter de-duplicates
            identical read-only buffers).
        stored_bytes: bytes of those distinct buffers: what flash holds.
        referenced_bytes: bytes summed per constant tensor (> stored_bytes when tensors share a
            buffer).
        identical_copy_bytes: bytes in buffers whose content equals an earlier buffer's; a
            shared kernel stored once per repeat shows up here.
    """

    constant_tensors: int
    buffers: int
    stored_bytes: int
    referenced_bytes: int
    identical_copy_bytes: int


def _buffer_bytes(tflite_bytes: bytes, buffer: tflite_schema.Buffer) -> bytes:
    if buffer.DataLength():
        return buffer.DataAsNumpy().tobytes()
    if buffer.Offset() > 1:  # models over 2 GB keep data after the flatbuffer
        return bytes(tflite_bytes[buffer.Offset(): buffer.Offset() + buffer.Size()])
    return b""


KERNEL_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def distinct_kernels(model: keras.Model) -> int:
    """Distinct kernel variables of Conv2D / DepthwiseConv2D / Dense layers (a shared layer once)."""
    kernels = {
        id(inner.depthwise_kernel if isinstance(inner, keras.layers.DepthwiseConv2D) else inner.kernel)
        for layer in model.layers
        for inner in [_inner_layer(layer)]
        if type(inner) in (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)
    }
    return len(kernels)


def kernel_buffers(tflite_bytes: bytes) -> dict[str, int]:
    """How the flatbuffer stores the weights of its CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED ops.

    ``operators``: ops with a weight tensor; ``buffers``: distinct buffers those weights live in
    (a shared kernel stored once serves several ops from one buffer); ``bytes``: their size.
    """
    from tfasc.deploy.convert import BUILTIN_OP_NAMES

    model = tflite_schema.Model.GetRootAsModel(bytes(tflite_bytes), 0)
    codes = [max(model.OperatorCodes(i).BuiltinCode(), model.OperatorCodes(i).DeprecatedBuiltinCode())
             for i in range(model.OperatorCodesLength())]
    operators, buffers = 0, {}
    for s in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(s)
        for o in range(subgraph.OperatorsLength()):
            op = subgraph.Operators(o)
            if BUILTIN_OP_NAMES.get(codes[op.OpcodeIndex()]) not in KERNEL_OPS or op.InputsLength() < 2:
                continue
            operators += 1
            index = subgraph.Tensors(op.Inputs(1)).Buffer()
            buffers[index] = len(_buffer_bytes(tflite_bytes, model.Buffers(index)))
    return {"operators": operators, "buffers": len(buffers), "bytes": sum(buffers.values())}


def flatbuffer_storage(tflite_bytes: bytes) -> FlatbufferStorage:
    """What the flatbuffer stores for constant tensors; see ``FlatbufferStorage``."""
    model = tflite_schema.Model.GetRootAsModel(bytes(tflite_bytes), 0)
    buffer_data: dict[int, bytes] = {}
    constant_tensors = referenced = 0
    for s in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(s)
        for t in range(subgraph.TensorsLength()):
            index = subgraph.Tensors(t).Buffer()
            if index == 0:  # buffer 0 is the empty sentinel
                continue
            if index not in buffer_data:
                buffer_data[index] = _buffer_bytes(tflite_bytes, model.Buffers(index))
            data = buffer_data[index]
            if data:
                constant_tensors += 1
                referenced += len(data)
    non_empty = {i: d for i, d in buffer_data.items() if d}
    seen_digests: set[bytes] = set()
    identical = 0
    for index in sorted(non_empty):
        digest = hashlib.sha256(non_empty[index]).digest()
        if digest in seen_digests:
            identical += len(non_empty[index])
        seen_digests.add(digest)
    return FlatbufferStorage(
        constant_tensors=constant_tensors,
        buffers=len(non_empty),
        stored_bytes=sum(len(d) for d in non_empty.values()),
        referenced_bytes=referenced,
        identical_copy_bytes=identical,
    )


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
        "uncounted_layers": list(macs.uncounted_layers),
        "conventions": (
            "params: all weights incl. BatchNorm statistics, shared variables once; size: non-zero "
            "params x bits (DCASE 2020 1B), KB = 1024 bytes; MACs: Conv2D/DepthwiseConv2D/Dense per "
            "call (shared layers once per call), BN/activations/pooling/adds not counted"
        ),
    }
    if tflite_int8 is not None:
        report["tflite_int8"] = {"file_bytes": len(tflite_int8), **dataclasses.asdict(flatbuffer_storage(tflite_int8))}
    return report
