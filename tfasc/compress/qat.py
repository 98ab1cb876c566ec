"""Quantization-aware training (QAT) of a whole tfasc model with TF-MOT, 8-bit.

``quantize_model`` annotates every layer, then calls ``quantize_apply`` inside ``quantize_scope``:

- layers TF-MOT's default 8-bit registry knows (Conv2D, DepthwiseConv2D, Dense, ReLU, Add,
  pooling, Reshape, ``Activation`` incl. swish, ...) get TF-MOT's own config;
- custom layers get the ``QuantizeConfig`` found in the config registry (``tfasc_quantize_configs``
  plus the ``extra_configs`` argument), e.g. ``OutputOnlyQuantizeConfig`` for weight-free layers
  such as sub-spectral normalization (Chang et al., SSN, section 3) or swish;
- ``BatchNormalization`` that TF-MOT folds into the preceding Conv2D/DepthwiseConv2D/Dense is left
  to TF-MOT. TF-MOT does not fold a BN whose conv is shared (called more than once, the shared
  residual blocks of Kim et al. section 3) or feeds other layers too; such BNs are annotated here:
  ``NoOpQuantizeConfig`` when every consumer is a ReLU (the ReLU quantizes its output) and
  ``Default8BitOutputQuantizeConfig`` otherwise (e.g. feeding a residual add);
- anything else (a custom layer without a config, a ``TFOpLambda`` from ``x * 2`` in functional
  code, a nested model) is an error naming the layers, so no layer is silently left float.

``preserve_sparsity=True`` uses TF-MOT's ``Default8BitPrunePreserveQuantizeScheme`` with one
extension: TF-MOT disables sparsity preservation for ``DepthwiseConv2D`` (it could not prune it);
``tfasc.compress.prune`` prunes depthwise kernels, so here they get the same masking quantizer as
Conv2D. Custom configs with weights do not preserve sparsity (TF-MOT applies the mask only to
its own configs). Models: ``[batch, freq, time, channels]`` float features -> logits.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import tfasc  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
import tensorflow as tf
import tf_keras as keras
import tensorflow_model_optimization as tfmot
from tensorflow_model_optimization.python.core.quantization.keras import quantize_wrapper
from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.prune_preserve import (
    prune_preserve_quantize_registry as pp_registry,
)
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
    default_8bit_quantize_configs,
    default_8bit_quantize_registry,
    default_8bit_quantize_scheme,
    default_8bit_quantizers,
)
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_wrapper

QuantizeConfig = tfmot.quantization.keras.QuantizeConfig
#: A registry value: a QuantizeConfig instance, or a function building one for a given layer.
ConfigSource = QuantizeConfig | Callable[[keras.layers.Layer], QuantizeConfig]


class QuantizationCoverageError(ValueError):
    """Some layers would stay float after QAT: neither TF-MOT nor the config registry covers them."""


@keras.saving.register_keras_serializable(package="tfasc")
class OutputOnlyQuantizeConfig(QuantizeConfig):
    """Quantize only a weight-free layer's output: 8-bit, per-tensor, asymmetric, moving average.

    For layers with no weights to quantize whose output is an int8 tensor in the TFLite graph
    (sub-spectral normalization: reshape + mul/add; swish; a residual add written as a layer).
    """

    def get_weights_and_quantizers(self, layer):
        return []

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        pass

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        return [
            tfmot.quantization.keras.quantizers.MovingAverageQuantizer(
                num_bits=8, per_axis=False, symmetric=False, narrow_range=False
            )
        ]

    def get_config(self):
        return {}


@keras.saving.register_keras_serializable(package="tfasc")
class KernelsAndOutputQuantizeConfig(QuantizeConfig):
    """Quantize the named kernels of a custom layer (8-bit, per output channel) and its output.

    For custom blocks that own convolutions. ``kernel_attrs`` are attribute paths on the layer,
    dotted for sublayers (``"conv1.kernel"``); the fake-quantized tensor is assigned back to that
    attribute, which is what the sublayer's ``call`` reads. TF-MOT does not mask these kernels in
    prune-preserving QAT, so pruning zeros can fill in again.
    """

    def __init__(self, kernel_attrs: list[str] | tuple[str, ...]) -> None:
        self.kernel_attrs = list(kernel_attrs)

    @staticmethod
    def _owner_and_name(layer, path: str):
        *owners, name = path.split(".")
        for owner in owners:
            layer = getattr(layer, owner)
        return layer, name

    def get_weights_and_quantizers(self, layer):
        pairs = []
        for path in self.kernel_attrs:
            owner, name = self._owner_and_name(layer, path)
            pairs.append((getattr(owner, name), default_8bit_quantizers.Default8BitConvWeightsQuantizer()))
        return pairs

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        for path, weight in zip(self.kernel_attrs, quantize_weights):
            owner, name = self._owner_and_name(layer, path)
            setattr(owner, name, weight)

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        return OutputOnlyQuantizeConfig().get_output_quantizers(layer)

    def get_config(self):
        return {"kernel_attrs": self.kernel_attrs}


def _residual_block_config(layer: keras.layers.Layer) -> QuantizeConfig:
    attrs = ["conv1.kernel", "conv2.kernel"]
    if getattr(layer, "shortcut_conv", None) is not None:
        attrs.append("shortcut_conv.kernel")
    return KernelsAndOutputQuantizeConfig(attrs)


def tfasc_quantize_configs() -> dict[type, ConfigSource]:
    """QuantizeConfigs for the custom layers of ``tfasc.layers``.

    Weight-free layers (sub-spectral normalization) quantize their output only. The block layers
    that own their convs quantize their kernels and output (the functional builders are the
    QAT-friendly path: their BNs and ReLUs are separate layers TF-MOT quantizes; these need
    representative data at int8 conversion for the tensors inside the block).
    """
    from tfasc.layers.normalization import SubSpectralNormalization
    from tfasc.layers.residual import ResidualBlock, SharedResidualBlock

    return {
        SubSpectralNormalization: OutputOnlyQuantizeConfig(),
        ResidualBlock: _residual_block_config,
        SharedResidualBlock: lambda layer: KernelsAndOutputQuantizeConfig(["conv_a.kernel", "conv_b.kernel"]),
    }


class _SparsityPreservingRegistry(pp_registry.Default8bitPrunePreserveQuantizeRegistry):
    """TF-MOT's prune-preserving registry, with sparsity preserved in DepthwiseConv2D too.

    TF-MOT lists DepthwiseConv2D with a config name its registry never produces and disables it;
    the depthwise kernel gets ``Default8BitConvQuantizeConfig``, so it takes the Conv2D masking
    quantizer (same per-axis quantizer as without pruning, times the sparsity mask).
    """

    _LAYERS_CONFIG_MAP = {
        **pp_registry.PrunePreserveQuantizeRegistry._LAYERS_CONFIG_MAP,
        keras.layers.DepthwiseConv2D: pp_registry._PrunePreserveInfo(
            ["depthwise_kernel"], ["Default8BitConvQuantizeConfig"]
        ),
    }
    _DISABLE_PRUNE_PRESERVE = frozenset()


class _SparsityPreservingScheme(default_8bit_quantize_scheme.Default8BitQuantizeScheme):
    """``Default8BitPrunePreserveQuantizeScheme`` with ``_SparsityPreservingRegistry``."""

    def get_quantize_registry(self):
        return _SparsityPreservingRegistry()


def _inbound_layers(layer: keras.layers.Layer) -> list[keras.layers.Layer]:
    found = []
    for node in layer._inbound_nodes:  # Keras exposes no public graph API for this
        found.extend(tf.nest.flatten(node.inbound_layers))
    return found


def _consumers(layer: keras.layers.Layer) -> list[keras.layers.Layer]:
    return [node.outbound_layer for node in layer._outbound_nodes]


def _is_relu(layer: keras.layers.Layer) -> bool:
    if type(layer) is keras.layers.ReLU:
        return True
    return type(layer) is keras.layers.Activation and layer.get_config()["activation"] in ("relu", "relu6")


def batchnorm_is_folded_by_tfmot(bn: keras.layers.Layer, model: keras.Model) -> bool:
    """Whether TF-MOT's Conv/Dense+BN patterns will match ``bn`` (it then handles the BN).

    Mirrors TF-MOT's pattern matcher: BN called once, right after a linear-activation Conv2D,
    DepthwiseConv2D or Dense that is itself called once and whose only consumer is the BN.
    """
    if len(bn._inbound_nodes) != 1:
        return False
    producers = _inbound_layers(bn)
    if len(producers) != 1:
        return False
    producer = producers[0]
    if type(producer) not in (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense):
        return False
    if producer.get_config().get("activation") != "linear":
        return False
    if len(producer._inbound_nodes) != 1 or len(producer._outbound_nodes) != 1:
        return False
    output_layers = {t._keras_history.layer.name for t in tf.nest.flatten(model.outputs)}
    return producer.name not in output_layers


def _batchnorm_config(bn: keras.layers.Layer) -> QuantizeConfig:
    consumers = _consumers(bn)
    if consumers and all(_is_relu(c) for c in consumers):
        # The ReLU quantizes its output; the converter fuses BN (mul/add) and ReLU behind it.
        return default_8bit_quantize_configs.NoOpQuantizeConfig()
    return default_8bit_quantize_configs.Default8BitOutputQuantizeConfig()


def _resolve(source: ConfigSource, layer: keras.layers.Layer) -> QuantizeConfig:
    return source if isinstance(source, QuantizeConfig) else source(layer)


def plan_annotations(
    model: keras.Model, configs: Mapping[type, ConfigSource]
) -> dict[str, QuantizeConfig | None]:
    """Layer name -> QuantizeConfig to annotate with (``None``: TF-MOT's own handling).

    Raises:
        QuantizationCoverageError: naming every layer that would stay float.
        ValueError: the model still has pruning or QAT wrappers, or contains a nested model.
    """
    registry = default_8bit_quantize_registry.Default8BitQuantizeRegistry()
    plan: dict[str, QuantizeConfig | None] = {}
    uncovered = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, pruning_wrapper.PruneLowMagnitude):
            raise ValueError(f"layer {layer.name!r} is still wrapped for pruning: call strip_pruning first")
        if isinstance(layer, quantize_wrapper.QuantizeWrapper):
            raise ValueError(f"layer {layer.name!r} is already quantization-aware: expected a float model")
        if isinstance(layer, keras.Model):
            raise ValueError(f"layer {layer.name!r} is a nested model: expected a flat functional model")
        layer_class = type(layer)
        if layer_class in configs:
            plan[layer.name] = _resolve(configs[layer_class], layer)
        elif layer_class is keras.layers.BatchNormalization:
            plan[layer.name] = None if batchnorm_is_folded_by_tfmot(layer, model) else _batchnorm_config(layer)
        elif registry.supports(layer):
            plan[layer.name] = None
        else:
            uncovered.append(f"{layer.name} ({layer_class.__module__}.{layer_class.__name__})")
    if uncovered:
        raise QuantizationCoverageError(
            "these layers would stay float after QAT (no TF-MOT support and no QuantizeConfig in the "
            f"registry): {', '.join(uncovered)}; add a config via extra_configs or "
            "tfasc.compress.qat.tfasc_quantize_configs"
        )
    return plan


def _fresh_copy(model: keras.Model) -> keras.Model:
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def qat_scope(extra_objects: Mapping[str, Any] | None = None):
    """``quantize_scope`` with tfasc's configs and the prune-preserving quantizers (for loading)."""
    objects = {
        "OutputOnlyQuantizeConfig": OutputOnlyQuantizeConfig,
        "KernelsAndOutputQuantizeConfig": KernelsAndOutputQuantizeConfig,
        "PrunePreserveDefault8BitWeightsQuantizer": pp_registry.PrunePreserveDefault8BitWeightsQuantizer,
        "PrunePreserveDefault8BitConvWeightsQuantizer": pp_registry.PrunePreserveDefault8BitConvWeightsQuantizer,
    }
    objects.update(extra_objects or {})
    return tfmot.quantization.keras.quantize_scope(objects)


def quantize_model(
    model: keras.Model,
    *,
    preserve_sparsity: bool,
    extra_configs: Mapping[type, ConfigSource] | None = None,
) -> keras.Model:
    """A quantization-aware copy of ``model`` (8-bit weights and activations, TF-MOT).

    Args:
        model: float functional/sequential model (pruning wrappers stripped),
            ``[batch, freq, time, channels]`` -> logits.
        preserve_sparsity: keep pruned zeros at zero during QAT (prune-preserving scheme).
        extra_configs: layer class -> QuantizeConfig (or a function of the layer returning one);
            overrides ``tfasc_quantize_configs()``.

    Raises:
        QuantizationCoverageError: a layer would stay float; the message names it.
    """
    configs: dict[type, ConfigSource] = {**tfasc_quantize_configs(), **(extra_configs or {})}
    # Work on a fresh copy: layer objects reused by other models (pruning wrappers and
    # strip_pruning reuse them) carry those models' nodes too, and the BN folding decision
    # depends on how often this model calls each layer.
    model = _fresh_copy(model)
    plan = plan_annotations(model, configs)

    def annotate(layer: keras.layers.Layer) -> keras.layers.Layer:
        if layer.name not in plan:
            return layer
        return tfmot.quantization.keras.quantize_annotate_layer(layer, plan[layer.name])

    # clone_model visits each layer object once, so a shared layer gets one annotation wrapper.
    annotated = keras.models.clone_model(model, clone_function=annotate)
    custom_objects: dict[str, Any] = {}
    for layer in model.layers:
        if not type(layer).__module__.startswith(("tf_keras.", "keras.")):
            custom_objects[type(layer).__name__] = type(layer)
    for config in plan.values():
        if config is not None:
            custom_objects[type(config).__name__] = type(config)
    scheme = _SparsityPreservingScheme() if preserve_sparsity else default_8bit_quantize_scheme.Default8BitQuantizeScheme()
    with qat_scope(custom_objects):
        return tfmot.quantization.keras.quantize_apply(annotated, scheme)
