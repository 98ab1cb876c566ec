"""Transfer learning (``training.init_from``; ERANN paper, Sec. 2 and 4.3-4.5): start the train
stage from another run's trained float model instead of random weights.

The source is a run directory (its manifest's newest ``float_model``, size and SHA-256 checked as a
stage's input is; with weight averaging that model already holds the averages) or a ``.keras``
file, loaded only through the safe loader. Its classification head is always replaced, also when
the class count is the same (the paper keeps every parameter "except parameters of few last
layers"): the last Dense or convolution layer producing the class logits gets this recipe's class
count and fresh weights seeded from ``training.seed``, and so do the normalizations between it and
the output (``shared_resnet``'s per-class ``head_bn``). Every other layer keeps its weights exactly;
all of them are then fine-tuned.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import tfasc  # noqa: F401
import tf_keras as keras

from tfasc.errors import UserError
from tfasc.files import sha256_file
from tfasc.training.rundir import MANIFEST_FILE, Manifest, RunDirError

KEY = "training.init_from"
#: Layers that can be the classification head, and the config key holding their output width.
HEAD_WIDTH_KEYS = ((keras.layers.Dense, "units"), (keras.layers.Conv1D, "filters"), (keras.layers.Conv2D, "filters"))
#: Weight-owning layers that may sit between the head and the output; they normalize per class, so
#: they are rebuilt fresh with the head.
PER_CLASS_LAYERS = (keras.layers.BatchNormalization, keras.layers.LayerNormalization)


class TransferError(UserError):
    """``training.init_from`` names nothing tfasc can start from (missing, not a trained model, other inputs)."""


@dataclass(frozen=True)
class TransferSource:
    """The model file a run starts from, as recorded in the train stage's result."""

    path: Path
    sha256: str
    classes: int

    def to_json(self) -> dict:
        return {"path": str(self.path), "sha256": self.sha256, "classes": self.classes}


def resolve_source(value: str | Path) -> Path:
    """The ``.keras`` file ``value`` names: itself, or a run directory's newest float model (its
    size and SHA-256 checked against the manifest). Relative paths are the working directory's."""
    from tfasc.training.context import FLOAT_MODEL

    path = Path(value).expanduser().absolute()
    if not path.exists():
        raise TransferError(f"{KEY}: {path} does not exist; expected a run directory or a .keras model file")
    if not path.is_dir():
        return path
    if not (path / MANIFEST_FILE).is_file():
        raise TransferError(f"{KEY}: {path} is a folder without {MANIFEST_FILE}; expected a run directory "
                            "or a .keras model file")
    try:
        manifest = Manifest(path)
        if manifest.newest(FLOAT_MODEL) is None:
            raise TransferError(f"{KEY}: run directory {path} holds no trained float model (no finished train "
                                "stage); finish that run first or name a .keras file")
        return manifest.require(FLOAT_MODEL, by="train")
    except RunDirError as error:
        raise TransferError(f"{KEY}: {error}") from error


def load_source(path: Path):
    """The model in ``path``, through the safe loader (nothing in the file can run code)."""
    from tfasc.models.saving import load_model

    try:
        return load_model(path)
    except UserError as error:
        raise TransferError(f"{KEY}: {error}") from error


def check_input_shape(model, input_shape, path: Path) -> None:
    """The source must take this recipe's inputs: same rank, same size in every fixed (non-None) axis."""
    source = model.input_shape
    if isinstance(source, list):
        raise TransferError(f"{KEY}: {path} has {len(source)} inputs; expected a model with one input")
    source, target = tuple(source[1:]), tuple(input_shape)
    fits = len(source) == len(target) and all(a is None or b is None or a == b for a, b in zip(source, target))
    if not fits:
        raise TransferError(f"{KEY}: {path} takes inputs of shape {source} (None: any size) but this recipe's "
                            f"features give {target}; use the source's data and features settings")


def output_chain(model):
    """Layers from the output back towards the input, while each takes one input: the tail a head
    replacement may touch."""
    if len(model.outputs) != 1:
        raise TransferError(f"{KEY}: model {model.name!r} has {len(model.outputs)} outputs; "
                            "expected one (the class logits)")
    tensor = model.outputs[0]
    while True:
        layer, node_index, _ = tensor._keras_history
        yield layer
        inputs = layer._inbound_nodes[node_index].keras_inputs
        if len(inputs) != 1:
            return
        tensor = inputs[0]


def head_width_key(layer) -> str | None:
    """``units`` or ``filters``: the config key of a head candidate's output width; None for other layers."""
    for layer_type, key in HEAD_WIDTH_KEYS:
        if isinstance(layer, layer_type):
            return key
    return None


def find_head(model) -> tuple[object, list]:
    """The classification head (the last weight-owning Dense or convolution layer, whose width is
    the output's class count) and the per-class normalizations between it and the output."""
    classes = model.output_shape[-1]
    trailing = []
    for layer in output_chain(model):
        key = head_width_key(layer)
        if key is not None:
            if layer.get_config()[key] != classes:
                raise TransferError(f"{KEY}: model {model.name!r}: its last {type(layer).__name__} layer "
                                    f"{layer.name!r} has {key}={layer.get_config()[key]}, not the {classes} classes "
                                    "of its output; cannot tell its classification head")
            return layer, trailing
        if layer.weights and not isinstance(layer, PER_CLASS_LAYERS):
            break
        if layer.weights:
            trailing.append(layer)
    raise TransferError(f"{KEY}: model {model.name!r} does not end in a Dense or convolution layer producing its "
                        f"{classes} class logits (then only weight-free layers or normalizations); cannot "
                        "replace its classification head")


def replace_head(model, num_classes: int, *, seed: int):
    """A copy of ``model`` whose head (:func:`find_head`) has ``num_classes`` outputs and fresh weights
    (seeded with ``seed``), as do the normalizations after it; every other layer keeps its weights.

    Returns the new model and the names of the layers rebuilt fresh, head first."""
    head, trailing = find_head(model)
    fresh = [head.name, *(layer.name for layer in trailing)]

    def clone(layer):
        config = layer.get_config()
        if layer is head:
            config[head_width_key(head)] = num_classes
        return type(layer).from_config(config)

    keras.utils.set_random_seed(seed)  # the fresh head's initialization, as build_model seeds a new model
    rebuilt = keras.models.clone_model(model, clone_function=clone)
    for layer in rebuilt.layers:
        if layer.name not in fresh:
            layer.set_weights(model.get_layer(layer.name).get_weights())
    return rebuilt, fresh


def transfer_model(value: str | Path, input_shape, num_classes: int, *, seed: int):
    """The model ``training.init_from = value`` names, checked against ``input_shape`` and with its
    head replaced for ``num_classes``; returns ``(model, TransferSource, names of the fresh layers)``."""
    path = resolve_source(value)
    digest = sha256_file(path)  # of the file loaded (a run directory's was just checked against its manifest)
    source = load_source(path)
    check_input_shape(source, input_shape, path)
    model, fresh = replace_head(source, num_classes, seed=seed)
    return model, TransferSource(path, digest, int(source.output_shape[-1])), fresh
