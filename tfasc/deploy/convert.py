"""Keras model -> TFLite flatbuffer, and a reference run with ``tf.lite.Interpreter``.

Models take ``[batch, freq, time, channels]`` float features (``[batch, samples, channels]``
waveforms for waveform models) and return logits; the flatbuffers take one example at a time
(``[1, ...]``). What a flatbuffer contains (op list, full-integer check, weight storage) is read by
``tfasc.deploy.flatbuffer``.

``kind="int8"`` is full-integer: int8 input and output tensors and only ``TFLITE_BUILTINS_INT8``
ops, what TFLite Micro runs on a Cortex-M. A QAT model (``tfasc.compress.qat``) carries its own
ranges; a float model needs ``representative_data`` for post-training calibration.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Iterable, Literal

import numpy as np

import tfasc  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
import tensorflow as tf
import tf_keras as keras

from tfasc.deploy.flatbuffer import check_full_integer
from tfasc.deploy.native import quiet_native_stderr
from tfasc.layers.contract import accepts_shape

TFLiteKind = Literal["int8", "float16", "float32"]
_KINDS = ("int8", "float16", "float32")


def _is_quantization_aware(model: keras.Model) -> bool:
    return any(type(layer).__name__ in ("QuantizeWrapper", "QuantizeWrapperV2", "QuantizeLayer") for layer in model.layers)


def _representative_dataset(batches: Iterable[np.ndarray]):
    def generate():
        for batch in batches:
            batch = np.asarray(batch, dtype=np.float32)
            if batch.shape[0] != 1:
                raise ValueError(f"representative_data batch of shape {batch.shape}: expected [1, ...] (one example)")
            yield [batch]

    return generate


def _one_example_function(model: keras.Model, input_shape=None):
    """The model's inference graph for one example (batch fixed at 1), as a concrete function.

    ``input_shape`` (no batch axis) fixes the dimensions a model accepting any length leaves
    unknown: a flatbuffer for TFLite Micro has static shapes.

    The flatbuffers take one example at a time anyway; a static batch lets the converter fold shape
    arithmetic that a dynamic batch keeps at run time. A Keras ``Reshape`` reads the batch size with
    ``tf.shape``: traced with ``None`` it becomes SHAPE, STRIDED_SLICE and PACK ops in front of the
    RESHAPE, traced with 1 a constant RESHAPE. Outputs are identical either way.
    """
    if len(model.inputs) != 1:
        raise ValueError(f"model {model.name!r} has {len(model.inputs)} inputs: expected one")
    shape = tuple(model.inputs[0].shape[1:])
    if input_shape is not None:
        if not accepts_shape(shape, input_shape):
            raise ValueError(f"model {model.name!r}: input {list(shape)} does not accept input_shape {list(input_shape)}")
        shape = tuple(int(d) for d in input_shape)
    if None in shape:
        raise ValueError(f"model {model.name!r} accepts inputs {list(shape)} of any length: pass input_shape "
                         "to fix it for conversion")
    spec = tf.TensorSpec([1, *shape], model.inputs[0].dtype)
    return tf.function(lambda x: model(x, training=False), autograph=False).get_concrete_function(spec)


def _variables_holder(model: keras.Model) -> tf.Module:
    """What the converter saves beside the concrete function: only the model's variables. Given the
    Keras model itself, TensorFlow's SavedModel export traces every layer's call for both training
    modes first: measured 20.2 s against 3.2 s for a 20-block ERANN, the same flatbuffer bytes."""
    holder = tf.Module()
    holder.model_variables = list(model.variables)
    return holder


def to_tflite(
    model: keras.Model,
    *,
    kind: TFLiteKind = "int8",
    representative_data: Iterable[np.ndarray] | None = None,
    input_shape: tuple[int, ...] | None = None,
) -> bytes:
    """Convert ``model`` to a TFLite flatbuffer.

    Args:
        model: float or QAT model with one input, ``[batch, ...]`` -> logits.
        kind: ``"int8"`` (full integer, int8 in/out, builtin int8 ops only), ``"float16"``
            (float16 weights, float compute) or ``"float32"``.
        representative_data: iterable of ``[1, ...]`` float32 input batches; required
            for int8 conversion of a model that is not quantization-aware, optional otherwise.
        input_shape: one example's shape (no batch axis) for a model whose input length is
            unknown (``aclnet``); default: the model's own.
    """
    if kind not in _KINDS:
        raise ValueError(f"kind={kind!r}: expected one of {_KINDS}")
    converter = tf.lite.TFLiteConverter.from_concrete_functions([_one_example_function(model, input_shape)],
                                                                _variables_holder(model))
    if kind == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif kind == "int8":
        if representative_data is None and not _is_quantization_aware(model):
            raise ValueError(
                f"model {model.name!r} is not quantization-aware: int8 conversion needs "
                "representative_data (iterable of [1, ...] float32 input batches)"
            )
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if representative_data is not None:
            # TF 2.17 validates TFLITE_BUILTINS_INT8 before it looks at the graph, so with a QAT
            # model and no representative data it refuses ("a representative_dataset must be
            # specified"). Without data the ops set is left at its default and the result is
            # checked for full integer below instead, which is the stronger test anyway.
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    if representative_data is not None and kind != "float32":
        converter.representative_dataset = _representative_dataset(representative_data)
    with warnings.catch_warnings(), quiet_native_stderr():
        # "Statistics for quantized inputs were expected": QAT models carry their own ranges.
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
        tflite_bytes = bytes(converter.convert())
    if kind == "int8":
        check_full_integer(tflite_bytes)
    return tflite_bytes


@dataclasses.dataclass(frozen=True, kw_only=True)
class TensorQuantization:
    """Affine quantization of an int8 tensor: ``real = scale * (q - zero_point)``.

    Attributes:
        shape: tensor shape, batch first.
        dtype: numpy dtype name (``"int8"``, ``"float32"``).
        scale: per-tensor scale (0.0 for a float tensor).
        zero_point: per-tensor zero point.
    """

    shape: tuple[int, ...]
    dtype: str
    scale: float
    zero_point: int

    @classmethod
    def from_details(cls, details: dict[str, Any]) -> "TensorQuantization":
        scale, zero_point = details.get("quantization", (0.0, 0))
        return cls(
            shape=tuple(int(d) for d in details["shape"]),
            dtype=np.dtype(details["dtype"]).name,
            scale=float(scale),
            zero_point=int(zero_point),
        )

    def quantize(self, values: np.ndarray) -> np.ndarray:
        """Float -> this tensor's dtype (round half away from zero like TFLite, then clamp)."""
        if self.dtype in ("float32", "float16"):
            return np.asarray(values, dtype=self.dtype)
        info = np.iinfo(self.dtype)
        scaled = np.asarray(values, np.float64) / self.scale
        q = np.sign(scaled) * np.floor(np.abs(scaled) + 0.5) + self.zero_point
        return np.clip(q, info.min, info.max).astype(self.dtype)

    def dequantize(self, values: np.ndarray) -> np.ndarray:
        """This tensor's dtype -> float32."""
        if self.dtype in ("float32", "float16"):
            return np.asarray(values, np.float32)
        return (self.scale * (np.asarray(values, np.float32) - self.zero_point)).astype(np.float32)


def _reference_interpreter(tflite_bytes: bytes, reference_kernels: bool) -> tf.lite.Interpreter:
    resolver = (
        tf.lite.experimental.OpResolverType.BUILTIN_REF
        if reference_kernels
        # Not AUTO: its XNNPack delegate rounds int8 differently (measured: up to 4 output steps on
        # an AclNet model, 30 on a tiny one), so its labels are not the device's.
        else tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    )
    with quiet_native_stderr():  # the delegate notice
        interpreter = tf.lite.Interpreter(model_content=bytes(tflite_bytes), experimental_op_resolver_type=resolver)
        interpreter.allocate_tensors()
    return interpreter


def io_quantization(tflite_bytes: bytes) -> tuple[TensorQuantization, TensorQuantization]:
    """(input, output) shape, dtype, scale and zero point of a single-input single-output model."""
    interpreter = _reference_interpreter(tflite_bytes, reference_kernels=True)
    inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(f"expected one input and one output tensor, got {len(inputs)} and {len(outputs)}")
    return TensorQuantization.from_details(inputs[0]), TensorQuantization.from_details(outputs[0])


def run_tflite_raw(tflite_bytes: bytes, inputs: np.ndarray, *, reference_kernels: bool = True) -> np.ndarray:
    """Invoke the model once per example of ``inputs`` (already in the input tensor's dtype).

    Args:
        inputs: ``[n, ...]`` in the model's input layout and dtype (int8 for int8 models).
        reference_kernels: use TFLite's reference kernels (``BUILTIN_REF``), the ones TFLite Micro
            matches bit for bit; ``False`` uses the optimized builtin kernels without the XNNPack
            delegate (~9x faster; equal to the reference ones on the models measured, which
            ``tfasc.deploy.export`` checks on every export).

    Returns:
        ``[n, ...]`` raw outputs in the output tensor's dtype.
    """
    interpreter = _reference_interpreter(tflite_bytes, reference_kernels)
    input_details = interpreter.get_input_details()[0]
    output_details = interpreter.get_output_details()[0]
    inputs = np.asarray(inputs)
    if inputs.dtype != input_details["dtype"]:
        raise ValueError(f"inputs of dtype {inputs.dtype}: the model's input tensor is {np.dtype(input_details['dtype'])}")
    expected = tuple(input_details["shape"][1:])
    if inputs.shape[1:] != expected:
        raise ValueError(f"inputs of shape {inputs.shape}: expected [n, {', '.join(map(str, expected))}]")
    outputs = []
    for example in inputs:
        interpreter.set_tensor(input_details["index"], example[np.newaxis])
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(output_details["index"])[0].copy())
    return np.stack(outputs)


def run_tflite(tflite_bytes: bytes, features: np.ndarray, *, reference_kernels: bool = True) -> np.ndarray:
    """Float ``[n, ...]`` model inputs -> float ``[n, classes]`` outputs.

    Quantizes the input with the input tensor's scale/zero point and dequantizes the output,
    so int8 and float models are called the same way.
    """
    input_q, output_q = io_quantization(tflite_bytes)
    raw = run_tflite_raw(tflite_bytes, input_q.quantize(features), reference_kernels=reference_kernels)
    return output_q.dequantize(raw)
