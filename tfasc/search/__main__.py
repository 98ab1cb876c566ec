"""``python -m tfasc.search RECIPE [--set KEY=VALUE ...] [--out DIR] [--report-only]``: the architecture search."""

from __future__ import annotations

import argparse
import sys

import tfasc  # noqa: F401  (environment for TensorFlow before it loads)
from tfasc.cli import quiet_tensorflow


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tfasc.search",
        description="Random architecture search over the Wu & Lee space (recipe section search): draw specs, "
        "reject those outside search.limits (paper size; int8 flash, MACs per second, TFLite Micro arena, "
        "measured before training), train each kept candidate briefly, append it to candidates.jsonl, then "
        "retrain the best through the recipe's stages and write search.json / search.md / plots. Started "
        "again with the same command it continues without repeating a finished candidate.",
    )
    parser.add_argument("recipe", help="recipe YAML file with a search section, e.g. recipes/search_dcase2020_1b.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe value, e.g. --set search.candidates=50 (repeatable; VALUE is YAML)")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="search folder (default: <output.dir>/<recipe>-search)")
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: write the summary over the candidates recorded so far")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    quiet_tensorflow()
    from tfasc.cli import run_command

    def search() -> str:
        from tfasc.search.run import run_search

        directory, summary = run_search(args.recipe, args.overrides, out=args.out, report_only=args.report_only)
        return f"{summary['trained']} candidates, best accuracy draw {summary['best_accuracy']['draw']}\ndone: {directory}"

    return run_command(search)


if __name__ == "__main__":
    sys.exit(main())
