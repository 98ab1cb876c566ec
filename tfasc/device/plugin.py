"""Count the instructions a firmware executes on the emulated core: a QEMU TCG plugin and its build.

``plugin/insn_count.c`` is a small TCG plugin for ``qemu-system-arm`` (QEMU 7.2, plugin API 1). It
counts every executed guest instruction and, when given ``mark=0xADDR``, logs the running count each
time the instruction at ``ADDR`` (a function's address, Thumb bit allowed) is about to execute:

* ``tfasc-mark <n>``: ``n`` instructions were executed before that execution of the marked
  instruction, so the difference of two consecutive marks is the exact number of instructions from
  one entry into the marked function (included) to the next (excluded);
* ``tfasc-total <n>``: once, when QEMU exits.

These are instructions, not cycles: QEMU models no timing (``-icount`` only ties virtual time to the
instruction count), so the numbers measure work, not latency on real silicon.

Why counting per translated block is exact: at translation time each translated block (TB) gets an
inline "add the block's instruction count" op, run at the start of every execution of the block.
QEMU runs a block to its end unless an instruction inside it raises an exception (a fault), so the
counter is exact at block boundaries. A mark can fall anywhere inside a block (a call makes the
function's entry start a block, but code may also fall through into it); the plugin registers the
mark's callback with the number of the block's instructions from the mark to the block's end, which
the block's inline add has already counted, and subtracts it. The count is the same on every run: the
emulation is deterministic for a firmware that reads no clock.

QEMU loads the plugin with ``-plugin`` and writes its lines to the log enabled by ``-d plugin``;
the log file (``-D``) is the caller's choice. Debian's QEMU ships no plugin binaries and no
``qemu-plugin.h``, so the source declares the few API items it uses and is compiled here with the host
``cc`` into a cache folder, keyed by the source's hash.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import tempfile
from pathlib import Path

#: The plugin's C source, shipped beside this module.
SOURCE = Path(__file__).resolve().parent / "plugin" / "insn_count.c"
CFLAGS = ("-shared", "-fPIC", "-O2", "-Wall", "-Werror")

_LINE = re.compile(r"^tfasc-(mark|total) (\d+)\s*$", re.MULTILINE)


def build_plugin(cache_dir: Path, host_cc: str = "cc", *, source: Path = SOURCE) -> Path:
    """The compiled plugin, ``cache_dir/insn_count-<sha256(source)[:12]>.so``, built when absent.

    Compiled with ``host_cc`` and :data:`CFLAGS` to a temporary name, then moved into place with
    :func:`os.replace`, so concurrent builds and interrupted ones never leave a half-written library.
    ``RuntimeError`` with the compiler's output when compilation fails.
    """
    source = Path(source)
    text = source.read_bytes()
    digest = hashlib.sha256(text).hexdigest()[:12]
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / f"{source.stem}-{digest}.so"
    if target.is_file():
        return target
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=cache_dir)
    os.close(handle)
    try:
        try:
            result = subprocess.run([host_cc, *CFLAGS, "-o", temporary, str(source)],
                                    capture_output=True, text=True, check=False)
        except OSError as error:
            raise RuntimeError(f"cannot run the host compiler {host_cc!r} for {source.name}: {error}") from error
        if result.returncode != 0:
            raise RuntimeError(f"{host_cc} failed to compile the QEMU plugin {source} "
                               f"(exit status {result.returncode}):\n{result.stderr}{result.stdout}")
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return target


def qemu_plugin_args(plugin: Path, mark_address: int | None) -> list[str]:
    """``qemu-system-arm`` arguments loading ``plugin``, marking ``mark_address`` when given.

    The caller adds ``-D LOGFILE`` (else QEMU writes the lines to stderr). Commas in the path are
    doubled, as QEMU's option syntax requires.
    """
    option = str(plugin).replace(",", ",,")
    if mark_address is not None:
        if mark_address < 0:
            raise ValueError(f"mark address must be non-negative, got {mark_address}")
        option += f",mark={mark_address:#x}"
    return ["-plugin", option, "-d", "plugin"]


def parse_counts(log_text: str) -> tuple[list[int], int | None]:
    """The marks' running counts in order, and the total (None when QEMU did not exit cleanly)."""
    marks: list[int] = []
    total: int | None = None
    for kind, value in _LINE.findall(log_text):
        if kind == "mark":
            marks.append(int(value))
        else:
            total = int(value)
    return marks, total
