"""The instruction-counting QEMU plugin: exact counts on a firmware whose instruction count is known.

The firmware below is a few lines of Thumb assembly, so the number of instructions between two marks
is arithmetic on the source, not a measurement:

    reset:    bl marker                 1   <- mark A is reached after 1 instruction
              ldr r2, =LOOPS            1
    loop:     adds/subs/bne  x LOOPS    3 * LOOPS (the last bne falls through, still executed)
              bl marker                 1   <- mark B
              bl lead_in                1
              movs r0 / ldr r1 / bkpt   3   (semihosting SYS_EXIT, after the final return)
    lead_in:  nop x LEAD_NOPS           falls through into marker  <- mark C, mid-block
    marker:   nop x MARKER_NOPS, bx lr  MARKER_NOPS + 1 per call

Mark C is reached by falling through, so the marked instruction sits inside a translated block that
started at ``lead_in``, and the long ``marker`` body is split into blocks differently on the two paths
(QEMU ends blocks at 1 KB guest pages and, with a plugin loaded, after about 200 instructions): a
plugin that reported its block-granular counter unadjusted would be off by a different amount at
mark B and at mark C, so even the differences would be wrong. ``-d in_asm`` shows the block layout and
the test checks that mark C really is inside a block.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tfasc.device import plugin

LEAD_NOPS = 100
MARKER_NOPS = 600   # long enough to span a guest page boundary and QEMU's per-block op budget
LOOPS = (1000, 5000)

FIRMWARE = """\
    .syntax unified
    .cpu cortex-m4
    .thumb

    .section .vectors, "a"
    .word __stack_top
    .word reset                 @ .thumb_func below: the address carries the Thumb bit

    .text
    .thumb_func
    .global reset
reset:
    bl marker
    ldr r2, =LOOPS
loop:
    adds r3, r3, #1
    subs r2, r2, #1
    bne loop
    bl marker
    bl lead_in
    movs r0, #0x18              @ SYS_EXIT
    ldr r1, =0x20026            @ ADP_Stopped_ApplicationExit
    bkpt 0xab
    b .
    .ltorg

    .thumb_func
lead_in:
    .rept LEAD_NOPS
    nop
    .endr
    .thumb_func
    .global marker
marker:
    .rept MARKER_NOPS
    nop
    .endr
    bx lr
"""

LINKER_SCRIPT = """\
MEMORY
{
  FLASH (rx)  : ORIGIN = 0x00000000, LENGTH = 4M
  RAM   (rwx) : ORIGIN = 0x20000000, LENGTH = 4M
}
SECTIONS
{
  .text : { KEEP(*(.vectors)) *(.text*) *(.rodata*) } > FLASH
  __stack_top = ORIGIN(RAM) + LENGTH(RAM);
}
"""


def expected_counts(loops: int) -> tuple[list[int], int]:
    """Marks A, B, C and the total, counted by hand from ``FIRMWARE``."""
    call = MARKER_NOPS + 1                    # one pass through marker: the nops and bx lr
    a = 1                                     # bl marker
    b = a + call + 1 + 3 * loops + 1          # marker, ldr, the loop, bl marker
    c = b + call + 1 + LEAD_NOPS              # marker, bl lead_in, the lead-in nops
    total = c + call + 3                      # marker, movs, ldr, bkpt
    return [a, b, c], total


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("plugin")
    (folder / "fw.S").write_text(FIRMWARE)
    (folder / "fw.ld").write_text(LINKER_SCRIPT)
    return folder


@pytest.fixture(scope="module")
def plugin_so(device_toolchain, work) -> Path:
    return plugin.build_plugin(work / "cache", device_toolchain.host_cc)


def build_firmware(toolchain, work: Path, loops: int) -> tuple[Path, int]:
    elf = work / f"fw-{loops}.elf"
    subprocess.run([toolchain.gcc, "-mcpu=cortex-m4", "-mthumb", "-nostdlib", "-nostartfiles",
                    f"-DLOOPS={loops}", f"-DLEAD_NOPS={LEAD_NOPS}", f"-DMARKER_NOPS={MARKER_NOPS}",
                    "-T", str(work / "fw.ld"), str(work / "fw.S"), "-o", str(elf)],
                   check=True, capture_output=True, text=True)
    symbols = subprocess.run([toolchain.nm, str(elf)], check=True, capture_output=True, text=True).stdout
    address = next(int(fields[0], 16) for fields in map(str.split, symbols.splitlines())
                   if len(fields) == 3 and fields[2] == "marker")
    return elf, address


def run_qemu(toolchain, elf: Path, args: list[str], log: Path, debug: str | None = None) -> str:
    if debug:  # widen -d, e.g. "plugin,in_asm"
        args = [debug if previous == "-d" else arg for previous, arg in zip([""] + args, args)]
    log.unlink(missing_ok=True)
    result = subprocess.run([toolchain.qemu, "-M", "mps2-an386", "-nographic", "-monitor", "none",
                             "-serial", "none", "-semihosting-config", "enable=on,target=native",
                             "-kernel", str(elf), *args, "-D", str(log)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, f"qemu exit {result.returncode}: {result.stderr}"
    return log.read_text()


def test_marks_count_exactly_the_instructions_between_them(device_toolchain, plugin_so, work):
    differences = {}
    for loops in LOOPS:
        elf, marker = build_firmware(device_toolchain, work, loops)
        assert marker & 1 == 0  # nm gives the even address; test the plugin's Thumb-bit clearing too
        args = plugin.qemu_plugin_args(plugin_so, marker | 1)
        log = run_qemu(device_toolchain, elf, args, work / f"run-{loops}.log")
        marks, total = plugin.parse_counts(log)
        expected_marks, expected_total = expected_counts(loops)
        assert (marks, total) == (expected_marks, expected_total), log
        differences[loops] = [later - earlier for earlier, later in zip(marks, marks[1:])]
        assert differences[loops] == [MARKER_NOPS + 3 * loops + 3, MARKER_NOPS + LEAD_NOPS + 2]
        # Repeatable: a second run gives the same log, line for line.
        assert run_qemu(device_toolchain, elf, args, work / f"again-{loops}.log") == log
    low, high = LOOPS
    assert differences[high][0] - differences[low][0] == 3 * (high - low)  # linear in the loop count
    assert differences[high][1] == differences[low][1]


def test_mark_inside_a_block_and_no_mark(device_toolchain, plugin_so, work):
    elf, marker = build_firmware(device_toolchain, work, LOOPS[0])
    args = plugin.qemu_plugin_args(plugin_so, marker)
    log = run_qemu(device_toolchain, elf, args, work / "in_asm.log", debug="plugin,in_asm")
    # The block layout QEMU translated (with the plugin's instrumentation): first and all addresses.
    blocks = [[int(address, 16) for address in re.findall(r"^0x([0-9a-f]+):", block, re.MULTILINE)]
              for block in log.split("IN:")[1:]]
    blocks = [block for block in blocks if block]
    inside = [block for block in blocks if marker in block[1:]]
    assert inside, "the fall-through into marker was expected to be translated inside a block"
    assert plugin.parse_counts(log) == expected_counts(LOOPS[0])  # in_asm changes no count

    bare = run_qemu(device_toolchain, elf, plugin.qemu_plugin_args(plugin_so, None), work / "bare.log")
    assert plugin.parse_counts(bare) == ([], expected_counts(LOOPS[0])[1])


def test_build_plugin_caches_by_source_hash(device_toolchain, tmp_path):
    first = plugin.build_plugin(tmp_path, device_toolchain.host_cc)
    assert re.fullmatch(r"insn_count-[0-9a-f]{12}\.so", first.name)
    stamp = first.stat().st_mtime_ns
    assert plugin.build_plugin(tmp_path, device_toolchain.host_cc) == first
    assert first.stat().st_mtime_ns == stamp
    assert sorted(path.name for path in tmp_path.iterdir()) == [first.name]  # no temporary left


def test_build_plugin_reports_compiler_errors(tmp_path):
    host_cc = shutil.which("cc")
    if host_cc is None:
        pytest.skip("no host cc")
    broken = tmp_path / "broken.c"
    broken.write_text("int main(void) { return undeclared_name; }\n")
    with pytest.raises(RuntimeError, match="undeclared_name"):
        plugin.build_plugin(tmp_path / "cache", host_cc, source=broken)
    assert list((tmp_path / "cache").iterdir()) == []


def test_qemu_plugin_args_and_parse_counts():
    assert plugin.qemu_plugin_args(Path("/c/p.so"), 0x22) == ["-plugin", "/c/p.so,mark=0x22", "-d", "plugin"]
    assert plugin.qemu_plugin_args(Path("/c/p.so"), None) == ["-plugin", "/c/p.so", "-d", "plugin"]
    assert plugin.qemu_plugin_args(Path("/a,b/p.so"), None)[1] == "/a,,b/p.so"
    text = "noise\ntfasc-mark 1\ntfasc-mark 3004\nother tfasc-mark 9\ntfasc-total 3010\n"
    assert plugin.parse_counts(text) == ([1, 3004], 3010)
    assert plugin.parse_counts("tfasc-mark 5\n") == ([5], None)
    assert plugin.parse_counts("") == ([], None)
