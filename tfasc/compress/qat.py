"""Quantization-aware training (QAT) of a whole tfasc model with TF-MOT, 8-bit.

``quantize_model`` annotates every layer, then calls ``quantize_apply`` inside ``quantize_scope``:

- stock layers that own kernels follow ``tfasc.compress.kernels``: TF-MOT's default 8-bit registry
  quantizes Conv2D, DepthwiseConv2D, Conv2DTranspose and Dense and splits SeparableConv2D into
  DepthwiseConv2D + Conv2D; tfasc adds Conv1D with a per-tensor 8-bit kernel (TF-MOT's
  per-channel quantizer handles rank-2 and rank-4 weights only) and MaxPooling1D without a
  quantizer, as TF-MOT treats MaxPooling2D (the converter maps it to MAX_POOL_2D). Measured on
  this stack: a Conv1D stem converts to int8 CONV_2D between RESHAPE/EXPAND_DIMS and runs
  bit-exactly in TFLite Micro. DepthwiseConv1D and SeparableConv1D have no 8-bit path and are
  refused by name. A kernel layer right before a ReLU layer keeps its weight quantizer, which
  TF-MOT's ``LayerReLUQuantize`` transform would drop (``_LayoutTransform``);
- weight-free stock layers TF-MOT knows (ReLU, Add, pooling, Reshape, ``Activation`` incl.
  swish, ...) get TF-MOT's own config;
- tfasc layers get the ``QuantizeConfig`` their contract declares (``tfasc.layers.contract``), e.g.
  ``OutputOnlyQuantizeConfig`` for sub-spectral normalization; a layer whose contract has no config
  (its export form replaces it: call ``tfasc.compress.export_form.to_export_form`` first) or that
  is not part of the int8 graph (the log-mel front-end) is refused by name. ``extra_configs``
  covers other custom layers;
- ``BatchNormalization`` that TF-MOT folds into the preceding layer
  (``tfasc.compress.graph.batchnorm_is_folded_by_tfmot``) is left to TF-MOT. TF-MOT does not fold
  a BN whose conv is shared (called more than once: the shared residual blocks of 'QTI Submission
  to DCASE 2020: Model Efficient Acoustic Scene Classification', DCASE 2020 Task 1B technical
  report, entry Chang_QTI_task1b, section 2.1), feeds other layers too, or follows a Conv1D; such
  BNs are annotated here: ``NoOpQuantizeConfig`` when every consumer is a ReLU (the ReLU quantizes
  its output) and ``Default8BitOutputQuantizeConfig`` otherwise (e.g. feeding a residual add);
- anything else (a custom layer without a config, a ``TFOpLambda`` from ``x * 2`` in functional
  code, a nested model) is an error naming the layers, so no layer is silently left float.

``preserve_sparsity=True`` uses TF-MOT's prune-preserving registry extended to every prunable kernel
of ``tfasc.compress.kernels`` that quantizes: TF-MOT itself masks only Conv2D and Dense (it disables
DepthwiseConv2D, which its pruning could not prune). Custom configs with weights do not preserve
sparsity (TF-MOT applies the mask only to registry configs). Models: ``[batch, freq, time,
channels]`` float features (or ``[batch, samples, channels]`` waveforms) -> logits.

QAT models do not load from ``.keras`` (TF-MOT's QuantizeLayer), and a full HDF5 model can run code
when loaded, so a QAT model is kept as its weights (``tfasc.models.saving.save_weights``) and
rebuilt with :func:`quantize_model` from its float model before the weights are loaded back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

import tfasc  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
import tf_keras as keras
import tensorflow_model_optimization as tfmot
from tensorflow_model_optimization.python.core.quantization.keras import quantize_aware_activation, quantize_wrapper
from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.prune_preserve import (
    prune_preserve_quantize_registry as pp_registry,
)
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
    default_8bit_quantize_configs,
    default_8bit_quantize_layout_transform,
    default_8bit_quantize_registry,
    default_8bit_quantize_scheme,
)
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_wrapper

from tfasc.compress.graph import ModelGraph, batchnorm_is_folded_by_tfmot
from tfasc.compress.kernels import (
    KERNEL_TABLE,
    QAT_BATCHNORM,
    QAT_CONTRACT,
    QAT_NONE,
    QAT_PER_TENSOR,
    QAT_TFMOT,
    UndeclaredLayerError,
    kernel_spec,
)
from tfasc.layers.quantize_configs import OutputOnlyQuantizeConfig  # noqa: F401

QuantizeConfig = tfmot.quantization.keras.QuantizeConfig
#: An ``extra_configs`` value: a QuantizeConfig instance, or a function building one for a given layer.
ConfigSource = QuantizeConfig | Callable[[keras.layers.Layer], QuantizeConfig]

#: Weight-free layers TF-MOT's registry leaves out that quantize as their 2-D counterparts do.
_NO_QUANTIZE_ADDITIONS = (keras.layers.MaxPooling1D,)


class QuantizationCoverageError(ValueError):
    """Some layers would stay float after QAT: neither TF-MOT nor a declared config covers them."""


class _Registry(default_8bit_quantize_registry.Default8BitQuantizeRegistry):
    """TF-MOT's default 8-bit registry plus the per-tensor kernel layers of the kernel table."""

    def __init__(self) -> None:
        super().__init__()
        for spec in KERNEL_TABLE.values():
            if spec.qat == QAT_PER_TENSOR:
                self._layer_quantize_map[spec.layer_type] = default_8bit_quantize_registry._QuantizeInfo(
                    spec.layer_type, list(spec.kernels), ["activation"], False
                )
        for layer_type in _NO_QUANTIZE_ADDITIONS:
            self._layer_quantize_map[layer_type] = default_8bit_quantize_registry._no_quantize(layer_type)


def _prune_preserve_infos() -> dict[type, pp_registry._PrunePreserveInfo]:
    """Prunable kernel types that quantize -> (kernel names, the config class ``_Registry`` gives them)."""
    registry = _Registry()
    return {
        spec.layer_type: pp_registry._PrunePreserveInfo(
            list(spec.kernels), [type(registry._get_quantize_config(spec.layer_type)).__name__]
        )
        for spec in KERNEL_TABLE.values()
        if spec.prunable and spec.kernels and spec.qat in (QAT_TFMOT, QAT_PER_TENSOR)
    }


class _SparsityPreservingRegistry(pp_registry.Default8bitPrunePreserveQuantizeRegistry):
    """TF-MOT's prune-preserving registry, masking every prunable kernel ``_Registry`` quantizes."""

    _LAYERS_CONFIG_MAP = _prune_preserve_infos()
    _DISABLE_PRUNE_PRESERVE = frozenset()

    def __init__(self) -> None:
        super().__init__()
        # Conv2DTranspose's kernel quantizer is per-tensor (it transposes the kernel around the
        # quantization); per-tensor quantization does not depend on axis order, so the per-tensor
        # masking quantizer is the same quantization with the mask applied.
        self._config_quantizer_map["Default8BitConvTransposeQuantizeConfig"] = (
            pp_registry.PrunePreserveDefault8BitWeightsQuantizer()
        )

    def get_quantize_config(self, layer):
        return self.apply_sparsity_preserve_quantize_config(layer, _Registry().get_quantize_config(layer))


def _lost_its_weight_quantizer(layer: keras.layers.Layer, config: QuantizeConfig | None) -> bool:
    """A linear kernel layer TF-MOT's ``LayerReLUQuantize`` gave ``NoOpQuantizeConfig``."""
    spec = KERNEL_TABLE.get(type(layer))
    return (
        isinstance(config, default_8bit_quantize_configs.NoOpQuantizeConfig)
        and spec is not None
        and bool(spec.kernels)
        and keras.activations.serialize(layer.activation) == "linear"
    )


class _LayoutTransform(default_8bit_quantize_layout_transform.Default8BitQuantizeLayoutTransform):
    """TF-MOT's 8-bit layout transforms, keeping a kernel layer before a ReLU weight-quantized.

    TF-MOT's ``LayerReLUQuantize`` gives the layer before a ReLU ``NoOpQuantizeConfig`` so that no
    fake-quant sits between them; for a Conv2D, DepthwiseConv2D, Conv2DTranspose or Dense that
    also drops its weight quantizer (measured on this stack: the kernel trains unquantized and
    prune-preserving masks do not apply, so pruning zeros fill in). Such a layer gets a
    ``NoOpActivation`` and its registry config instead, as TF-MOT's own Conv + BN + ReLU transform
    does.
    """

    def apply(self, model, layer_quantize_map):
        model, layer_quantize_map = super().apply(model, layer_quantize_map)
        for layer in model.layers:
            entry = layer_quantize_map.get(layer.name, {})
            if _lost_its_weight_quantizer(layer, entry.get("quantize_config")):
                layer.activation = quantize_aware_activation.NoOpActivation()
                entry["quantize_config"] = None
        return model, layer_quantize_map


class _Scheme(default_8bit_quantize_scheme.Default8BitQuantizeScheme):
    """TF-MOT's 8-bit scheme with ``_LayoutTransform`` and ``_Registry`` (or ``_SparsityPreservingRegistry``)."""

    def __init__(self, *, preserve_sparsity: bool) -> None:
        super().__init__()
        self._preserve_sparsity = preserve_sparsity

    def get_layout_transformer(self):
        return _LayoutTransform()

    def get_quantize_registry(self):
        return _SparsityPreservingRegistry() if self._preserve_sparsity else _Registry()


def _is_relu(layer: keras.layers.Layer) -> bool:
    if type(layer) is keras.layers.ReLU:
        return True
    return type(layer) is keras.layers.Activation and layer.get_config()["activation"] in ("relu", "relu6")


def _batchnorm_config(bn: keras.layers.Layer, graph: ModelGraph) -> QuantizeConfig | None:
    if batchnorm_is_folded_by_tfmot(bn, graph):
        return None
    consumers = graph.consumers.get(id(bn), [])
    if consumers and all(_is_relu(c) for c in consumers):
        # The ReLU quantizes its output; the converter fuses BN (mul/add) and ReLU behind it.
        return default_8bit_quantize_configs.NoOpQuantizeConfig()
    return default_8bit_quantize_configs.Default8BitOutputQuantizeConfig()


def _contract_config(layer: keras.layers.Layer) -> QuantizeConfig:
    """The QuantizeConfig a tfasc layer declares; raises ``QuantizationCoverageError`` when QAT cannot use it."""
    if not layer.in_int8_graph:
        raise QuantizationCoverageError(
            "is not part of the int8 graph (its contract: a float front-end in front of it); quantize "
            "the model that takes its output"
        )
    config = layer.quantize_config()
    if config is None and layer.export_form is not None:
        raise QuantizationCoverageError(
            "declares no QuantizeConfig because its export form replaces it: call "
            "tfasc.compress.export_form.to_export_form before QAT"
        )
    if config is None:
        raise QuantizationCoverageError("declares no QuantizeConfig in its LayerContract")
    return config


def _annotation(layer: keras.layers.Layer, graph: ModelGraph, registry: _Registry) -> QuantizeConfig | None:
    """The config to annotate ``layer`` with (``None``: TF-MOT's own handling).

    Raises:
        QuantizationCoverageError: with the reason (without the layer's name) when no 8-bit path exists.
    """
    try:
        spec = kernel_spec(layer)
    except UndeclaredLayerError:
        raise QuantizationCoverageError("owns weights but declares no LayerContract") from None
    if spec is None:
        if registry.supports(layer):
            return None
        raise QuantizationCoverageError("no TF-MOT support and no QuantizeConfig")
    if spec.qat == QAT_CONTRACT:
        return _contract_config(layer)
    if spec.qat == QAT_BATCHNORM:
        return _batchnorm_config(layer, graph)
    if spec.qat == QAT_NONE:
        raise QuantizationCoverageError("TF-MOT 0.8.1 has no 8-bit quantization for this layer type")
    return None


def _check_float_layer(layer: keras.layers.Layer) -> None:
    if isinstance(layer, pruning_wrapper.PruneLowMagnitude):
        raise ValueError(f"layer {layer.name!r} is still wrapped for pruning: call strip_pruning first")
    if isinstance(layer, quantize_wrapper.QuantizeWrapper):
        raise ValueError(f"layer {layer.name!r} is already quantization-aware: expected a float model")
    if isinstance(layer, keras.Model):
        raise ValueError(f"layer {layer.name!r} is a nested model: expected a flat functional model")


def _resolve(source: ConfigSource, layer: keras.layers.Layer) -> QuantizeConfig:
    return source if isinstance(source, QuantizeConfig) else source(layer)


def plan_annotations(
    model: keras.Model, configs: Mapping[type, ConfigSource]
) -> dict[str, QuantizeConfig | None]:
    """Layer name -> QuantizeConfig to annotate with (``None``: TF-MOT's own handling).

    ``configs`` (layer class -> config) wins over everything else.

    Raises:
        QuantizationCoverageError: naming every layer that would stay float, and why.
        ValueError: the model still has pruning or QAT wrappers, or contains a nested model.
    """
    registry = _Registry()
    graph = ModelGraph(model)
    plan: dict[str, QuantizeConfig | None] = {}
    uncovered = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        _check_float_layer(layer)
        layer_class = type(layer)
        if layer_class in configs:
            plan[layer.name] = _resolve(configs[layer_class], layer)
            continue
        try:
            plan[layer.name] = _annotation(layer, graph, registry)
        except QuantizationCoverageError as error:
            uncovered.append(f"{layer.name} ({layer_class.__module__}.{layer_class.__name__}): {error}")
    if uncovered:
        raise QuantizationCoverageError(
            "these layers would stay float after QAT: " + "; ".join(uncovered)
            + ". A custom layer declares its QuantizeConfig in its tfasc.layers.contract.LayerContract "
            "(or pass extra_configs)"
        )
    return plan


def _fresh_copy(model: keras.Model) -> keras.Model:
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def _registered_tfasc_objects() -> dict[str, Any]:
    """Every class registered under keras package ``tfasc``, by its bare name.

    The legacy HDF5 loader (the only format QAT models save to) resolves classes by bare name.
    """
    import tfasc.layers  # noqa: F401  (registers tfasc's layers)

    prefix = "tfasc>"
    return {
        name[len(prefix):]: obj for name, obj in keras.saving.get_custom_objects().items() if name.startswith(prefix)
    }


def qat_scope(extra_objects: Mapping[str, Any] | None = None):
    """``quantize_scope`` with tfasc's registered classes, the prune-preserving quantizers and ``extra_objects``."""
    objects = {
        **_registered_tfasc_objects(),
        "PrunePreserveDefault8BitWeightsQuantizer": pp_registry.PrunePreserveDefault8BitWeightsQuantizer,
        "PrunePreserveDefault8BitConvWeightsQuantizer": pp_registry.PrunePreserveDefault8BitConvWeightsQuantizer,
        **(extra_objects or {}),
    }
    return tfmot.quantization.keras.quantize_scope(objects)


def quantize_model(
    model: keras.Model,
    *,
    preserve_sparsity: bool,
    extra_configs: Mapping[type, ConfigSource] | None = None,
) -> keras.Model:
    """A quantization-aware copy of ``model`` (8-bit weights and activations, TF-MOT).

    Args:
        model: float functional/sequential model (pruning wrappers stripped; usually the output of
            ``tfasc.compress.export_form.to_export_form``), ``[batch, freq, time, channels]`` or
            ``[batch, samples, channels]`` -> logits.
        preserve_sparsity: keep pruned zeros at zero during QAT (prune-preserving scheme).
        extra_configs: layer class -> QuantizeConfig (or a function of the layer returning one);
            wins over TF-MOT's registry and the layers' contracts.

    Raises:
        QuantizationCoverageError: a layer would stay float; the message names it and says why.
    """
    # A fresh copy, so the QAT model shares no layer object with ``model`` (or with the models
    # ``model``'s layers were reused from).
    model = _fresh_copy(model)
    plan = plan_annotations(model, extra_configs or {})

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
    with qat_scope(custom_objects):
        return tfmot.quantization.keras.quantize_apply(annotated, _Scheme(preserve_sparsity=preserve_sparsity))
