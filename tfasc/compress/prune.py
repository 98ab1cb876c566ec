"""Magnitude pruning of convolution and dense kernels with TF-MOT.

'QTI Submission to DCASE 2020: Model Efficient Acoustic Scene Classification' (DCASE 2020 Task 1B
technical report, entry Chang_QTI_task1b), section 5.1, prunes *globally*: one L1 magnitude
threshold over all convolution weights, so layers with many small weights lose more.
TF-MOT's ``prune_low_magnitude`` prunes each layer to its own sparsity. This module reproduces the
global allocation with TF-MOT's machinery:

1. ``plan_pruning`` takes the trained weights, finds the magnitude threshold that zeroes
   ``target_sparsity`` of all prunable weights together, and reads off each layer's own sparsity
   (the fraction of its weights at or below that threshold);
2. ``apply_pruning`` wraps each prunable layer with a ``PolynomialDecay`` schedule ending at that
   layer's sparsity, so fine-tuning ramps every layer to the globally chosen allocation.

``mode="per_layer"`` gives every layer the same ``target_sparsity`` (TF-MOT's usual behaviour).

Prunable weights: the kernels of ``tfasc.compress.kernels`` (Conv1D, Conv2D, DepthwiseConv1D/2D,
both kernels of SeparableConv1D/2D, Conv2DTranspose, Dense; TF-MOT's own registry prunes nothing
in the depthwise layers and only the pointwise kernel of the separable ones) and the kernels a
tfasc layer declares in its ``LayerContract``. Biases, BatchNorm and every weight-free layer are
left unwrapped. A layer that owns weights and is neither in the table nor declares a contract is
an error naming it, so nothing is silently left dense.

A layer used N times (shared weights, functional reuse of one object) is wrapped once: one mask,
the sparsity lives in the one shared kernel, and it is counted once in the plan and the report.

Tensor layout of the models: ``[batch, freq, time, channels]`` float features (or
``[batch, samples, channels]`` waveforms) in, logits out.
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
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_impl, pruning_wrapper

from tfasc.compress.kernels import inner_layer, prunable_kernels

PruningMode = Literal["global", "per_layer"]
_MODES = ("global", "per_layer")


@keras.saving.register_keras_serializable(package="tfasc")
class PruneLowMagnitude(pruning_wrapper.PruneLowMagnitude):
    """TF-MOT's pruning wrapper, pruning the kernels ``tfasc.compress.kernels`` lists.

    TF-MOT's registry prunes nothing in ``DepthwiseConv2D``, only the pointwise kernel of the
    separable convolutions and does not know ``DepthwiseConv1D``. The table's kernels are attached
    here as ``get_prunable_weights`` on the stock layer instance, also when a saved model is loaded
    again, which is why this is a registered subclass rather than a one-off patch in
    ``apply_pruning``. tfasc layers bring their own ``get_prunable_weights`` (``LayerContract``).

    ``kernel_sparsities`` (one per prunable weight, optional) gives every kernel its own final
    sparsity on the ``PolynomialDecay`` ramp of ``pruning_schedule``: TF-MOT prunes all weights of
    a layer to one sparsity, but a global threshold (a separable conv's depthwise and pointwise
    kernels) gives each kernel its own.
    """

    def __init__(
        self, layer: keras.layers.Layer, kernel_sparsities: list[float] | None = None, **kwargs: Any
    ) -> None:
        if not hasattr(layer, "get_prunable_weights"):
            layer.get_prunable_weights = lambda: prunable_kernels(layer)
        self.kernel_sparsities = None if kernel_sparsities is None else [float(s) for s in kernel_sparsities]
        super().__init__(layer, **kwargs)

    def build(self, input_shape):
        super().build(input_shape)
        if self.kernel_sparsities is None:
            return
        if len(self.kernel_sparsities) != len(self.pruning_vars):
            raise ValueError(
                f"{self.name}: {len(self.kernel_sparsities)} kernel sparsities for "
                f"{len(self.pruning_vars)} prunable weights"
            )
        ramp = self.pruning_schedule.get_config()["config"]
        self.pruning_obj = _KernelwisePruning([
            pruning_impl.Pruning(
                training_step_fn=lambda: self.pruning_step,
                pruning_vars=[variables],
                pruning_schedule=tfmot.sparsity.keras.PolynomialDecay(**{**ramp, "final_sparsity": sparsity}),
                block_size=self.block_size,
                block_pooling_type=self.block_pooling_type,
            )
            for variables, sparsity in zip(self.pruning_vars, self.kernel_sparsities)
        ])

    def get_config(self):
        return {**super().get_config(), "kernel_sparsities": self.kernel_sparsities}


class _KernelwisePruning:
    """TF-MOT's ``Pruning`` interface over one ``Pruning`` (one schedule) per kernel."""

    def __init__(self, prunings: list[pruning_impl.Pruning]) -> None:
        self._prunings = prunings

    def conditional_mask_update(self):
        return tf.group([p.conditional_mask_update() for p in self._prunings])

    def weight_mask_op(self):
        return tf.group([p.weight_mask_op() for p in self._prunings])


@dataclasses.dataclass(frozen=True, kw_only=True)
class LayerPruningTarget:
    """Pruning target of one layer.

    Attributes:
        layer: layer name in the float model.
        params: number of prunable weights (kernel elements) the layer owns, counted once.
        sparsity: fraction of those weights to zero at the end of the schedule.
        kernel_sparsities: the same per prunable kernel, in ``get_prunable_weights`` order.
    """

    layer: str
    params: int
    sparsity: float
    kernel_sparsities: tuple[float, ...]


@dataclasses.dataclass(frozen=True, kw_only=True)
class PruningPlan:
    """How the sparsity is spread over the layers.

    Attributes:
        mode: ``"global"`` (one magnitude threshold over all prunable weights, report section 5.1)
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


def prunable_weights(layer: keras.layers.Layer) -> list[tf.Variable]:
    """The kernels of ``layer`` that pruning zeroes; ``[]`` for layers pruning leaves alone.

    Raises:
        ValueError: ``layer`` is a nested model.
        tfasc.compress.kernels.UndeclaredLayerError: the layer owns weights but is neither in the
            kernel table nor declares a ``LayerContract``.
    """
    if hasattr(layer, "_weight_vars") and isinstance(layer, keras.layers.Wrapper):
        # A QAT wrapper: the layer's kernel attribute now holds the fake-quantized tensor; the
        # variables are kept as (variable, quantizer, quantizer variables).
        return [variable for variable, _, _ in layer._weight_vars]
    layer = inner_layer(layer)
    if isinstance(layer, keras.Model):
        raise ValueError(
            f"layer {layer.name!r} is a nested model; flatten it before pruning (expected a "
            "functional or sequential model whose layers are not models)"
        )
    return prunable_kernels(layer)


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

    In global mode each kernel's target is the fraction of its weights whose magnitude is at or
    below the one global threshold (a layer's target is its kernels' weighted mean); the targets'
    weighted mean is ``target_sparsity`` (to within ties). TF-MOT schedules need sparsities below
    1, so a kernel entirely below the threshold is capped at 0.999 (reported as such).
    """
    _check_sparsity(target_sparsity)
    if mode not in _MODES:
        raise ValueError(f"mode={mode!r}: expected one of {_MODES}")
    layers = _unique_prunable_layers(model)
    if not layers:
        raise ValueError(
            f"model {model.name!r} has no prunable layer (a kernel layer of tfasc.compress.kernels "
            "or a tfasc layer declaring prunable kernels)"
        )
    magnitudes = [[np.abs(w.numpy()).ravel() for w in weights] for _, weights in layers]
    threshold = None
    if mode == "global":
        threshold = global_threshold(np.concatenate([m for kernels in magnitudes for m in kernels]), target_sparsity)
    targets = []
    for (layer, _), kernels in zip(layers, magnitudes):
        if mode == "global":
            sparsities = tuple(min(float(np.mean(values <= threshold)), 0.999) for values in kernels)
        else:
            sparsities = (float(target_sparsity),) * len(kernels)
        params = sum(values.size for values in kernels)
        overall = sum(s * values.size for s, values in zip(sparsities, kernels)) / params
        targets.append(
            LayerPruningTarget(layer=layer.name, params=int(params), sparsity=overall, kernel_sparsities=sparsities)
        )
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
        mode: ``"global"`` (report section 5.1) or ``"per_layer"``; see the module docstring.
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
    targets = {t.layer: t for t in plan.layers}

    def wrap(layer: keras.layers.Layer) -> keras.layers.Layer:
        if layer.name not in targets:
            if prunable_weights(layer):
                raise ValueError(f"layer {layer.name!r} is prunable but missing from the pruning plan")
            return layer
        schedule = tfmot.sparsity.keras.PolynomialDecay(
            initial_sparsity=0.0,
            final_sparsity=targets[layer.name].sparsity,
            begin_step=begin_step,
            end_step=end_step,
            frequency=frequency,
        )
        return PruneLowMagnitude(
            layer, pruning_schedule=schedule, kernel_sparsities=list(targets[layer.name].kernel_sparsities)
        )

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
            report_layers[inner_layer(layer).name] = {
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

