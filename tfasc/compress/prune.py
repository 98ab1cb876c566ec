"""Magnitude pruning of convolution and dense kernels with TF-MOT.

The paper (Kim et al., "Shared residual + FreqMix", section 5.1) prunes *globally*: one L1
magnitude threshold over all convolution weights, so layers with many small weights lose more.
TF-MOT's ``prune_low_magnitude`` prunes each layer to its own sparsity. This module reproduces the
global allocation with TF-MOT's machinery:

1. ``plan_pruning`` takes the trained weights, finds the magnitude threshold that zeroes
   ``target_sparsity`` of all prunable weights together, and reads off each layer's own sparsity
   (the fraction of its weights at or below that threshold);
2. ``apply_pruning`` wraps each prunable layer with a ``PolynomialDecay`` schedule ending at that
   layer's sparsity, so fine-tuning ramps every layer to the globally chosen allocation.

``mode="per_layer"`` gives every layer the same ``target_sparsity`` (TF-MOT's usual behaviour).

Prunable weights: ``Conv2D.kernel``, ``DepthwiseConv2D.depthwise_kernel`` (TF-MOT's registry knows
the layer but prunes nothing in it; we add the kernel), ``Dense.kernel``, and whatever a custom
layer returns from ``get_prunable_weights`` (``tfmot.sparsity.keras.PrunableLayer``). Biases,
BatchNorm and every weight-free layer are left unwrapped. A custom layer that owns a kernel but
does not say which weights to prune is an error, so nothing is silently left dense.

A layer used N times (shared weights, functional reuse of one object) is wrapped once: one mask,
the sparsity lives in the one shared kernel, and it is counted once in the plan and the report.

Tensor layout of the models: ``[batch, freq, time, channels]`` float features in, logits out.
Training a wrapped model needs the callbacks from ``pruning_callbacks()`` (``UpdatePruningStep``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import numpy as np

import tfasc  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
import tensorflow as tf
import tf_keras as keras
import tensorflow_model_optimization as tfmot
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_wrapper

PruningMode = Literal["global", "per_layer"]
_MODES = ("global", "per_layer")


@keras.saving.register_keras_serializable(package="tfasc")
class PruneLowMagnitude(pruning_wrapper.PruneLowMagnitude):
    """TF-MOT's pruning wrapper that also prunes ``DepthwiseConv2D.depthwise_kernel``.

    TF-MOT's registry lists ``DepthwiseConv2D`` with no prunable weights. The kernel is attached
    here as ``get_prunable_weights`` on the instance, also when a saved model is loaded again,
    which is why this is a registered subclass rather than a one-off patch in ``apply_pruning``.
    """

    def __init__(self, layer: keras.layers.Layer, **kwargs: Any) -> None:
        if type(layer) is keras.layers.DepthwiseConv2D and not hasattr(layer, "get_prunable_weights"):
            layer.get_prunable_weights = lambda: [layer.depthwise_kernel]
        super().__init__(layer, **kwargs)


@dataclasses.dataclass(frozen=True, kw_only=True)
class LayerPruningTarget:
    """Pruning target of one layer.

    Attributes:
        layer: layer name in the float model.
        params: number of prunable weights (kernel elements) the layer owns, counted once.
        sparsity: fraction of those weights to zero at the end of the schedule.
    """

    layer: str
    params: int
    sparsity: float


@dataclasses.dataclass(frozen=True, kw_only=True)
class PruningPlan:
    """How the sparsity is spread over the layers.

    Attributes:
        mode: ``"global"`` (one magnitude threshold over all prunable weights, paper section 5.1)
            or ``"per_layer"`` (every layer pruned to ``target_sparsity``).
        target_sparsity: requested fraction of zeros over all prunable weights together.
        threshold: the global magnitude threshold (``None`` in per-layer mode).
        layers: one target per prunable layer, in model order.
    """

    mode: str
    target_sparsity: float
    threshold: float | None
    layers: tuple[LayerPruningTarget, ...]

    @property
    def expected_sparsity(self) -> float:
        """Fraction of zeros over all prunable weights once every layer reaches its target."""
        total = sum(t.params for t in self.layers)
        return sum(t.params * t.sparsity for t in self.layers) / max(total, 1)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for report.json."""
        return {
            "mode": self.mode,
            "target_sparsity": self.target_sparsity,
            "threshold": self.threshold,
            "expected_sparsity": self.expected_sparsity,
            "layers": [dataclasses.asdict(t) for t in self.layers],
        }


def _inner_layer(layer: keras.layers.Layer) -> keras.layers.Layer:
    """The layer inside TF-MOT wrappers (pruning, QAT), or the layer itself."""
    while isinstance(layer, keras.layers.Wrapper):
        layer = layer.layer
    return layer


def prunable_weights(layer: keras.layers.Layer) -> list[tf.Variable]:
    """The kernels of ``layer`` that pruning zeroes; ``[]`` for layers pruning leaves alone.

    Raises:
        ValueError: a custom layer owns a kernel (a weight of rank >= 2) but does not implement
            ``get_prunable_weights``.
    """
    if hasattr(layer, "_weight_vars") and isinstance(layer, keras.layers.Wrapper):
        # A QAT wrapper: the layer's kernel attribute now holds the fake-quantized tensor; the
        # variables are kept as (variable, quantizer, quantizer variables).
        return [variable for variable, _, _ in layer._weight_vars]
    layer = _inner_layer(layer)
    kind = type(layer)
    if kind in (keras.layers.Conv2D, keras.layers.Dense):
        return [layer.kernel]
    if kind is keras.layers.DepthwiseConv2D:
        return [layer.depthwise_kernel]
    if isinstance(layer, tfmot.sparsity.keras.PrunableLayer) or hasattr(layer, "get_prunable_weights"):
        return list(layer.get_prunable_weights())
    if isinstance(layer, keras.Model):
        raise ValueError(
            f"layer {layer.name!r} is a nested model; flatten it before pruning (expected a "
            "functional or sequential model whose layers are not models)"
        )
    owned_kernels = [w.name for w in layer.weights if len(w.shape) >= 2]
    if owned_kernels and not _is_known_unprunable(layer):
        raise ValueError(
            f"layer {layer.name!r} ({kind.__name__}) owns kernels {owned_kernels} but pruning does "
            "not know which to prune: implement tfmot.sparsity.keras.PrunableLayer."
            "get_prunable_weights on the layer class"
        )
    return []


def _is_known_unprunable(layer: keras.layers.Layer) -> bool:
    """Built-in layers with rank>=2 weights that are deliberately not pruned (e.g. Embedding)."""
    return type(layer).__module__.startswith("tf_keras.")


def _unique_prunable_layers(model: keras.Model) -> list[tuple[keras.layers.Layer, list[tf.Variable]]]:
    """(layer, its prunable weights) for each distinct prunable layer, in model order."""
    seen: set[int] = set()
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer) or id(layer) in seen:
            continue
        seen.add(id(layer))
        weights = prunable_weights(layer)
        if weights:
            found.append((layer, weights))
    return found


def _check_sparsity(target_sparsity: float) -> None:
    if not 0.0 <= target_sparsity < 1.0:
        raise ValueError(f"target_sparsity={target_sparsity!r}: expected a fraction in [0, 1)")


def global_threshold(magnitudes: np.ndarray, target_sparsity: float) -> float:
    """Magnitude at or below which ``target_sparsity`` of ``magnitudes`` lie (0 prunes nothing).

    Uses the k-th smallest magnitude with k = round(target_sparsity * n), like TF-MOT's per-layer
    rounding, so the global count of zeros matches the target to one weight.
    """
    _check_sparsity(target_sparsity)
    flat = np.sort(np.abs(np.asarray(magnitudes, dtype=np.float64)).ravel())
    k = int(round(target_sparsity * flat.size))
    if k == 0:
        return -1.0
    return float(flat[k - 1])


def plan_pruning(
    model: keras.Model, *, target_sparsity: float, mode: PruningMode = "global"
) -> PruningPlan:
    """Per-layer sparsity targets for ``model``'s current (trained) weights.

    In global mode a layer's target is the fraction of its weights whose magnitude is at or
    below the one global threshold; the targets' weighted mean is ``target_sparsity`` (to within
    ties). TF-MOT schedules need sparsities below 1, so a layer entirely below the threshold is
    capped at 0.999 (reported as such).
    """
    _check_sparsity(target_sparsity)
    if mode not in _MODES:
        raise ValueError(f"mode={mode!r}: expected one of {_MODES}")
    layers = _unique_prunable_layers(model)
    if not layers:
        raise ValueError(
            f"model {model.name!r} has no prunable layer (Conv2D, DepthwiseConv2D, Dense or a "
            "PrunableLayer)"
        )
    per_layer_values = [
        np.concatenate([np.abs(w.numpy()).ravel() for w in weights]) for _, weights in layers
    ]
    threshold = None
    if mode == "global":
        threshold = global_threshold(np.concatenate(per_layer_values), target_sparsity)
    targets = []
    for (layer, _), values in zip(layers, per_layer_values):
        if mode == "global":
            sparsity = min(float(np.mean(values <= threshold)), 0.999)
        else:
            sparsity = float(target_sparsity)
        targets.append(LayerPruningTarget(layer=layer.name, params=int(values.size), sparsity=sparsity))
    return PruningPlan(mode=mode, target_sparsity=float(target_sparsity), threshold=threshold, layers=tuple(targets))


def apply_pruning(
    model: keras.Model,
    *,
    target_sparsity: float,
    begin_step: int,
    end_step: int,
    frequency: int,
    mode: PruningMode = "global",
    plan: PruningPlan | None = None,
) -> keras.Model:
    """Wrap every prunable layer of ``model`` for magnitude pruning (returns a new model).

    Args:
        model: trained functional/sequential model, ``[batch, freq, time, channels]`` -> logits.
        target_sparsity: fraction of zeros over all prunable weights at ``end_step``.
        begin_step, end_step: optimizer steps where the PolynomialDecay ramp (0 -> target,
            cubic) starts and ends.
        frequency: steps between mask updates.
        mode: ``"global"`` (paper 5.1) or ``"per_layer"``; see the module docstring.
        plan: a plan from ``plan_pruning`` to use instead of computing one (its mode wins).

    The plan actually used is ``plan_pruning(model, target_sparsity=..., mode=...)``; call that
    function to record it (``plan.to_dict()``). Train with ``pruning_callbacks()``.
    """
    if not (0 <= begin_step < end_step):
        raise ValueError(f"begin_step={begin_step}, end_step={end_step}: expected 0 <= begin_step < end_step")
    if frequency < 1:
        raise ValueError(f"frequency={frequency}: expected a positive number of steps")
    if plan is None:
        plan = plan_pruning(model, target_sparsity=target_sparsity, mode=mode)
    targets = {t.layer: t.sparsity for t in plan.layers}

    def wrap(layer: keras.layers.Layer) -> keras.layers.Layer:
        if layer.name not in targets:
            if prunable_weights(layer):
                raise ValueError(f"layer {layer.name!r} is prunable but missing from the pruning plan")
            return layer
        schedule = tfmot.sparsity.keras.PolynomialDecay(
            initial_sparsity=0.0,
            final_sparsity=targets[layer.name],
            begin_step=begin_step,
            end_step=end_step,
            frequency=frequency,
        )
        return PruneLowMagnitude(layer, pruning_schedule=schedule)

    # clone_model calls wrap() once per layer object, so a shared layer gets one wrapper (one mask)
    # that every call site reuses. Wrapping the original layer keeps its trained weights.
    pruned = keras.models.clone_model(model, clone_function=wrap)
    return pruned


def pruning_callbacks(log_dir: str | None = None) -> list[keras.callbacks.Callback]:
    """Callbacks a pruning fine-tune needs: ``UpdatePruningStep`` (+ summaries if ``log_dir``)."""
    callbacks: list[keras.callbacks.Callback] = [tfmot.sparsity.keras.UpdatePruningStep()]
    if log_dir is not None:
        callbacks.append(tfmot.sparsity.keras.PruningSummaries(log_dir=log_dir))
    return callbacks


def strip_pruning(model: keras.Model) -> keras.Model:
    """Remove the pruning wrappers; the kernels keep their zeros."""
    return tfmot.sparsity.keras.strip_pruning(model)


def sparsity_report(model: keras.Model, *, plan: PruningPlan | None = None) -> dict[str, Any]:
    """Zeros and parameters of each prunable kernel and in total (shared kernels counted once).

    Works on float, pruning-wrapped and QAT-wrapped models. Returns
    ``{"layers": {name: {"params", "zeros", "sparsity"}}, "total": {...}}`` plus ``"plan"``
    (mode, targets) when ``plan`` is given.
    """
    report_layers: dict[str, dict[str, float]] = {}
    seen_variables: set[int] = set()
    total_params = total_zeros = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        params = zeros = 0
        for weight in prunable_weights(layer):
            if id(weight) in seen_variables:
                continue
            seen_variables.add(id(weight))
            values = weight.numpy()
            params += values.size
            zeros += int(np.count_nonzero(values == 0))
        if params:
            report_layers[_inner_layer(layer).name] = {
                "params": params, "zeros": zeros, "sparsity": zeros / params,
            }
            total_params += params
            total_zeros += zeros
    report: dict[str, Any] = {
        "layers": report_layers,
        "total": {
            "params": total_params,
            "zeros": total_zeros,
            "sparsity": total_zeros / max(total_params, 1),
        },
    }
    if plan is not None:
        report["plan"] = plan.to_dict()
    return report

