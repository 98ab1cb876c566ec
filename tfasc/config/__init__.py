"""Recipes: YAML files validated into frozen dataclasses (:mod:`tfasc.config.schema`)."""

from tfasc.config.load import RecipeError, dump_recipe, load_recipe, to_plain  # noqa: F401
from tfasc.config.schema import Recipe  # noqa: F401
