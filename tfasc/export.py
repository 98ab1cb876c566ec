"""``python -m tfasc.export RUN_DIR``: export a finished run to int8 / float16 / float32 TFLite,
verify the int8 model in TFLite Micro and write the Cortex-M bundle into ``RUN_DIR/deploy``."""

from __future__ import annotations

import argparse
import sys

import tfasc  # noqa: F401


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tfasc.export", description=__doc__)
    parser.add_argument("run_dir", help="a run directory written by python -m tfasc.train")
    args = parser.parse_args(argv)
    from tfasc.cli import quiet_tensorflow, run_command

    quiet_tensorflow()  # before TensorFlow loads
    from tfasc.training.run import export_run

    return run_command(lambda: f"done: {export_run(args.run_dir) / 'deploy'}")


if __name__ == "__main__":
    sys.exit(main())
