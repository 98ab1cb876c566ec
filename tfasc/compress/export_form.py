"""Export form of a trained model: layers that would stay float rebuilt from stock layers.

Models: ``[batch, freq, time, channels]`` float features -> logits. ``to_export_form`` returns a
model with the same inference outputs in which

- every tfasc layer whose contract has an export form (``tfasc.layers.contract``) is replaced by
  it, e.g. :class:`~tfasc.layers.normalization.SubSpectralNormalization` (SSN, as used in
  'QTI Submission to DCASE 2020: Model Efficient Acoustic Scene Classification' (DCASE 2020 Task 1B
technical report, entry Chang_QTI_task1b), section 2.2) by
  :func:`~tfasc.layers.normalization.sub_spectral_as_depthwise` (per sub-band ``Cropping2D`` ->
  frozen 1x1 ``DepthwiseConv2D(use_bias=True)`` -> ``Concatenate`` along frequency);
- every 4-D ``BatchNormalization`` that TF-MOT does *not* fold into the preceding conv becomes a
  frozen 1x1 ``DepthwiseConv2D(use_bias=True)`` holding the folded inference affine transform,
  per channel ``scale = gamma / sqrt(moving_variance + epsilon)`` and
  ``bias = beta - moving_mean * scale``. TF-MOT's folding rule is
  ``tfasc.compress.graph.batchnorm_is_folded_by_tfmot``; the BNs of the shared residual blocks
  (same report, section 2.1; one conv object called N times, a BN of its own per repeat) are the
  case that matters.

Why (measured on this stack):

- Full-integer ops: an un-folded normalization (SSN with an output-only QuantizeConfig, BN after a
  shared conv) becomes a float MUL/ADD between DEQUANTIZE/QUANTIZE in the int8 model unless
  representative data calibrates it. The depthwise form is a weight layer TF-MOT quantizes with
  its own 8-bit config (per-channel kernel, output range), so it converts to an int8
  DEPTHWISE_CONV_2D like any other layer.
- Flash: a BN folded into a shared conv (by the converter, or expressed as a multiply-add, which
  the converter folds again) gives one kernel copy per repeat in float32; in int8 per-channel two
  copies are identical bytes, de-duplicated, only when their BN scales have the same sign in every
  channel (e.g. all positive), which training does not promise. With the BN as a
  separate 1x1 depthwise the shared kernel stays one constant: stored once in float32 and in int8,
  whatever the signs, for a few tiny DEPTHWISE_CONV_2D ops (2 weights per channel instead of a
  BN's 4).

Measured (c = 64, 256 mel bins, N = 3, 10 classes, SSN; random-signed gammas): float32 flatbuffer
3,907,340 -> 2,446,584 bytes (28 -> 20 stored conv kernels), float16 1,970,576 -> 1,247,236,
post-training int8 1,103,032 -> 819,120 (constants 983,728 -> 619,216). After TF-MOT QAT with
representative data the un-rewritten model also keeps one kernel per shared conv (the annotated BN
stays a separate int8 MUL/ADD); there the rewrite removes the MULs and stores 31 KB fewer constants,
but the file is 62 KB larger (per-channel scales and zero points of the extra depthwise tensors).

QAT of the result needs no annotation: ``Cropping2D`` gets no quantizer, ``Concatenate`` quantizes
its output (each band's depthwise keeps its activation quantizer too; the int8 CONCATENATION runs
bit-exactly in TFLite Micro) and ``DepthwiseConv2D`` gets TF-MOT's per-channel conv config (one
followed by a ReLU too: ``tfasc.compress.qat`` keeps the weight quantizer TF-MOT's
``LayerReLUQuantize`` would drop). TF-MOT's ``QuantizeWrapper`` lists every quantized weight as
trainable, so inside a QAT model the frozen depthwise kernels (not their biases) train again.

Every other layer is cloned (``from_config`` + exact weight copy, so pruning zeros survive); a layer
object called N times in ``model`` becomes one new object called N times. Fresh objects matter:
layers reused from another model (``strip_pruning`` reuses the pruned model's layers) carry that
model's nodes, and TF-MOT's folding decision counts nodes. Apply this to the trained (pruned and
stripped) float model before ``tfasc.compress.qat.quantize_model``. The replacement depthwise
layers are created frozen (``trainable=False``) by default: they hold inference statistics, not
parameters to fine-tune. For QAT pass ``trainable=True``: the scale and shift then fine-tune together,
as a BatchNorm's gamma and beta would (frozen ones would be half-trained anyway, see above).
"""

from __future__ import annotations

from typing import Any

import tfasc  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
import tensorflow as tf
import tf_keras as keras
from tensorflow_model_optimization.python.core.quantization.keras import quantize_layer, quantize_wrapper
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_wrapper

from tfasc.compress.graph import ModelGraph, batchnorm_is_folded_by_tfmot
from tfasc.layers.chain import batchnorm_as_depthwise_weights
from tfasc.layers.contract import LayerContract

_WRAPPERS = (pruning_wrapper.PruneLowMagnitude, quantize_wrapper.QuantizeWrapper, quantize_layer.QuantizeLayer)


def _normalizes_channels_of_4d(bn: keras.layers.BatchNormalization, x: Any) -> bool:
    """Whether ``bn`` normalizes the last axis of a ``[batch, freq, time, channels]`` input."""
    rank = x.shape.rank
    axes = bn.axis if isinstance(bn.axis, (list, tuple)) else [bn.axis]
    return rank == 4 and sorted(int(a) % rank for a in axes) == [3]


def _check_layers(model: keras.Model, graph: ModelGraph) -> None:
    for node in graph.nodes:
        layer = node.layer
        if isinstance(layer, _WRAPPERS):
            raise ValueError(
                f"to_export_form: layer {layer.name!r} is a TF-MOT {type(layer).__name__}; expected the "
                "float model (call tfasc.compress.prune.strip_pruning first; apply QAT after the rewrite)"
            )
        if isinstance(layer, keras.Model):
            raise ValueError(
                f"to_export_form: layer {layer.name!r} of {model.name!r} is a nested model; expected a "
                "flat functional model"
            )


def _first_input(args: Any, kwargs: dict[str, Any]) -> Any:
    """The tensor a single-input layer (BN, a tfasc layer with an export form) was called on."""
    return args[0] if args else kwargs["inputs"]


def _clone_layer(layer: keras.layers.Layer) -> keras.layers.Layer:
    return type(layer).from_config(layer.get_config())


def _has_export_form(layer: keras.layers.Layer) -> bool:
    return isinstance(layer, LayerContract) and layer.export_form is not None


def to_export_form(model: keras.Model, *, trainable: bool = False) -> keras.Model:
    """A copy of ``model`` with equal inference outputs whose layers all quantize to int8.

    Args:
        model: trained float functional/sequential model (pruning wrappers stripped),
            ``[batch, freq, time, channels]`` -> logits.

    Returns:
        A new functional model (same name, same inputs and outputs, inference behaviour only for
        the rewritten layers): each tfasc layer with an export form replaced by it, built with
        ``name`` = the layer's name (``{name}_call{i}`` for its later calls; SSN's layers are
        ``{ssn}_band{s}_crop`` / ``_affine`` / ``{ssn}_concat``), each 4-D channels-last BatchNormalization that TF-MOT would not fold by a frozen 1x1
        ``DepthwiseConv2D(use_bias=True)`` named ``{bn}_affine``, every other layer a fresh clone
        with its weights copied exactly (shared layers stay one object called N times). A model
        with nothing to rewrite comes back as an equivalent clone. See the module docstring for
        why (flash sharing of the shared kernels, full-integer ops).

    Raises:
        ValueError: a subclassed model (no layer graph), a nested model, or TF-MOT wrappers.
    """
    graph = ModelGraph(model)
    _check_layers(model, graph)

    tensors: dict[int, Any] = {}  # id(original KerasTensor) -> new tensor
    new_inputs = []
    for original in model.inputs:
        input_layer = original._keras_history.layer
        new = keras.Input(batch_shape=tuple(original.shape), dtype=original.dtype, name=input_layer.name)
        tensors[id(original)] = new
        new_inputs.append(new)

    replacements: dict[int, keras.layers.Layer] = {}  # id(original layer) -> new layer object
    weight_sources: list[tuple[keras.layers.Layer, keras.layers.Layer]] = []
    export_calls: dict[int, int] = {}

    def new_tensor(value: Any) -> Any:
        return tensors[id(value)] if keras.backend.is_keras_tensor(value) else value

    for node in graph.nodes:
        layer = node.layer
        if node.is_input or isinstance(layer, keras.layers.InputLayer):
            continue
        args, kwargs = tf.nest.map_structure(new_tensor, (node.call_args, node.call_kwargs))
        if _has_export_form(layer):
            count = export_calls.get(id(layer), 0)
            export_calls[id(layer)] = count + 1
            name = layer.name if count == 0 else f"{layer.name}_call{count}"
            outputs = layer.export_form(_first_input(args, kwargs), name=name, trainable=trainable)
        elif (
            isinstance(layer, keras.layers.BatchNormalization)
            and _normalizes_channels_of_4d(layer, _first_input(args, kwargs))
            and not batchnorm_is_folded_by_tfmot(layer, graph)
        ):
            affine = replacements.get(id(layer))
            if affine is None:
                affine = keras.layers.DepthwiseConv2D(1, use_bias=True, trainable=trainable, name=f"{layer.name}_affine")
                replacements[id(layer)] = affine
                outputs = affine(_first_input(args, kwargs))
                affine.set_weights(list(batchnorm_as_depthwise_weights(layer)))
            else:  # a BN object called several times: one depthwise called as often
                outputs = affine(_first_input(args, kwargs))
        else:
            if id(layer) not in replacements:
                replacements[id(layer)] = _clone_layer(layer)
                weight_sources.append((layer, replacements[id(layer)]))
            outputs = replacements[id(layer)](*args, **kwargs)
        for original, new in zip(tf.nest.flatten(node.outputs), tf.nest.flatten(outputs)):
            tensors[id(original)] = new

    for original, clone in weight_sources:
        clone.set_weights(original.get_weights())
    new_outputs = [tensors[id(t)] for t in model.outputs]
    return keras.Model(
        new_inputs if len(new_inputs) > 1 else new_inputs[0],
        new_outputs if len(new_outputs) > 1 else new_outputs[0],
        name=model.name,
    )
