"""Where the device build finds its tools and sources, and why it cannot run when it cannot.

Tools: ``arm-none-eabi-gcc`` / ``-g++`` / ``-size`` / ``-nm`` (Debian ``gcc-arm-none-eabi``,
``libnewlib-arm-none-eabi``, ``libstdc++-arm-none-eabi-newlib``), ``qemu-system-arm`` (Debian
``qemu-system-arm``) and a host ``cc`` for the instruction-counting QEMU plugin.

Sources: pinned TFLite Micro, CMSIS-NN, CMSIS-DSP, CMSIS core, flatbuffers, gemmlowp, ruy trees laid
out like ``../shared/third_party`` (its README lists the pins). The folder comes from the recipe's
``export.device.sources``, else the ``TFASC_DEVICE_SOURCES`` environment variable.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

SOURCES_ENV = "TFASC_DEVICE_SOURCES"
#: Debian packages that provide the tools (what CI installs).
DEBIAN_PACKAGES = ("gcc-arm-none-eabi", "libnewlib-arm-none-eabi", "libstdc++-arm-none-eabi-newlib",
                   "qemu-system-arm")
TOOLS = ("arm-none-eabi-gcc", "arm-none-eabi-g++", "arm-none-eabi-size", "arm-none-eabi-nm",
         "qemu-system-arm", "cc")
#: Sub-folders of a source tree the build reads (relative to the tree).
SOURCE_FOLDERS = ("tflite-micro/tensorflow/lite/micro", "cmsis_nn/Source", "cmsis_dsp/Source",
                  "cmsis/CMSIS/Core/Include", "flatbuffers/include", "gemmlowp", "ruy")


@dataclasses.dataclass(frozen=True)
class Toolchain:
    """Absolute paths of the tools and the source tree (``sources``)."""

    gcc: str
    gxx: str
    size: str
    nm: str
    qemu: str
    host_cc: str
    sources: Path


def missing_tools() -> list[str]:
    """The tools of ``TOOLS`` not on ``PATH``."""
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def resolve_sources(sources: str | os.PathLike | None = None) -> Path | None:
    """``sources``, else ``$TFASC_DEVICE_SOURCES``; None when neither is set."""
    chosen = sources if sources is not None else os.environ.get(SOURCES_ENV)
    return None if chosen in (None, "") else Path(chosen).expanduser().resolve()


def sources_problem(sources: Path | None) -> str | None:
    """Why ``sources`` is not a usable source tree (None: it is)."""
    if sources is None:
        return (f"no TFLite Micro / CMSIS source tree: set export.device.sources or ${SOURCES_ENV} "
                "(a folder laid out like ../shared/third_party)")
    absent = [folder for folder in SOURCE_FOLDERS if not (sources / folder).is_dir()]
    if absent:
        return f"device sources {sources}: missing {', '.join(absent)} (expected a tree laid out like ../shared/third_party)"
    return None


def unavailable_reason(sources: str | os.PathLike | None = None) -> str | None:
    """One line saying why the device check cannot run here, or None when it can."""
    missing = missing_tools()
    if missing:
        return (f"{', '.join(missing)} not found: apt-get install --no-install-recommends "
                f"{' '.join(DEBIAN_PACKAGES)}")
    return sources_problem(resolve_sources(sources))


def find_toolchain(sources: str | os.PathLike | None = None) -> Toolchain:
    """The tools and the source tree; ``RuntimeError`` with :func:`unavailable_reason` otherwise."""
    reason = unavailable_reason(sources)
    if reason is not None:
        raise RuntimeError(reason)
    which = {tool: shutil.which(tool) for tool in TOOLS}
    return Toolchain(gcc=which["arm-none-eabi-gcc"], gxx=which["arm-none-eabi-g++"], size=which["arm-none-eabi-size"],
                     nm=which["arm-none-eabi-nm"], qemu=which["qemu-system-arm"], host_cc=which["cc"],
                     sources=resolve_sources(sources))
