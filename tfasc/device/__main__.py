"""Build a bundle's firmware for a Cortex-M target, and list what a real board's build needs.

    python -m tfasc.device build RUN_DIR/deploy --target cortex-m4 [--sources ../shared/third_party] [--out DIR]

Writes ``DIR/<target>/firmware.elf`` (the emulated board's firmware, as the export ran it) and
``DIR/<target>/build.txt``: every source compiled, with its compiler command, and the link command. A
real board builds the same sources with the same flags; only the startup code and the linker script
(``tfasc/device/c/startup.c``, ``*.ld``: the emulated boards' memory maps) and the runner (``runner.cc``,
which reads its inputs through semihosting) are replaced by the board's own. Exit status 2 with one
line for a bad bundle, target or source tree.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tfasc.device import emulate, targets, toolchain


def _ops(bundle_dir: Path) -> list[str]:
    from tfasc.deploy import flatbuffer

    model = bundle_dir / "model_int8.tflite"
    if not model.is_file():
        raise ValueError(f"{bundle_dir}: no model_int8.tflite (expected a tfasc bundle, RUN_DIR/deploy)")
    return flatbuffer.ops_used(model.read_bytes())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tfasc.device", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="compile and link the bundle's firmware for a target")
    build.add_argument("bundle", type=Path, help="a bundle folder (RUN_DIR/deploy)")
    build.add_argument("--target", default="cortex-m4", help=f"one of {sorted(targets.TARGETS)}")
    build.add_argument("--sources", default=None, help=f"TFLite Micro / CMSIS source tree (default ${toolchain.SOURCES_ENV})")
    build.add_argument("--out", type=Path, default=Path("firmware"), help="output folder (default ./firmware)")
    args = parser.parse_args(argv)
    try:
        target = targets.target(args.target)
        ops = _ops(args.bundle)
        tools = toolchain.find_toolchain(args.sources)
    except (ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    firmware = emulate.build_firmware(tools, target, args.bundle, ops, cache_dir=emulate.default_cache_dir(),
                                      work_dir=args.out)  # the bundle's own kTensorArenaSize
    listing = firmware.elf.parent / "build.txt"
    listing.write_text("\n".join(firmware.commands) + "\n")
    print(f"{firmware.elf}: text {firmware.text:,} B, data {firmware.data:,} B, bss {firmware.bss:,} B "
          f"({len(firmware.commands) - 1} sources; commands in {listing})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
