"""Which layers own kernels, and what pruning, MAC counting and QAT do with them: one table.

Every consumer reads this module: pruning (``tfasc.compress.prune``: which weights to zero), the
export form and QAT (``tfasc.compress.export_form``, ``tfasc.compress.qat``: which producers TF-MOT
folds a following BatchNorm into, how TF-MOT quantizes a layer) and the complexity profile
(``tfasc.deploy.profile``: MACs, distinct kernels).

- Stock tf_keras layers that own weights are rows of ``KERNEL_TABLE``, looked up by *exact* type
  (a subclass may change what the weights mean, so it must declare itself).
- tfasc's own layers declare their contract in their class (``tfasc.layers.contract``); the table
  asks them.
- Weight-free layers (ReLU, pooling, Add, Reshape, Cropping, Concatenate, Dropout, InputLayer, ...)
  own no kernels and cost no MACs.
- Anything else that owns weights raises :class:`UndeclaredLayerError` naming the layer and its
  class, so no layer is silently left dense or uncounted.

Layouts are channels-last: ``[batch, freq, time, channels]`` for 2-D features,
``[batch, samples, channels]`` for waveforms. MACs are per call with the batch as 1; pruning
zeros are counted (dense kernels on a Cortex-M).

TF-MOT facts behind the table, read in tensorflow-model-optimization 0.8.1's source and measured on
this stack (tf_keras 2.17):

- Folding: the default 8-bit layout transforms fold a BatchNorm into a preceding linear layer
  whose class name matches ``Conv2D|DepthwiseConv2D`` or ``Dense``. The pattern is an un-anchored
  regex alternation, so ``Conv2DTranspose`` matches too (measured: Conv2DTranspose + BN quantizes
  without annotating the BN). ``SeparableConv2D`` is first split into DepthwiseConv2D + Conv2D,
  and the Conv2D folds the BN. Conv1D never folds.
- QAT: TF-MOT's registry quantizes Conv2D, DepthwiseConv2D, Conv2DTranspose and Dense and splits
  SeparableConv2D. It has no Conv1D entry, and its per-channel weight quantizer handles rank-2
  and rank-4 weights only; tfasc gives Conv1D a per-tensor 8-bit kernel config (a per-channel
  kernel reshaped to rank 2 fails conversion: "mismatched quantized axes", measured). Its
  SeparableConv1D transform builds Lambda layers that tf_keras refuses to deserialize in safe mode,
  and DepthwiseConv1D has no entry: both cannot be quantized.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable, Optional

import tfasc  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
import tensorflow as tf
import tf_keras as keras
from tensorflow_model_optimization.python.core.quantization.keras import quantize_layer

from tfasc.layers.contract import LayerContract, Shape, attribute

#: How 8-bit QAT handles a layer type (``KernelSpec.qat``).
QAT_TFMOT = "tfmot"  # TF-MOT's default 8-bit registry has a config for it
QAT_TFMOT_SPLIT = "tfmot_split"  # TF-MOT's layout transforms rewrite it into registry layers first
QAT_PER_TENSOR = "per_tensor"  # tfasc adds a per-tensor 8-bit kernel config to TF-MOT's registry
QAT_BATCHNORM = "batchnorm"  # folded by TF-MOT, else annotated by tfasc (tfasc.compress.qat)
QAT_CONTRACT = "contract"  # the layer's own LayerContract.quantize_config()
QAT_NONE = None  # no 8-bit path: QAT refuses the layer by name


class UndeclaredLayerError(ValueError):
    """A layer owns weights but is neither in ``KERNEL_TABLE`` nor a ``LayerContract``."""

    def __init__(self, layer: keras.layers.Layer) -> None:
        kind = type(layer)
        super().__init__(
            f"layer {layer.name!r} ({kind.__module__}.{kind.__name__}) owns weights "
            f"{[w.name for w in layer.weights]} but tfasc does not know its kernels, MACs or "
            "quantization: declare them with tfasc.layers.contract.LayerContract on the class, or add "
            "the stock type to tfasc.compress.kernels.KERNEL_TABLE"
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class KernelSpec:
    """What tfasc knows about one weight-owning layer type.

    Attributes:
        layer_type: the exact class.
        kernels: names of the attributes holding its kernels (weights multiplying inputs).
        macs: ``(layer, input_shape, output_shape) -> int``, one call, batch 1.
        prunable: whether pruning zeroes the kernels.
        folds_following_batchnorm: whether TF-MOT's 8-bit transforms fold a BatchNorm that follows
            the layer (when its activation is linear; the graph conditions are in
            ``tfasc.compress.graph``).
        qat: how 8-bit QAT handles it, one of the ``QAT_*`` constants.
    """

    layer_type: type
    kernels: tuple[str, ...]
    macs: Callable[[keras.layers.Layer, Shape, Shape], int]
    prunable: bool
    folds_following_batchnorm: bool
    qat: Optional[str]


def _elements(shape) -> int:
    return math.prod(int(d) for d in shape)


def _conv_macs(layer, input_shape: Shape, output_shape: Shape) -> int:
    # Every output element is one window: kernel [*k, in/groups, out] minus the output axis.
    return _elements(output_shape[1:]) * _elements(layer.kernel.shape[:-1])


def _transpose_conv_macs(layer, input_shape: Shape, output_shape: Shape) -> int:
    # Every input element scatters into a window: kernel [*k, out, in] minus the input axis.
    return _elements(input_shape[1:]) * _elements(layer.kernel.shape[:-1])


def _depthwise_macs(layer, input_shape: Shape, output_shape: Shape) -> int:
    # Every output channel (channel x multiplier) is one spatial window: kernel [*k, C, mult].
    return _elements(output_shape[1:]) * _elements(layer.depthwise_kernel.shape[:-2])


def _separable_macs(layer, input_shape: Shape, output_shape: Shape) -> int:
    # Depthwise into C x mult intermediate channels, then a 1x1 pointwise to the filters.
    *window, channels, multiplier = (int(d) for d in layer.depthwise_kernel.shape)
    intermediate = _elements(output_shape[1:-1]) * channels * multiplier
    return intermediate * (math.prod(window) + int(output_shape[-1]))


def _dense_macs(layer, input_shape: Shape, output_shape: Shape) -> int:
    return _elements(output_shape[1:]) * int(layer.kernel.shape[0])


def _no_macs(layer, input_shape: Shape, output_shape: Shape) -> int:
    # Normalizations are not counted (their inference affine folds into the neighbouring conv).
    return 0


def _spec(layer_type, kernels, macs, *, prunable=True, folds=False, qat=QAT_TFMOT) -> KernelSpec:
    return KernelSpec(
        layer_type=layer_type, kernels=kernels, macs=macs, prunable=prunable,
        folds_following_batchnorm=folds, qat=qat,
    )


_L = keras.layers
#: Stock tf_keras layers that own weights, by exact type.
KERNEL_TABLE: dict[type, KernelSpec] = {
    spec.layer_type: spec
    for spec in (
        _spec(_L.Conv1D, ("kernel",), _conv_macs, qat=QAT_PER_TENSOR),
        _spec(_L.Conv2D, ("kernel",), _conv_macs, folds=True),
        _spec(_L.DepthwiseConv1D, ("depthwise_kernel",), _depthwise_macs, qat=QAT_NONE),
        _spec(_L.DepthwiseConv2D, ("depthwise_kernel",), _depthwise_macs, folds=True),
        _spec(_L.SeparableConv1D, ("depthwise_kernel", "pointwise_kernel"), _separable_macs, qat=QAT_NONE),
        _spec(_L.SeparableConv2D, ("depthwise_kernel", "pointwise_kernel"), _separable_macs, folds=True,
              qat=QAT_TFMOT_SPLIT),
        _spec(_L.Conv2DTranspose, ("kernel",), _transpose_conv_macs, folds=True),
        _spec(_L.Dense, ("kernel",), _dense_macs, folds=True),
        _spec(_L.BatchNormalization, (), _no_macs, prunable=False, qat=QAT_BATCHNORM),
    )
}


def inner_layer(layer: keras.layers.Layer) -> keras.layers.Layer:
    """The layer inside TF-MOT wrappers (pruning, QAT), or the layer itself."""
    while isinstance(layer, keras.layers.Wrapper):
        layer = layer.layer
    return layer


def _contract_macs(layer: LayerContract, input_shape: Shape, output_shape: Shape) -> int:
    return int(layer.count_macs(input_shape, output_shape))


@functools.cache
def _contract_spec(layer_type: type, kernel_attributes: tuple[str, ...]) -> KernelSpec:
    return _spec(layer_type, kernel_attributes, _contract_macs, prunable=layer_type.prunable, qat=QAT_CONTRACT)


def _owns_model_weights(layer: keras.layers.Layer) -> bool:
    # TF-MOT's input QuantizeLayer holds quantizer ranges, not model weights.
    return bool(layer.weights) and not isinstance(layer, quantize_layer.QuantizeLayer)


def kernel_spec(layer: keras.layers.Layer) -> KernelSpec | None:
    """The spec of ``layer`` (wrappers looked through); ``None`` for a weight-free layer.

    Raises:
        UndeclaredLayerError: the layer owns weights but is neither a table type nor a
            ``LayerContract``.
    """
    layer = inner_layer(layer)
    if isinstance(layer, LayerContract):
        # The instance's attributes: a layer whose form (e.g. standard or depthwise-separable) decides
        # which kernels it owns sets them in its constructor.
        return _contract_spec(type(layer), tuple(layer.kernel_attributes))
    spec = KERNEL_TABLE.get(type(layer))
    if spec is not None:
        return spec
    if _owns_model_weights(layer):
        raise UndeclaredLayerError(layer)
    return None


def kernels_of(layer: keras.layers.Layer) -> list[tf.Variable]:
    """The kernel variables ``layer`` owns, prunable or not (``[]`` for none)."""
    spec = kernel_spec(layer)
    layer = inner_layer(layer)
    return [attribute(layer, name) for name in spec.kernels] if spec else []


def prunable_kernels(layer: keras.layers.Layer) -> list[tf.Variable]:
    """The kernels pruning zeroes (``[]`` for layers pruning leaves alone)."""
    spec = kernel_spec(layer)
    return kernels_of(layer) if spec and spec.prunable else []


def layer_macs(layer: keras.layers.Layer, input_shape: Shape, output_shape: Shape) -> int:
    """Multiply-accumulates of one call of ``layer`` (shapes with the batch, batch counted as 1)."""
    spec = kernel_spec(layer)
    return int(spec.macs(inner_layer(layer), input_shape, output_shape)) if spec else 0


def folds_following_batchnorm(layer: keras.layers.Layer) -> bool:
    """Whether TF-MOT's 8-bit transforms fold a BatchNorm right after ``layer`` into it.

    The layer's own part of the rule: a folding type with a linear activation. Call counts and
    consumers are checked by ``tfasc.compress.graph.batchnorm_is_folded_by_tfmot``.
    """
    spec = kernel_spec(layer)
    if spec is None or not spec.folds_following_batchnorm:
        return False
    return inner_layer(layer).get_config().get("activation") == "linear"
