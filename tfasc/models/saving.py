"""Saving and loading models without running code from the file.

A run directory may come from someone else (``python -m tfasc.export RUN_DIR``), so nothing tfasc
loads from it may execute code. Keras' legacy HDF5 and SavedModel loaders deserialize ``Lambda``
layers (marshalled Python bytecode) whatever ``safe_mode`` says, and even the zip ``.keras`` format
imports any ``module`` its config names. So tfasc:

- saves full models only as ``.keras`` zip archives and loads them only after
  :func:`check_keras_archive` has read the archive's ``config.json`` as plain JSON and found
  nothing but Keras' own and tfasc's classes (no ``Lambda``/``TFOpLambda``, no lambda functions, no
  module outside :data:`ALLOWED_MODULES`), then with ``safe_mode=True``;
- keeps models whose layers do not load from ``.keras`` (TF-MOT's quantization wrappers) as weights
  only (``.weights.h5``: arrays, no config) and rebuilds the model with its own code before
  :func:`load_weights_into` fills it.
"""

from __future__ import annotations

import json
import warnings
import zipfile
from pathlib import Path
from typing import Any

import tfasc  # noqa: F401
import tf_keras as keras

from tfasc.errors import UserError
from tfasc.files import atomic_path

#: Top-level packages whose classes a model file may name (``module`` keys of the Keras config).
ALLOWED_MODULES = ("keras", "tf_keras", "tfasc")
#: Layer classes that carry code, or call a TensorFlow symbol / attribute named in the config.
CODE_CARRYING_CLASSES = frozenset(
    {"Lambda", "TFOpLambda", "SlicingOpLambda", "ClassMethod", "InstanceMethod", "InstanceProperty"}
)
WEIGHTS_SUFFIX = "_weights.h5"  # not ".weights.h5": that selects the new per-object format, which cannot match TF-MOT wrappers of a rebuilt model


class UnsafeModelFileError(UserError):
    """A model file tfasc refuses to load because loading it could run code (or it is not a model)."""


def _module_allowed(module: str) -> bool:
    return module.split(".")[0] in ALLOWED_MODULES


def _code_in_config(node: Any, where: str = "config") -> str | None:
    """A description of the first code-carrying entry of a Keras config tree, or None."""
    if isinstance(node, dict):
        if node.get("class_name") in CODE_CARRYING_CLASSES:
            return f"a {node['class_name']} layer ({where})"
        if "__lambda__" in node or node.get("class_name") == "__lambda__" or node.get("function_type") == "lambda":
            return f"a lambda function ({where})"
        module = node.get("module")
        if isinstance(module, str) and not _module_allowed(module):
            return f"module {module!r} ({where})"
        name = node.get("name") if isinstance(node.get("name"), str) else None
        for key, value in node.items():
            found = _code_in_config(value, f"{where} > {name}" if key == "config" and name else where)
            if found:
                return found
    elif isinstance(node, list):
        for value in node:
            found = _code_in_config(value, where)
            if found:
                return found
    return None


def check_keras_archive(path: Path | str) -> None:
    """Raise :class:`UnsafeModelFileError` unless ``path`` is a ``.keras`` zip whose config names
    only Keras' and tfasc's own classes (read as JSON: nothing is imported or deserialized)."""
    path = Path(path)
    if path.suffix != ".keras" or not zipfile.is_zipfile(path):
        raise UnsafeModelFileError(
            f"{path}: not a .keras zip archive; tfasc loads models only from .keras archives "
            "(HDF5 and SavedModel files can run code when loaded)"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (KeyError, ValueError, zipfile.BadZipFile, OSError) as error:
        raise UnsafeModelFileError(f"{path}: damaged .keras archive ({error})") from error
    found = _code_in_config(config)
    if found:
        raise UnsafeModelFileError(f"{path}: refused to load: the model contains {found}, which could run code")


def load_model(path: Path | str, *, custom_objects: dict | None = None):
    """Load a ``.keras`` model (uncompiled) after :func:`check_keras_archive`, in safe mode."""
    import tfasc.layers  # noqa: F401  (registers tfasc's layers for deserialization)

    check_keras_archive(path)
    try:
        return keras.models.load_model(path, compile=False, safe_mode=True, custom_objects=custom_objects)
    except (ValueError, TypeError, KeyError, OSError) as error:
        raise UnsafeModelFileError(f"{path}: cannot be loaded as a tfasc model ({str(error).splitlines()[0]})") from error


def save_model(model, path: Path | str) -> Path:
    """Save ``model`` as a ``.keras`` archive through a temporary file (a kill leaves no partial model)."""
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"{path}: full models are saved as .keras archives only")
    with atomic_path(path) as tmp:
        model.save(tmp)
    return path


def save_weights(model, path: Path | str) -> Path:
    """Save only ``model``'s weights (HDF5 arrays, no config) through a temporary file."""
    path = Path(path)
    if not path.name.endswith(WEIGHTS_SUFFIX):
        raise ValueError(f"{path}: weights files end in {WEIGHTS_SUFFIX}")
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="You are saving your model as an HDF5 file")
        model.save_weights(tmp)
    return path


def load_weights_into(model, path: Path | str):
    """Fill ``model`` (built by tfasc's own code) with the weights saved in ``path``; returns it.

    A weights file holds arrays only, so nothing in it can run code; a file that does not fit the
    model (other architecture, damaged) is an :class:`UnsafeModelFileError` naming it.
    """
    path = Path(path)
    try:
        model.load_weights(path)
    except (ValueError, KeyError, OSError) as error:
        raise UnsafeModelFileError(
            f"{path}: does not hold this model's weights ({str(error).splitlines()[0]})"
        ) from error
    return model
