"""The Cortex-M targets the firmware is built for, and the QEMU board that runs each.

Facts behind the flags (``../shared/notes/cortex-m-emulation.md``): TFLite Micro's own Cortex-M flags
use ``-mfloat-abi=soft``, with which GCC does not define ``__ARM_FEATURE_MVE``, so a Cortex-M55 build
silently runs CMSIS-NN's DSP kernels; Helium needs ``softfp`` (or ``hard``). Every target here uses
``softfp``: the hardware FPU for the front end's float arithmetic, and the soft-float calling convention
newlib's multilibs are built for. ``cortex-m55-dsp`` turns MVE off explicitly (``+nomve``) to measure
what Helium buys.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

C_SOURCES = Path(__file__).with_name("c")


@dataclasses.dataclass(frozen=True)
class Target:
    """One core + board.

    Attributes:
        name: the recipe's name for it (``export.device.targets``).
        cpu_flags: the core's code-generation flags (compile and link).
        board: ``qemu-system-arm -M`` machine.
        linker_script: the board's memory map (in ``tfasc/device/c``).
        ram_bytes: the board's RAM for data, the tensor arena, the heap and the stack.
        helium: whether CMSIS-NN compiles its MVE (Helium) kernels.
        description: for reports.
    """

    name: str
    cpu_flags: tuple[str, ...]
    board: str
    linker_script: str
    ram_bytes: int
    helium: bool
    description: str


TARGETS: dict[str, Target] = {
    target.name: target
    for target in (
        Target("cortex-m4", ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=softfp", "-mfpu=fpv4-sp-d16"),
               "mps2-an386", "mps2_an386.ld", 4 << 20, False,
               "Cortex-M4F (DSP extension, single-precision FPU), CMSIS-NN DSP kernels; QEMU mps2-an386"),
        Target("cortex-m55", ("-mcpu=cortex-m55", "-mthumb", "-mfloat-abi=softfp"),
               "mps3-an547", "mps3_an547.ld", 4 << 20, True,
               "Cortex-M55 with Helium (MVE), CMSIS-NN MVE kernels; QEMU mps3-an547"),
        Target("cortex-m55-dsp", ("-mcpu=cortex-m55+nomve", "-mthumb", "-mfloat-abi=softfp"),
               "mps3-an547", "mps3_an547.ld", 4 << 20, False,
               "Cortex-M55 without Helium (DSP extension only), CMSIS-NN DSP kernels; QEMU mps3-an547"),
    )
}


def target(name: str) -> Target:
    """The target called ``name``; ``ValueError`` naming the known ones otherwise."""
    if name not in TARGETS:
        raise ValueError(f"device target {name!r}: expected one of {sorted(TARGETS)}")
    return TARGETS[name]
