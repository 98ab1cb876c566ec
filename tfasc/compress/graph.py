"""The layer graph of one functional model, and TF-MOT's BatchNorm folding rule judged on it.

A layer object may carry nodes of several models (``strip_pruning`` and ``clone_model`` reuse
layers), so counting ``layer._inbound_nodes`` would see calls from other models; ``ModelGraph``
reads only the nodes of the model it is given. Models: ``[batch, freq, time, channels]`` features
(or ``[batch, samples, channels]`` waveforms) -> logits.
"""

from __future__ import annotations

from typing import Any

import tfasc  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
import tensorflow as tf
import tf_keras as keras

from tfasc.compress.kernels import folds_following_batchnorm
from tfasc.layers.contract import accepts_shape


class ModelGraph:
    """The nodes of one functional model only, in evaluation order.

    Attributes:
        nodes: the model's nodes, inputs first.
        calls: ``id(layer)`` -> how often this model calls it.
        producers, consumers: ``id(layer)`` -> layers feeding it / fed by it in this model.
        output_layers: ids of the layers producing the model's outputs.
    """

    def __init__(self, model: keras.Model) -> None:
        by_depth = getattr(model, "_nodes_by_depth", None)  # no public graph API in tf_keras
        if not by_depth:
            raise ValueError(
                f"model {model.name!r} ({type(model).__name__}) has no layer graph; expected a "
                "functional or sequential model built on an Input"
            )
        # Larger depth = closer to the inputs, so this is a valid evaluation order.
        self.nodes = [node for depth in sorted(by_depth, reverse=True) for node in by_depth[depth]]
        self.calls: dict[int, int] = {}
        self.consumers: dict[int, list[Any]] = {}
        self.producers: dict[int, list[keras.layers.Layer]] = {}
        producer_of: dict[int, keras.layers.Layer] = {}
        for node in self.nodes:
            self.calls[id(node.layer)] = self.calls.get(id(node.layer), 0) + 1
            for tensor in tf.nest.flatten(node.outputs):
                producer_of[id(tensor)] = node.layer
        for node in self.nodes:
            for tensor in node.keras_inputs:
                producer = producer_of.get(id(tensor))
                if producer is None:
                    continue
                self.consumers.setdefault(id(producer), []).append(node.layer)
                self.producers.setdefault(id(node.layer), []).append(producer)
        self.output_layers = {id(t._keras_history.layer) for t in tf.nest.flatten(model.outputs)}


def batchnorm_is_folded_by_tfmot(bn: keras.layers.Layer, model: keras.Model | ModelGraph) -> bool:
    """Whether TF-MOT's Conv/Dense + BatchNorm patterns match ``bn`` in ``model`` (TF-MOT then handles it).

    TF-MOT's pattern matcher: the BN is called once, right after a producer that folds a following
    BN (``tfasc.compress.kernels.folds_following_batchnorm``: Conv2D, DepthwiseConv2D,
    SeparableConv2D, Conv2DTranspose, Dense with a linear activation) which is itself called once,
    feeds only the BN and is not a model output. BNs after a shared conv (one conv object called N
    times) are the case that fails.
    """
    graph = model if isinstance(model, ModelGraph) else ModelGraph(model)
    producers = graph.producers.get(id(bn), [])
    if graph.calls.get(id(bn)) != 1 or len(producers) != 1:
        return False
    producer = producers[0]
    if not folds_following_batchnorm(producer):
        return False
    if graph.calls[id(producer)] != 1 or len(graph.consumers.get(id(producer), [])) != 1:
        return False
    return id(producer) not in graph.output_layers


def with_input_shape(model: keras.Model, example_shape) -> keras.Model:
    """``model`` on an input of ``example_shape`` (no batch axis): the same layers' configs, the same
    weights, for a model built to accept any length (e.g. ``aclnet``) exported or profiled for one.
    A model whose input already has that shape comes back as it is."""
    example_shape = tuple(int(d) for d in example_shape)
    if len(model.inputs) != 1:
        raise ValueError(f"model {model.name!r} has {len(model.inputs)} inputs: expected one")
    current = tuple(model.inputs[0].shape[1:])
    if current == example_shape:
        return model
    if not accepts_shape(current, example_shape):
        raise ValueError(f"model {model.name!r}: input {list(current)} does not accept examples of shape "
                         f"{list(example_shape)}")
    inputs = keras.Input(batch_shape=(None, *example_shape), dtype=model.inputs[0].dtype,
                         name=model.inputs[0]._keras_history.layer.name)
    fixed = keras.models.clone_model(model, input_tensors=inputs)
    fixed.set_weights(model.get_weights())
    return fixed
