"""Recipe loading: YAML → validated frozen dataclasses, with ``--set`` overrides.

Every key is checked against the schema: an unknown key names its path and suggests the nearest
valid one, a wrong type or out-of-range value names the path, the value and what was expected.
YAML is read with ``yaml.safe_load``'s semantics (:class:`RecipeLoader`, a ``SafeLoader`` that also
refuses a key given twice in one mapping). An empty recipe, or one that is not a mapping, names the
file. After the sections are built, :func:`check_cross_sections` checks what spans two sections (the
log-mel parameters against ``data.sample_rate``, ``data.duration_s`` and ``data.channels``).
"""

from __future__ import annotations

import collections.abc
import dataclasses
import difflib
import inspect
import os
import types
import typing
from pathlib import Path, PurePath
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


def _option_type(tp):
    """A builder's or loader's parameter annotation as a type :func:`_convert` checks, or ``Any``.

    Paths are given as strings, lists as YAML lists (checked like tuples); an annotation outside
    what recipes can spell (a class, a callable) is not checked.
    """
    origin = typing.get_origin(tp)
    if tp is Any or tp in (type(None), bool, int, float, str):
        return tp
    if isinstance(tp, type) and issubclass(tp, (PurePath, os.PathLike)):
        return str
    if origin is Literal:
        return tp
    if origin in (typing.Union, types.UnionType):
        options = tuple(_option_type(t) for t in typing.get_args(tp))
        return Any if Any in options else typing.Union[options]
    if origin in (tuple, list, collections.abc.Sequence):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        item = _option_type(args[0]) if len(set(args)) == 1 else Any
        return tuple[item, ...]
    if origin is dict or tp is dict:
        return dict[str, Any]
    return Any


def _annotations(fn) -> dict[str, Any]:
    """``fn``'s parameter annotations, resolved; none when they cannot be resolved."""
    try:
        return typing.get_type_hints(fn)
    except Exception:  # noqa: BLE001 - an unresolvable annotation only means no type check
        return {}


def check_options(path: str, options: Mapping[str, Any], fn, *, also_valid=()) -> None:
    """Check ``options`` against the keyword arguments of ``fn`` (a model builder, a dataset loader).

    Used for open sections whose keys belong to a registered component. Every key must name an
    option of ``fn``: a keyword-only parameter or one with a default (the required positional ones,
    such as a builder's ``input_shape`` and ``num_classes``, are passed by tfasc). Every value must
    match the parameter's annotation where it has one (int, float, bool, str, paths as strings,
    lists, ``Literal``, ``Optional``, unions). Every keyword-only parameter without a default must
    be given. Errors are :class:`RecipeError` naming ``path.key``.
    """
    name = getattr(fn, "__qualname__", repr(fn))
    parameters = inspect.signature(fn).parameters
    open_ended = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    passed_by_tfasc = [
        key for key, p in parameters.items()
        if p.kind is inspect.Parameter.POSITIONAL_ONLY
        or (p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD and p.default is inspect.Parameter.empty)
    ]
    valid = [
        key for key, p in parameters.items()
        if key not in passed_by_tfasc and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]
    suggestions = [*valid, *also_valid]
    for key in options:
        if key in passed_by_tfasc:
            raise RecipeError(
                f"{_join(path, key)}: {key!r} is an argument tfasc passes to {name} itself, not an option. "
                f"Valid keys here: {', '.join(suggestions)}"
            )
        if key not in valid and not open_ended:
            raise RecipeError(
                f"{_join(path, key)}: unknown key for {name}.{_nearest(key, suggestions)} "
                f"Valid keys here: {', '.join(suggestions)}"
            )
    hints = _annotations(fn)
    for key, value in options.items():
        if key in hints:
            try:
                _convert(value, _option_type(hints[key]), _join(path, key))
            except RecipeError as error:
                raise RecipeError(f"{error} (option {key!r} of {name})") from None
    required = [
        key for key, p in parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is inspect.Parameter.empty and key not in options
    ]
    if required:
        raise RecipeError(
            f"{path}: {name} requires {', '.join(_join(path, key) for key in required)}; "
            f"valid keys here: {', '.join(suggestions)}"
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


class DuplicateKeyError(RecipeError):
    """A key given twice in one YAML mapping (PyYAML would silently keep the last)."""


class RecipeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` (the semantics of ``yaml.safe_load``) that refuses duplicate keys.

    Before a document is constructed its node tree is walked; a mapping holding the same key twice
    raises :class:`DuplicateKeyError` naming the key path and both lines (1-based). Keys merged in
    with ``<<`` may be overridden, as YAML intends.
    """

    def construct_document(self, node):
        self._check_duplicates(node, "", set())
        return super().construct_document(node)

    def _check_duplicates(self, node, path: str, seen_nodes: set) -> None:
        if id(node) in seen_nodes:  # an alias: already checked (and aliases may be recursive)
            return
        seen_nodes.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._check_duplicates(item, f"{path}[{i}]", seen_nodes)
        elif isinstance(node, yaml.MappingNode):
            first_line: dict[Any, int] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    self._check_duplicates(value_node, path, seen_nodes)
                    continue
                if not isinstance(key_node, yaml.ScalarNode):  # a complex key: not a recipe's
                    continue
                key = self.construct_object(key_node, deep=True)
                key_path = _join(path, str(key))
                line = key_node.start_mark.line + 1
                if key in first_line:
                    where = f"lines {first_line[key]} and {line}" if first_line[key] != line else f"line {line}, twice"
                    raise DuplicateKeyError(
                        f"duplicate key {key_path} on {where} (YAML would keep only the last; remove one)"
                    )
                first_line[key] = line
                self._check_duplicates(value_node, key_path, seen_nodes)


def _load_yaml(text: str) -> Any:
    """``yaml.safe_load(text)``, refusing duplicate keys (:class:`RecipeLoader`)."""
    return yaml.load(text, Loader=RecipeLoader)  # noqa: S506 - RecipeLoader is a SafeLoader


def parse_override(text: str) -> tuple[tuple[str, ...], Any]:
    """``"training.epochs=3"`` → ``(("training", "epochs"), 3)``; the value is parsed as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise RecipeError(f"--set {text!r}: expected KEY.PATH=VALUE, e.g. training.epochs=3")
    try:
        value = _load_yaml(raw) if raw.strip() else None
    except DuplicateKeyError as error:
        raise RecipeError(f"--set {text!r}: {error}") from error
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
    """Read a recipe file as a mapping.

    A missing file, bad YAML, a duplicate key, an empty document (nothing, only comments, or
    ``null``) or a top level that is not a mapping is a :class:`RecipeError` naming the file.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise RecipeError(f"{path}: cannot read recipe ({error.strerror or error})") from error
    except UnicodeDecodeError as error:
        raise RecipeError(f"{path}: not a text file ({error})") from error
    try:
        tree = _load_yaml(text)
    except DuplicateKeyError as error:
        raise RecipeError(f"{path}: {error}") from error
    except yaml.YAMLError as error:
        raise RecipeError(f"{path}: not valid YAML ({error})") from error
    if tree is None:
        raise RecipeError(
            f"{path}: the recipe is empty; expected a mapping of sections (e.g. data:, features:, model:, training:)"
        )
    if not isinstance(tree, dict):
        raise RecipeError(
            f"{path}: expected a mapping of sections at the top level (e.g. data:, model:, training:), "
            f"got a {type(tree).__name__}: {_short(tree)}"
        )
    return tree


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_cross_sections(recipe) -> None:
    """Checks that span two recipe sections, once every section is valid on its own.

    For ``features.kind: log_mel``, every log-mel parameter against ``data.sample_rate`` (``fmax``
    at most the Nyquist frequency, ``fmin`` below ``fmax``, ``win_length`` at most ``n_fft``, ...;
    :meth:`tfasc.data.features.LogMelParams.check`), ``channel_mode: mid_side`` against
    ``data.channels`` and the clip length against one STFT frame; ``augment.waveform.standardize``
    against ``features.normalization``. A :class:`RecipeError` names the keys.
    """
    _check_standardize(recipe)
    features, data = recipe.features, recipe.data
    if features.kind == "scalogram":
        _check_scalogram(features, data)
        return
    if features.kind != "log_mel":
        return
    from tfasc.data.features import LogMelParams

    rate = data.sample_rate
    nyquist = rate / 2
    rate_text = f"the Nyquist frequency {nyquist:g} Hz of data.sample_rate {rate}"
    if features.fmax is not None and features.fmax > nyquist:
        raise RecipeError(f"features.fmax: {features.fmax:g} Hz is above {rate_text}")
    if features.fmax is None and features.fmin >= nyquist:
        raise RecipeError(
            f"features.fmin: {features.fmin:g} Hz is not below {rate_text} (features.fmax unset: the Nyquist frequency)"
        )
    if features.fmax is not None and features.fmin >= features.fmax:
        raise RecipeError(f"features.fmin: {features.fmin:g} Hz is not below features.fmax {features.fmax:g} Hz")
    if features.win_length is not None and features.win_length > features.n_fft:
        raise RecipeError(
            f"features.win_length: {features.win_length} is longer than features.n_fft {features.n_fft}"
        )
    if features.channel_mode == "mid_side" and data.channels != 2:
        raise RecipeError(f"features.channel_mode: mid_side needs data.channels: 2, got {data.channels}")
    params = LogMelParams.of(features)
    try:
        params.check(rate)
    except ValueError as error:  # anything the specific checks above do not phrase yet
        raise RecipeError(f"features (log_mel at data.sample_rate {rate}): {error}") from error
    samples = int(round(rate * data.duration_s))
    half = features.n_fft // 2
    if features.center and features.pad_mode != "constant" and samples <= half:
        raise RecipeError(
            f"features.pad_mode: {features.pad_mode} needs clips longer than features.n_fft // 2 = {half} samples; "
            f"data.duration_s {data.duration_s:g} at data.sample_rate {rate} is {samples}"
        )
    if not features.center and samples < features.n_fft:
        raise RecipeError(
            f"features.n_fft: {features.n_fft} samples is longer than a clip (data.duration_s {data.duration_s:g} "
            f"at data.sample_rate {rate} is {samples} samples) with features.center: false"
        )


def _check_standardize(recipe) -> None:
    """``augment.waveform.standardize`` standardizes training examples; evaluation clips must get the
    same whole-clip standardization, ``features.normalization: per_clip`` (AclNet Sec. 3.2)."""
    mode = recipe.features.normalization
    if recipe.augment.waveform.standardize and mode != "per_clip":
        raise RecipeError(f"augment.waveform.standardize: true needs features.normalization: per_clip (evaluation "
                          f"clips standardized whole, as training examples are), got {mode}")


def _check_scalogram(features, data) -> None:
    """``features.kind: scalogram``: its parameters (:meth:`ScalogramParams.check`) and channels."""
    from tfasc.data.frontends.scalogram import ScalogramParams

    if features.channel_mode == "mid_side" and data.channels != 2:
        raise RecipeError(f"features.channel_mode: mid_side needs data.channels: 2, got {data.channels}")
    try:
        ScalogramParams.of(features).check(data.sample_rate)
    except ValueError as error:
        raise RecipeError(f"features (scalogram at data.sample_rate {data.sample_rate}): {error}") from error


def load_recipe(path: Path | str, overrides: typing.Iterable[str] = ()):
    """Load, override and validate a recipe file into a :class:`tfasc.config.schema.Recipe`."""
    from tfasc.config.schema import Recipe

    tree = apply_overrides(read_yaml(path), overrides)
    tree.setdefault("name", Path(path).stem)
    try:
        recipe = build_dataclass(Recipe, tree)
        check_cross_sections(recipe)
    except RecipeError as error:
        raise RecipeError(f"{path}: {error}") from error
    return recipe


def dump_recipe(recipe) -> str:
    """The resolved recipe as YAML text."""
    return yaml.safe_dump(to_plain(recipe), sort_keys=False)
