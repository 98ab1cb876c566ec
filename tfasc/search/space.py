"""The search space of Wu & Lee, Table 2, and uniform sampling from it (Sec. 3.2).

"When sampling a model architecture from the search space, for each configuration item, every
possible choice has equal probability of being chosen": the number of blocks, the stem filters
(every integer in the range), the growth ratio, and per block module A, module B and the pooling.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tfasc.models.searched_cnn import MODULES, POOLINGS, BlockSpec, CNNSpec


@dataclasses.dataclass(frozen=True, kw_only=True)
class SearchSpace:
    """Table 2. Every field is a recipe value (``search.space``)."""

    blocks: tuple[int, ...] = (2, 3, 4)
    stem_filters: tuple[int, int] = (4, 128)
    """Inclusive range of the stem convolution's output filters."""
    growth_ratios: tuple[float, ...] = (1.0, 1.25, 1.5, 1.75, 2.0)
    module_a: tuple[int, ...] = (0, 1, 2, 3, 4)
    module_b: tuple[int, ...] = (1, 2, 3, 4)
    poolings: tuple[str, ...] = POOLINGS

    def __post_init__(self):
        if len(self.stem_filters) != 2:
            raise ValueError(f"stem_filters: expected [low, high], got {list(self.stem_filters)}")
        for name in ("blocks", "growth_ratios", "module_a", "module_b", "poolings"):
            values = getattr(self, name)
            if len(set(values)) != len(values):  # a repeated value would be drawn more often
                raise ValueError(f"{name}: expected distinct values, got {list(values)}")
        low, high = self.stem_filters
        if not 1 <= low <= high:
            raise ValueError(f"stem_filters: expected [low, high] with 1 <= low <= high, got {list(self.stem_filters)}")
        if not self.blocks or min(self.blocks) < 1:
            raise ValueError(f"blocks: expected positive block counts, got {list(self.blocks)}")
        if not self.growth_ratios or min(self.growth_ratios) <= 0:
            raise ValueError(f"growth_ratios: expected positive ratios, got {list(self.growth_ratios)}")
        if not set(self.module_a) <= set(MODULES) or not self.module_a:
            raise ValueError(f"module_a: expected Table 1 ids 0-4, got {list(self.module_a)}")
        if not set(self.module_b) <= set(MODULES) - {0} or not self.module_b:
            raise ValueError(f"module_b: expected Table 1 ids 1-4, got {list(self.module_b)}")
        if not set(self.poolings) <= set(POOLINGS) or not self.poolings:
            raise ValueError(f"poolings: expected some of {list(POOLINGS)}, got {list(self.poolings)}")


def _choice(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def sample_spec(rng: np.random.Generator, space: SearchSpace) -> CNNSpec:
    """One spec, every configuration item drawn uniformly and independently (Sec. 3.2)."""
    blocks = _choice(rng, space.blocks)
    stem = int(rng.integers(space.stem_filters[0], space.stem_filters[1] + 1))
    growth = float(_choice(rng, space.growth_ratios))
    return CNNSpec(
        stem_filters=stem,
        growth_ratio=growth,
        blocks=tuple(
            BlockSpec(int(_choice(rng, space.module_a)), int(_choice(rng, space.module_b)), str(_choice(rng, space.poolings)))
            for _ in range(blocks)
        ),
    )
