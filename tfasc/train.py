"""``python -m tfasc.train RECIPE [--set KEY=VALUE ...] [--out DIR]``: run a recipe end to end."""

from __future__ import annotations

import argparse
import sys

import tfasc  # noqa: F401  (environment for TensorFlow before it loads)
from tfasc.cli import quiet_tensorflow


def parse_args(argv=None) -> argparse.Namespace:
    quiet_tensorflow()  # before the stage table below loads TensorFlow
    from tfasc.training import stages

    parser = argparse.ArgumentParser(
        prog="python -m tfasc.train",
        description="Train, evaluate and report one tfasc recipe. Started again with the same command, "
        "an interrupted run continues from its last finished epoch.",
    )
    parser.add_argument("recipe", help="recipe YAML file, e.g. recipes/quickstart.yaml")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a recipe value, e.g. --set training.epochs=3 (repeatable; VALUE is YAML)",
    )
    parser.add_argument("--out", default=None, help="run directory (default: <output.dir>/<recipe>-<timestamp>)")
    parser.add_argument(
        "--from", dest="from_stage", default=None, choices=stages.names(),
        help="re-run this stage and the later ones of an existing run (the newest of this recipe, or --out)",
    )
    parser.add_argument(
        "--worker", default=None, metavar="I/N",
        help="multi-worker training: this machine is worker I of N (0/N is the chief, which writes the run "
        "directory); with --workers; sets distribute.strategy: multi_worker (TF_CONFIG works too)",
    )
    parser.add_argument(
        "--workers", default=None, metavar="HOST:PORT,...",
        help="every worker's address, the chief first, the same list on every machine",
    )
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from tfasc.cli import run_command

    def train() -> str:
        from tfasc.config import load_recipe
        from tfasc.training.distribute import worker_overrides
        from tfasc.training.run import run_recipe

        recipe = load_recipe(args.recipe, [*args.overrides, *worker_overrides(args.worker, args.workers)])
        return f"done: {run_recipe(recipe, out=args.out, from_stage=args.from_stage, source=args.recipe)}"

    return run_command(train)


if __name__ == "__main__":
    sys.exit(main())
