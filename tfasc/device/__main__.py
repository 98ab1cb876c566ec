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
    from tfasc.device.build import Builder

    arena = int(next(line.split("=")[1].strip(" ;") for line in (args.bundle / "model_config.h").read_text().splitlines()
                     if "kTensorArenaSize =" in line))
    builder = Builder(tools, target, emulate.default_cache_dir(), extra_flags=(f"-DTFASC_TENSOR_ARENA_SIZE={arena}",))
    from tfasc.deploy.bundle import resolver_methods

    elf = args.out / target.name / "firmware.elf"
    firmware = builder.build(resolver_methods=resolver_methods(ops), bundle_sources=emulate.bundle_sources(args.bundle),
                             bundle_dir=args.bundle, elf=elf)
    objects = [Path(command[command.index("-o") + 1]) for command in builder.commands.values()]
    lines = [" ".join(command) for command in builder.commands.values()]
    lines.append(" ".join(builder.link_command(objects, elf)))
    (elf.parent / "build.txt").write_text("\n".join(lines) + "\n")
    print(f"{elf}: text {firmware.text:,} B, data {firmware.data:,} B, bss {firmware.bss:,} B "
          f"({len(builder.commands)} sources; commands in {elf.parent / 'build.txt'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
