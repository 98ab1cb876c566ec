"""The contract of a tfasc layer: what compression and deployment need to know, declared by the layer.

A tfasc layer subclasses :class:`LayerContract` (before ``keras.layers.Layer``) and states in its
own class everything the rest of the toolkit asks about it:

- ``kernel_attributes``: names (dotted paths through sub-layers, e.g. ``"depthwise.depthwise_kernel"``)
  of the attributes holding its kernels, the weights that multiply
  inputs (what pruning zeroes and MACs are counted for); ``()`` when it owns none (normalization
  statistics and affine parameters are not kernels, as for ``BatchNormalization``). A class
  attribute, or an instance attribute set in the constructor when the layer's configuration decides
  which kernels it owns (a standard or depthwise-separable convolution block);
- ``prunable``: whether pruning may zero those kernels;
- ``count_macs(input_shape, output_shape)``: multiply-accumulates of one call;
- ``quantize_config()``: the TF-MOT ``QuantizeConfig`` QAT annotates it with, or ``None`` when
  its export form replaces it before QAT;
- ``export_form``: ``None``, or a method ``export_form(inputs, *, name, trainable)`` that rebuilds
  the layer's inference computation from stock Keras layers on ``inputs`` and returns the output
  tensor (``tfasc.compress.export_form.to_export_form`` calls it);
- ``in_int8_graph``: ``False`` for a layer that stays float in front of the int8 graph (a feature
  front-end); QAT refuses it by name.

``tfasc.compress`` (pruning, export form, QAT) and ``tfasc.deploy.profile`` read the contract; a
layer never imports ``tfasc.compress``. A new layer is therefore one module: the class with its
contract, registered with ``keras.saving.register_keras_serializable``. Stock Keras layers are
described once in ``tfasc.compress.kernels``; an unknown layer that owns weights and declares no
contract is an error there, never silently left dense or uncounted.

Shapes passed to ``count_macs`` are tuples with the batch as 1, in the layer's own layout
(``[batch, freq, time, channels]`` for 2-D features, ``[batch, samples, channels]`` for waveforms).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, ClassVar, Optional

Shape = tuple[int, ...]


def accepts_shape(declared, example_shape) -> bool:
    """Whether an input declared ``declared`` (no batch axis; None: any size, as ``aclnet``'s length)
    takes examples of ``example_shape``."""
    return len(declared) == len(example_shape) and all(d is None or d == e for d, e in zip(declared, example_shape))


def attribute(obj: Any, path: str) -> Any:
    """``obj.a.b`` for ``path = "a.b"``: a kernel attribute may name a sub-layer's variable."""
    return functools.reduce(getattr, path.split("."), obj)


class LayerContract:
    """Mixin declaring a tfasc layer's compression and deployment contract (see the module docstring).

    Subclasses override the class attributes and methods below; ``get_prunable_weights`` is TF-MOT's
    ``PrunableLayer`` method, derived from ``kernel_attributes`` and ``prunable`` so that
    ``tfmot.sparsity.keras.prune_low_magnitude`` also accepts the layer directly.
    """

    kernel_attributes: ClassVar[tuple[str, ...]] = ()
    prunable: ClassVar[bool] = True
    in_int8_graph: ClassVar[bool] = True
    #: ``None`` or a method ``(inputs, *, name: str, trainable: bool) -> output tensor``.
    export_form: ClassVar[Optional[Callable[..., Any]]] = None

    def kernel_weights(self) -> list:
        """The variables named by ``kernel_attributes``."""
        return [attribute(self, name) for name in self.kernel_attributes]

    def get_prunable_weights(self) -> list:
        """The kernels pruning may zero (TF-MOT's ``PrunableLayer`` API)."""
        return self.kernel_weights() if self.prunable else []

    def count_macs(self, input_shape: Shape, output_shape: Shape) -> int:
        """Multiply-accumulates of one call; every contract layer states its own."""
        raise NotImplementedError(f"{type(self).__name__} declares no count_macs in its LayerContract")

    def quantize_config(self) -> Any:
        """TF-MOT ``QuantizeConfig`` for QAT, or ``None`` when the export form replaces the layer."""
        return None
