"""The emulated-device figures in words: the report's lines and the bundle README's.

Reads the ``device`` section :func:`tfasc.device.check.check_bundle` returns (per target: arena bytes,
text / data / bss, instructions per inference, and for the PCM path the front end's instructions, the
labels and the int8 input differences).
"""

from __future__ import annotations

from typing import Any, Mapping

#: SRAM of common Cortex-M parts, for the "fits" column: a 256 KB Cortex-M4 (e.g. STM32F4 class) and
#: the emulated M55 board's 4 MB.
SRAM_BYTES = {"cortex-m4": 256 << 10, "cortex-m55": 4 << 20, "cortex-m55-dsp": 4 << 20}
#: Stack allowed for in the fit (the firmware reserves 64 KB; TFLite Micro's kernels use a few KB).
STACK_BYTES = 8 << 10


def static_ram(figures: Mapping[str, Any]) -> int:
    """RAM the firmware holds statically: data + bss (the tensor arena at its measured size included)."""
    return int(figures["data_bytes"]) + int(figures["bss_bytes"])


def fits(name: str, figures: Mapping[str, Any]) -> bool:
    """Whether static RAM and :data:`STACK_BYTES` fit the part's SRAM (:data:`SRAM_BYTES`)."""
    return static_ram(figures) + STACK_BYTES <= SRAM_BYTES.get(name, 4 << 20)


def _row(name: str, f: Mapping[str, Any]) -> str:
    if not f["fits_board"]:
        return f"| {name} | {f['note']} | | | no | | |"
    pcm = f.get("pcm")
    frontend = f"{pcm['frontend_instructions_per_clip']:,}" if pcm else "-"
    sram = SRAM_BYTES.get(name, 4 << 20)
    return (f"| {name} | {f['arena_bytes_used']:,} | {f['text_bytes']:,} | {static_ram(f):,} | "
            f"{'yes' if fits(name, f) else 'no'} ({sram >> 10:,} KB) | {f['instructions_per_inference']:,} | {frontend} |")


def table(report: Mapping[str, Any]) -> list[str]:
    """A markdown table of the targets' figures."""
    return [
        "| target | tensor arena (bytes) | flash: text + rodata (bytes) | static RAM: data + bss (bytes) | "
        "fits SRAM | instructions per inference | PCM to int8 input (front end, normalization, quantization): instructions per clip |",
        "|---|---|---|---|---|---|---|",
        *(_row(name, figures) for name, figures in report["targets"].items()),
    ]


def _pcm_sentence(report: Mapping[str, Any]) -> list[str]:
    lines = []
    for name, figures in report["targets"].items():
        pcm = figures.get("pcm")
        if figures.get("pcm_note"):
            lines.append(f"- {name}, from int16 PCM: not run, {figures['pcm_note']}")
        if not pcm:
            continue
        lines.append(
            f"- {name}, from int16 PCM through the bundle's front end: {pcm['labels_equal']} of {pcm['clips']} "
            f"clips got the Python pipeline's label; {pcm['input_values_differing']:,} of {pcm['input_values']:,} "
            f"int8 input values differed from the Python pipeline's (at most {pcm['input_max_abs_diff']} LSB), "
            f"int8 scores at most {pcm['output_max_abs_diff_vs_python_pipeline']} LSB apart")
    return lines


def markdown_lines(report: Mapping[str, Any]) -> list[str]:
    """The report's ``Device`` lines."""
    if report.get("skipped"):
        return [f"- emulated-device check not run: {report['skipped']}"]
    ran = {name: f for name, f in report["targets"].items() if f["fits_board"]}
    built = f"QEMU, TFLite Micro + CMSIS-NN built from {report.get('sources', 'the sources')}"
    lines = [
        f"- on emulated Cortex-M cores ({built}): {next(iter(ran.values()))['examples']} int8 inputs bit-exact with "
        f"the Python interpreter on {', '.join(ran)}; bundle arena {report['arena_bytes']:,} bytes (the largest measured)"
        if ran else f"- on emulated Cortex-M cores ({built}): the model fits none of the boards",
        "",
        *table(report),
        "",
        "Instructions are counted by a QEMU plugin: instructions, not cycles (QEMU models no timing). "
        "Static RAM is the firmware's data + bss with the arena at its measured size; the fit allows "
        f"{STACK_BYTES >> 10} KB of stack.",
        *_pcm_sentence(report),
    ]
    frontend = report.get("frontend")
    if frontend:
        per_frame = ", ".join(f"{name} {f['pcm']['frontend_instructions_per_clip'] / frontend['frames']:,.0f}"
                              for name, f in ran.items() if f.get("pcm"))
        lines.append(
            f"- log-mel front end (frontend.c, CMSIS-DSP): tables {frontend['table_bytes']['total']:,} B + CMSIS FFT "
            f"tables {frontend['cmsis_fft_table_bytes']['total']:,} B in flash, scratch {frontend['scratch_bytes']['total']:,} B "
            f"+ features {frontend['output_bytes']:,} B + the int16 clip {frontend['input_bytes']:,} B in RAM, "
            f"{frontend['ffts']} FFTs of {frontend['n_fft']} per clip ({frontend['frames']} frames)"
            + (f"; PCM to int8 input, instructions per frame: {per_frame}" if per_frame else ""))
    if report.get("pcm_note"):
        lines.append(f"- PCM path: {report['pcm_note']}")
    return lines


def readme_lines(report: Mapping[str, Any]) -> list[str]:
    """The bundle README's words on the device."""
    return [
        "This bundle was compiled with TFLite Micro and the CMSIS-NN kernels and run on emulated cores "
        "(QEMU); every output was bit-exact with the TFLite Micro Python interpreter:",
        "",
        *table(report),
        "",
        "Instructions are counted on the emulator: instructions, not cycles. `kTensorArenaSize` is the largest "
        "arena measured above.",
    ]
