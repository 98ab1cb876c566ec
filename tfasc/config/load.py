"""Recipe loading: YAML → validated frozen dataclasses, with ``--set`` overrides.

Every key is checked against the schema: an unknown key names its path and suggests the nearest
valid one, a wrong type or out-of-range value names the path, the value and what was expected.
Only ``yaml.safe_load`` is used.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml

from tfasc.errors import UserError


class RecipeError(UserError):
    """A recipe that does not match the schema; the message names the key path."""


def _nearest(key: str, valid) -> str:
    close = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.5)
    return f" Did you mean {close[0]!r}?" if close else ""


def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(v) for v in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(t) for t in typing.get_args(tp))
    if origin is tuple:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return f"a mapping of {tp.__name__} keys"
    return {type(None): "null", bool: "true/false", int: "an integer", float: "a number", str: "a string"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _convert(value: Any, tp, path: str) -> Any:
    """Check ``value`` against type ``tp`` and convert it (lists → tuples, mappings → dataclasses)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in typing.get_args(tp):
            try:
                return _convert(value, option, path)
            except RecipeError as error:
                errors.append(error)
        raise RecipeError(f"{path}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            hint = _nearest(str(value), [str(c) for c in choices])
            raise RecipeError(f"{path}: expected {_type_name(tp)}, got {value!r}.{hint}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise RecipeError(f"{path}: expected {_type_name(tp)}, got {value!r}")
        (item_type, *_rest) = typing.get_args(tp)
        return tuple(_convert(v, item_type, f"{path}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise RecipeError(f"{path}: expected a mapping, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        return build_dataclass(tp, value, path)
    if tp is type(None):
        if value is not None:
            raise RecipeError(f"{path}: expected null, got {value!r}")
        return None
    if tp is bool:
        if not isinstance(value, bool):
            raise RecipeError(f"{path}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise RecipeError(f"{path}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RecipeError(f"{path}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise RecipeError(f"{path}: expected a string, got {value!r}")
        return value
    raise TypeError(f"schema type {tp!r} at {path} is not supported by the recipe loader")


def _check_range(value: Any, meta: Mapping, path: str) -> None:
    if value is None:
        return
    items = value if isinstance(value, tuple) else (value,)
    for item in items:
        if not isinstance(item, (int, float)):
            continue
        if "min" in meta and item < meta["min"]:
            raise RecipeError(f"{path}: expected a value >= {meta['min']}, got {item!r}")
        if "max" in meta and item > meta["max"]:
            raise RecipeError(f"{path}: expected a value <= {meta['max']}, got {item!r}")
        if "gt" in meta and item <= meta["gt"]:
            raise RecipeError(f"{path}: expected a value > {meta['gt']}, got {item!r}")
        if "lt" in meta and item >= meta["lt"]:
            raise RecipeError(f"{path}: expected a value < {meta['lt']}, got {item!r}")


def build_dataclass(cls, values: Any, path: str = ""):
    """Validate the mapping ``values`` against dataclass ``cls`` (recursively) and build it."""
    where = path or "recipe"
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise RecipeError(f"{where}: expected a mapping of {cls.__name__} keys, got {values!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    # An "open" section (e.g. ``model``) gathers the keys it does not declare into one mapping, which
    # the component it configures validates against its own signature (see ``check_options``).
    extra_field = getattr(cls, "EXTRA_KEYS_FIELD", None)
    if extra_field:
        extras = {k: v for k, v in values.items() if k not in fields}
        values = {k: v for k, v in values.items() if k in fields}
        values[extra_field] = {**values.get(extra_field, {}), **extras}
    for key in values:
        if key not in fields:
            raise RecipeError(
                f"{_join(path, str(key))}: unknown key.{_nearest(str(key), fields)} "
                f"Valid keys here: {', '.join(fields)}"
            )
    kwargs = {}
    for name, value in values.items():
        key_path = _join(path, name)
        converted = _convert(value, hints[name], key_path)
        _check_range(converted, fields[name].metadata, key_path)
        kwargs[name] = converted
    try:
        instance = cls(**kwargs)
    except (TypeError, ValueError) as error:
        raise RecipeError(f"{where}: {error}") from error
    return instance


def check_options(path: str, options: Mapping[str, Any], fn, *, also_valid=()) -> None:
    """Check that every key of ``options`` is a keyword argument of ``fn``.

    Used for open sections whose keys belong to a registered component (a model builder's
    arguments, a dataset loader's options).
    """
    import inspect

    parameters = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    valid = [name for name, p in parameters.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL]
    for key in options:
        if key not in valid:
            suggestions = [*valid, *also_valid]
            raise RecipeError(
                f"{_join(path, key)}: unknown key for {getattr(fn, '__qualname__', fn)}."
                f"{_nearest(key, suggestions)} Valid keys here: {', '.join(suggestions)}"
            )


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def to_plain(instance) -> Any:
    """A dataclass tree as plain dicts/lists, ready for YAML or JSON."""
    if dataclasses.is_dataclass(instance):
        return {f.name: to_plain(getattr(instance, f.name)) for f in dataclasses.fields(instance)}
    if isinstance(instance, (list, tuple)):
        return [to_plain(v) for v in instance]
    if isinstance(instance, Mapping):
        return {k: to_plain(v) for k, v in instance.items()}
    return instance


def parse_override(text: str) -> tuple[tuple[str, ...], Any]:
    """``"training.epochs=3"`` → ``(("training", "epochs"), 3)``; the value is parsed as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise RecipeError(f"--set {text!r}: expected KEY.PATH=VALUE, e.g. training.epochs=3")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as error:
        raise RecipeError(f"--set {text!r}: value is not valid YAML ({error})") from error
    return tuple(part.strip() for part in key.strip().split(".")), value


def apply_overrides(tree: dict, overrides: typing.Iterable[str]) -> dict:
    """Apply ``--set`` overrides to the raw YAML tree (validation happens afterwards)."""
    for text in overrides:
        keys, value = parse_override(text)
        node = tree
        for i, key in enumerate(keys[:-1]):
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            if not isinstance(child, dict):
                raise RecipeError(f"--set {text!r}: {'.'.join(keys[: i + 1])} is not a section")
            node = child
        node[keys[-1]] = value
    return tree


def read_yaml(path: Path | str) -> dict:
    """Read a recipe file as a mapping; a missing file or bad YAML names the file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise RecipeError(f"{path}: cannot read recipe ({error.strerror or error})") from error
    try:
        tree = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise RecipeError(f"{path}: not valid YAML ({error})") from error
    if tree is None:
        tree = {}
    if not isinstance(tree, dict):
        raise RecipeError(f"{path}: expected a mapping of sections at the top level, got {type(tree).__name__}")
    return tree


def load_recipe(path: Path | str, overrides: typing.Iterable[str] = ()):
    """Load, override and validate a recipe file into a :class:`tfasc.config.schema.Recipe`."""
    from tfasc.config.schema import Recipe

    tree = apply_overrides(read_yaml(path), overrides)
    tree.setdefault("name", Path(path).stem)
    try:
        return build_dataclass(Recipe, tree)
    except RecipeError as error:
        raise RecipeError(f"{path}: {error}") from error


def dump_recipe(recipe) -> str:
    """The resolved recipe as YAML text."""
    return yaml.safe_dump(to_plain(recipe), sort_keys=False)
