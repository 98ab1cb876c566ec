"""The searchable CNN of Wu & Lee and its Table 3 models, ``searched_cnn``, ``wu_lee_a`` and ``wu_lee_b``.

Wu & Lee, "Searching for efficient network architectures for acoustic scene classification" (DCASE
2020 Task 1B), Sec. 3.1-3.2, Tables 1-3. A model is a 3x3 stem convolution (BatchNorm, Swish) with
``stem_filters`` outputs, 2-4 blocks, global average pooling and a dense layer to the classes
(logits; the paper's "3-way sigmoid" is the loss ``binary_crossentropy``). Block ``i`` is

- module A (Table 1 id 0-4: identity, 3x3 DSC, 5x5 DSC, 3x3 IRwLB, 5x5 IRwLB) keeping the block's
  input channels ``c[i-1]``,
- module B (id 1-4) with ``c[i] = floor(c[i-1] * growth_ratio)`` outputs,
- 2x2 average or max pooling (stride 2, ``same`` padding so small inputs never vanish).

That reading of Table 2's "growth ratio of filter number" reproduces both Table 3 models: model A
(stem 76, growth 1.75) has 76 -> 133 -> 232 filters, model B (stem 64, growth 1.0) 64 throughout
with module A the identity in its first two blocks.

Input ``[batch, freq, time, channels]`` (the paper: 128 scalogram bins x 128 frames x average /
difference of the stereo channels), output logits ``[batch, num_classes]``.

Paper size (Table 4): 4 bytes per convolution / depthwise / dense kernel weight plus the dense bias
(float32); BatchNorm parameters are not counted (they fold into the convolutions). Model A: 104,762
such weights = 0.419 MB; model B: 73,667 = 0.295 MB (Table 4: 0.42 and 0.29).
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Mapping, Sequence

import numpy as np

import tfasc  # noqa: F401
import tf_keras as keras

from tfasc.layers.efficient import DepthwiseSeparableModule, InvertedResidualModule, Swish
from tfasc.models.registry import register

#: Table 1: module id -> (kind, kernel size); id 0 is the identity mapping.
MODULES: dict[int, tuple[str, int] | None] = {
    0: None,
    1: ("dsc", 3),
    2: ("dsc", 5),
    3: ("inverted_residual", 3),
    4: ("inverted_residual", 5),
}
MODULE_NAMES = {0: "identity", 1: "3x3 DSC", 2: "5x5 DSC", 3: "3x3 IRwLB", 4: "5x5 IRwLB"}
POOLINGS = ("avg", "max")
#: Inverted residual expansion ratio (Sec. 2).
EXPANSION = 3
#: The paper's float32 bytes per counted weight.
FLOAT32_BYTES = 4


class SpecError(ValueError):
    """A model spec outside the search space; the message names the field."""


@dataclasses.dataclass(frozen=True)
class BlockSpec:
    """One convolutional block: module A (Table 1 id 0-4), module B (id 1-4), pooling (avg / max)."""

    module_a: int
    module_b: int
    pooling: str

    def __post_init__(self):
        if self.module_a not in MODULES:
            raise SpecError(f"module_a: expected a Table 1 id 0-4, got {self.module_a!r}")
        if self.module_b not in MODULES or self.module_b == 0:
            raise SpecError(f"module_b: expected a Table 1 id 1-4 (not the identity), got {self.module_b!r}")
        if self.pooling not in POOLINGS:
            raise SpecError(f"pooling: expected one of {POOLINGS}, got {self.pooling!r}")

    @classmethod
    def parse(cls, value: Any, where: str = "block") -> "BlockSpec":
        """From ``{module_a, module_b, pooling}`` or ``[module_a, module_b, pooling]``."""
        if isinstance(value, BlockSpec):
            return value
        if isinstance(value, Mapping):
            unknown = set(value) - {"module_a", "module_b", "pooling"}
            if unknown:
                raise SpecError(f"{where}: unknown keys {sorted(unknown)}; expected module_a, module_b, pooling")
            value = [value.get("module_a"), value.get("module_b"), value.get("pooling")]
        if not isinstance(value, (list, tuple)) or len(value) != 3:
            raise SpecError(f"{where}: expected [module_a, module_b, pooling] or a mapping of them, got {value!r}")
        a, b, pooling = value
        if isinstance(a, bool) or isinstance(b, bool) or not isinstance(a, (int, np.integer)) or not isinstance(
                b, (int, np.integer)):
            raise SpecError(f"{where}: module ids must be integers, got {a!r} and {b!r}")
        try:
            return cls(int(a), int(b), str(pooling))
        except SpecError as error:
            raise SpecError(f"{where}: {error}") from None


@dataclasses.dataclass(frozen=True)
class CNNSpec:
    """A model of the Table 2 space. ``to_dict`` / ``from_dict`` give its YAML/JSON form."""

    stem_filters: int
    growth_ratio: float
    blocks: tuple[BlockSpec, ...]

    def __post_init__(self):
        if isinstance(self.stem_filters, bool) or int(self.stem_filters) != self.stem_filters or self.stem_filters < 1:
            raise SpecError(f"stem_filters: expected a positive integer, got {self.stem_filters!r}")
        if not self.growth_ratio > 0:
            raise SpecError(f"growth_ratio: expected a positive number, got {self.growth_ratio!r}")
        if not self.blocks:
            raise SpecError("blocks: expected at least one block")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "CNNSpec":
        unknown = set(values) - {"stem_filters", "growth_ratio", "blocks"}
        if unknown:
            raise SpecError(f"unknown spec keys {sorted(unknown)}; expected stem_filters, growth_ratio, blocks")
        missing = {"stem_filters", "growth_ratio", "blocks"} - set(values)
        if missing:
            raise SpecError(f"missing spec keys {sorted(missing)}")
        blocks = values["blocks"]
        if not isinstance(blocks, (list, tuple)):
            raise SpecError(f"blocks: expected a list of blocks, got {blocks!r}")
        return cls(
            stem_filters=values["stem_filters"],
            growth_ratio=float(values["growth_ratio"]),
            blocks=tuple(BlockSpec.parse(b, f"blocks[{i}]") for i, b in enumerate(blocks)),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "stem_filters": int(self.stem_filters),
            "growth_ratio": float(self.growth_ratio),
            "blocks": [[b.module_a, b.module_b, b.pooling] for b in self.blocks],
        }

    def key(self) -> str:
        """Canonical JSON: equal specs, equal keys (the search's record of what it has tried)."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    def channels(self) -> list[int]:
        """Channels after the stem and after every block: ``[c0, c1, ...]``."""
        out = [int(self.stem_filters)]
        for _ in self.blocks:
            # floor, with a guard against 133 * 1.75 landing a hair under an integer in float
            out.append(max(1, int(math.floor(out[-1] * self.growth_ratio + 1e-9))))
        return out

    def describe(self) -> list[str]:
        """Table 3-style rows: ``3x3 Stem Conv. (76)``, ``3x3 IRwLB (76)``, ``2x2 AvgPool``, ..."""
        channels = self.channels()
        rows = [f"3x3 Stem Conv. ({channels[0]})"]
        for i, block in enumerate(self.blocks):
            if block.module_a:
                rows.append(f"{MODULE_NAMES[block.module_a]} ({channels[i]})")
            rows.append(f"{MODULE_NAMES[block.module_b]} ({channels[i + 1]})")
            rows.append("2x2 AvgPool" if block.pooling == "avg" else "2x2 MaxPool")
        return [*rows, "GlobalAvgPool", "Fully Connected"]


def module_weights(module_id: int, in_channels: int, out_channels: int) -> int:
    """Kernel weights of a Table 1 module (BatchNorm not counted, convolutions have no bias)."""
    entry = MODULES[module_id]
    if entry is None:
        return 0
    kind, k = entry
    if kind == "dsc":
        return k * k * in_channels + in_channels * out_channels
    hidden = EXPANSION * in_channels
    return in_channels * hidden + k * k * hidden + hidden * out_channels


def paper_size_bytes(spec: CNNSpec, *, input_channels: int, num_classes: int) -> int:
    """The paper's float32 model size (Sec. 3.3's window, Table 4) of ``spec``, from its structure alone."""
    channels = spec.channels()
    weights = 9 * input_channels * channels[0]
    for i, block in enumerate(spec.blocks):
        weights += module_weights(block.module_a, channels[i], channels[i])
        weights += module_weights(block.module_b, channels[i], channels[i + 1])
    weights += channels[-1] * num_classes + num_classes
    return FLOAT32_BYTES * weights


def _module(module_id: int, filters: int, name: str, **kwargs) -> keras.layers.Layer:
    kind, kernel_size = MODULES[module_id]
    if kind == "dsc":
        return DepthwiseSeparableModule(filters, kernel_size, name=name, **kwargs)
    return InvertedResidualModule(filters, kernel_size, expansion=EXPANSION, name=name, **kwargs)


def build_from_spec(
    spec: CNNSpec,
    input_shape: Sequence[int],
    num_classes: int,
    *,
    beta: float = 1.0,
    trainable_beta: bool = False,
    bn_momentum: float = 0.99,
    dropout: float = 0.0,
    name: str = "searched_cnn",
) -> keras.Model:
    """The Keras model of ``spec`` for features ``input_shape = (freq, time, channels)``."""
    if len(input_shape) != 3:
        raise ValueError(f"{name}: expected input_shape (freq, time, channels), got {tuple(input_shape)}")
    if not 0.0 <= dropout < 1.0 or not 0.0 <= bn_momentum < 1.0:
        raise ValueError(f"{name}: dropout and bn_momentum must be in [0, 1), got {dropout} and {bn_momentum}")
    swish = {"beta": beta, "trainable_beta": trainable_beta}
    module_kwargs = {**swish, "bn_momentum": bn_momentum}
    channels = spec.channels()
    inputs = keras.Input(shape=tuple(input_shape), name="features")
    x = keras.layers.Conv2D(channels[0], 3, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = keras.layers.BatchNormalization(momentum=bn_momentum, name="stem_bn")(x)
    x = Swish(**swish, name="stem_swish")(x)
    for i, block in enumerate(spec.blocks, start=1):
        if block.module_a:
            x = _module(block.module_a, channels[i - 1], f"block{i}_a", **module_kwargs)(x)
        x = _module(block.module_b, channels[i], f"block{i}_b", **module_kwargs)(x)
        pool = keras.layers.AveragePooling2D if block.pooling == "avg" else keras.layers.MaxPooling2D
        x = pool(2, padding="same", name=f"block{i}_{block.pooling}pool")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


@register("searched_cnn")
def build_searched_cnn(
    input_shape,
    num_classes: int,
    *,
    stem_filters: int,
    growth_ratio: float,
    blocks: Sequence[Any],
    beta: float = 1.0,
    trainable_beta: bool = False,
    bn_momentum: float = 0.99,
    dropout: float = 0.0,
):
    """A model of the search space (recipe ``model: {name: searched_cnn, stem_filters, growth_ratio, blocks}``).

    Args:
        stem_filters: output filters of the 3x3 stem convolution (Table 2: 4-128).
        growth_ratio: filter growth per block (Table 2: 1.0, 1.25, 1.5, 1.75, 2.0).
        blocks: per block ``[module_a, module_b, pooling]`` (or a mapping with those keys): Table 1
            ids, ``avg`` or ``max``.
        beta, trainable_beta: Swish ``x * sigmoid(beta * x)`` (paper: constant 1).
        bn_momentum: of every BatchNorm's moving statistics (Keras convention).
        dropout: before the dense layer (not in the paper: 0).
    """
    spec = CNNSpec.from_dict({"stem_filters": stem_filters, "growth_ratio": growth_ratio, "blocks": list(blocks)})
    return build_from_spec(spec, input_shape, num_classes, beta=beta, trainable_beta=trainable_beta,
                           bn_momentum=bn_momentum, dropout=dropout)


#: Table 3: model A (highest accuracy after 3 epochs) and model B (lowest loss).
WU_LEE_A = CNNSpec(stem_filters=76, growth_ratio=1.75, blocks=(BlockSpec(3, 1, "avg"), BlockSpec(2, 2, "max")))
WU_LEE_B = CNNSpec(
    stem_filters=64,
    growth_ratio=1.0,
    blocks=(BlockSpec(0, 3, "avg"), BlockSpec(0, 1, "avg"), BlockSpec(2, 1, "avg"), BlockSpec(3, 1, "avg")),
)
PRESETS = {"wu_lee_a": WU_LEE_A, "wu_lee_b": WU_LEE_B}


def _preset(name: str, spec: CNNSpec):
    def build(input_shape, num_classes: int, *, beta: float = 1.0, trainable_beta: bool = False,
              bn_momentum: float = 0.99, dropout: float = 0.0):
        return build_from_spec(spec, input_shape, num_classes, beta=beta, trainable_beta=trainable_beta,
                               bn_momentum=bn_momentum, dropout=dropout, name=name)

    build.__name__ = build.__qualname__ = f"build_{name}"
    build.__doc__ = f"Wu & Lee Table 3 {name}: {'; '.join(spec.describe())}. Options as ``searched_cnn``."
    return register(name)(build)


for _name, _spec in PRESETS.items():
    _preset(_name, _spec)
