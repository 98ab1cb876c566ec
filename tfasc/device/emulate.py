"""Run a bundle on emulated Cortex-M cores and measure what the device pays.

For each target (:mod:`tfasc.device.targets`) the bundle is compiled into firmware
(:mod:`tfasc.device.build`) with the runner (``c/runner.cc``) and run under ``qemu-system-arm`` on the
target's board with semihosting: the runner reads the records the host wrote and writes back the
int8 outputs, the tensor-arena bytes in use, and, through the instruction-counting plugin
(:mod:`tfasc.device.plugin`), the instructions of each phase. QEMU's user mode cannot run M-profile
binaries in this Debian (``../shared/notes/cortex-m-emulation.md``), hence the system emulator.

Records: mode 0, int8 model inputs (``[n, ...]`` as the input tensor without its batch axis); mode 1,
clips of int16 PCM ``[n, samples, channels]`` through the bundle's PCM path (front end, normalization,
quantization, the model, the clip's probabilities).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from tfasc.deploy.bundle import resolver_methods
from tfasc.device import plugin as insn_plugin
from tfasc.device.build import Builder, Firmware
from tfasc.device.targets import C_SOURCES, Target
from tfasc.device.toolchain import Toolchain

_MAGIC = 0x4E494654  # "TFIN"
#: Smallest and largest tensor arena compiled into a measuring firmware (the board keeps the rest of
#: its 4 MB for the model's I/O buffers, the heap and the stack).
MEASURING_ARENA = (256 << 10, 3 << 20)


@dataclasses.dataclass(frozen=True)
class Run:
    """One firmware run.

    Attributes:
        outputs: mode 0: ``[n, output bytes]`` int8; mode 1: per clip the int8 model inputs
            ``[n, model_inputs, input bytes]``, outputs ``[n, model_inputs, output bytes]``, labels ``[n]``
            and probabilities ``[n, classes]``.
        arena_bytes: tensor-arena bytes in use (``MicroInterpreter::arena_used_bytes``).
        phases: instructions of each phase per record, ``[n, phases]`` (mode 0: the inference; mode 1:
            the front end, then the inferences and the clip's probabilities).
        seconds: wall-clock seconds of the emulation.
    """

    outputs: dict[str, np.ndarray]
    arena_bytes: int
    phases: np.ndarray
    seconds: float


def bundle_sources(bundle_dir: Path) -> list[Path]:
    """The bundle's C/C++ files the firmware compiles, with the runner and the emulator's startup code."""
    bundle_dir = Path(bundle_dir)
    own = sorted(bundle_dir.glob("*.cc")) + sorted(bundle_dir.glob("*.c"))
    return [*own, C_SOURCES / "runner.cc", C_SOURCES / "startup.c"]


#: RAM the firmware needs besides its static data: the stack (``firmware_sections.ld``) and newlib's
#: stdio buffers and heap bookkeeping.
STACK_AND_RUNTIME_BYTES = (64 << 10) + (16 << 10)


def measuring_arena(host_arena_bytes: int, room: int | None = None) -> int:
    """The arena a measuring firmware is built with: 4x the host's (a device's kernels may need more
    scratch than the host's: 10,180 against 5,684 bytes was measured with Helium), within
    ``MEASURING_ARENA`` and within ``room``, the board's RAM left beside everything else."""
    low, high = MEASURING_ARENA
    arena = min(max(4 * host_arena_bytes, low), high)
    if room is not None:
        arena = min(arena, room)
    return int(arena) // 16 * 16


def room_for_arena(target: Target, probe: Firmware, probe_arena: int, record_bytes: int) -> int:
    """The board's RAM left for the tensor arena by a firmware whose other static data ``probe`` (built
    with a ``probe_arena``-byte arena) shows, the heap for one ``record_bytes`` record, the stack and
    the C runtime."""
    static = probe.data + probe.bss - probe_arena
    return target.ram_bytes - static - record_bytes - STACK_AND_RUNTIME_BYTES


def build_firmware(tools: Toolchain, target: Target, bundle_dir: Path, ops: Sequence[str], *, cache_dir: Path,
                   work_dir: Path, arena_bytes: int | None = None) -> Firmware:
    """The bundle's firmware for ``target`` in ``work_dir/<target>/firmware.elf``, with an ``arena_bytes``
    tensor arena (None: the bundle's ``kTensorArenaSize``)."""
    arena = () if arena_bytes is None else (f"-DTFASC_TENSOR_ARENA_SIZE={int(arena_bytes)}",)
    builder = Builder(tools, target, cache_dir, extra_flags=arena)
    return builder.build(resolver_methods=resolver_methods(ops), bundle_sources=bundle_sources(bundle_dir),
                         bundle_dir=bundle_dir, elf=Path(work_dir) / target.name / "firmware.elf")


def _symbol_address(tools: Toolchain, elf: Path, symbol: str) -> int:
    for line in subprocess.run([tools.nm, str(elf)], capture_output=True, text=True, check=True).stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] == symbol:
            return int(parts[0], 16)
    raise RuntimeError(f"{elf}: no symbol {symbol}")


def run_firmware(tools: Toolchain, target: Target, elf: Path, records: np.ndarray, *, mode: int, cache_dir: Path,
                 layout: dict[str, tuple[int, ...]], timeout_s: float = 600) -> Run:
    """Run ``elf`` on ``target``'s board over ``records`` (``[n, ...]``, int8 for mode 0, int16 PCM for mode 1).

    ``layout`` gives each output array's per-record shape and dtype name, in the order the runner
    writes them (``{"outputs": ((K,), "int8")}`` for mode 0). ``RuntimeError`` with the firmware's
    output when it fails, faults or times out.
    """
    records = np.ascontiguousarray(records)
    plugin = insn_plugin.build_plugin(Path(cache_dir) / "plugin", tools.host_cc)
    mark = _symbol_address(tools, elf, "tfasc_mark")
    with tempfile.TemporaryDirectory(prefix=f"tfasc-{target.name}-") as work:
        work = Path(work)
        record_bytes = int(np.prod(records.shape[1:], dtype=np.int64)) * records.dtype.itemsize  # 0 records too
        header = np.array([_MAGIC, mode, len(records), record_bytes], "<i4")
        (work / "tfasc_in.bin").write_bytes(header.tobytes() + records.tobytes())
        log = work / "plugin.log"
        command = [tools.qemu, "-M", target.board, "-nographic", "-monitor", "none", "-serial", "none",
                   "-semihosting-config", "enable=on,target=native", *insn_plugin.qemu_plugin_args(plugin, mark),
                   "-D", str(log), "-kernel", str(Path(elf).resolve())]
        start = time.perf_counter()
        try:
            completed = subprocess.run(command, cwd=work, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"{target.name}: the firmware ran over {timeout_s:.0f} s on {target.board}") from None
        seconds = time.perf_counter() - start
        arena = [line.split()[1] for line in completed.stdout.splitlines() if line.startswith("tfasc-arena ")]
        if completed.returncode != 0 or not arena:
            said = (completed.stdout + completed.stderr).strip()[-2000:]
            fault = {3: " (a fault: HardFault, MemManage, BusFault or UsageFault)",
                     4: " (abort(): a TFLite Micro kernel check failed)"}.get(completed.returncode, "")
            raise RuntimeError(f"{target.name}: the firmware failed on {target.board} with status "
                               f"{completed.returncode}{fault}: {said or 'no output'}")
        raw = (work / "tfasc_out.bin").read_bytes()
        marks, _ = insn_plugin.parse_counts(log.read_text())
    per_record = 2 if mode == 0 else 3
    if len(marks) != per_record * len(records):
        raise RuntimeError(f"{target.name}: {len(marks)} instruction marks for {len(records)} records")
    counts = np.asarray(marks, np.int64).reshape(len(records), per_record)
    sizes = {name: int(np.prod(shape)) * np.dtype(dtype).itemsize for name, (shape, dtype) in layout.items()}
    stride = sum(sizes.values())
    if len(raw) != stride * len(records):
        raise RuntimeError(f"{target.name}: {len(raw)} output bytes for {len(records)} records of {stride}")
    outputs, offset = {}, 0
    for name, (shape, dtype) in layout.items():
        rows = [np.frombuffer(raw, dtype, count=int(np.prod(shape)), offset=r * stride + offset).reshape(shape)
                for r in range(len(records))]
        outputs[name] = np.stack(rows) if rows else np.zeros((0, *shape), dtype)
        offset += sizes[name]
    return Run(outputs=outputs, arena_bytes=int(arena[-1]), phases=np.diff(counts, axis=1), seconds=seconds)


def int8_layout(output_bytes: int) -> dict[str, tuple[tuple[int, ...], str]]:
    """The runner's mode-0 output layout."""
    return {"outputs": ((output_bytes,), "int8")}


def pcm_layout(model_inputs: int, input_bytes: int, output_bytes: int, classes: int) -> dict:
    """The runner's mode-1 output layout (per clip)."""
    return {"inputs": ((model_inputs, input_bytes), "int8"), "outputs": ((model_inputs, output_bytes), "int8"),
            "label": ((), "<i4"), "probabilities": ((classes,), "<f4")}


def default_cache_dir() -> Path:
    """``$TFASC_DEVICE_CACHE``, else ``$XDG_CACHE_HOME/tfasc/device`` (``~/.cache/tfasc/device``)."""
    if os.environ.get("TFASC_DEVICE_CACHE"):
        return Path(os.environ["TFASC_DEVICE_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tfasc" / "device"
