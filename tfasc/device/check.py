"""The export's device check: the bundle on each emulated core, compared with the Python interpreter.

For every target the bundle's firmware (:func:`tfasc.device.emulate.build_firmware`) runs

1. the verified int8 model inputs: every output must equal the TFLite Micro Python interpreter's, bit
   for bit;
2. with a PCM path and clips given, real clips from int16 PCM through the bundle's own front end and
   normalization (``tfasc_model.cc``): the int8 outputs must equal the Python interpreter's on the
   inputs the device made, and each clip's label must equal the Python pipeline's (training front end,
   normalization, quantization, the Python interpreter); how far the device's int8 inputs are from
   the Python pipeline's is reported.

It measures per target the tensor-arena bytes in use, the firmware's text / data / bss, and the
instructions per inference (and per clip's front end) counted by the QEMU plugin.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from tfasc.deploy.tflm import output_differences
from tfasc.device import emulate, targets as target_table, toolchain


class DeviceMismatchError(RuntimeError):
    """A device output differed from the Python interpreter's, or a clip's label from the Python pipeline's."""


@dataclasses.dataclass(frozen=True)
class PcmCheck:
    """Clips for the PCM path and what the Python pipeline makes of them.

    Attributes:
        clips: ``[n, samples, channels]`` int16 PCM.
        inputs: ``[n, model_inputs, ...]`` the Python pipeline's int8 model inputs of each clip.
        labels: ``[n]`` the Python pipeline's class of each clip.
        outputs: ``[n, model_inputs, K]`` the Python interpreter's int8 outputs on ``inputs``.
        run_model: the Python TFLite Micro interpreter (int8 inputs ``[m, ...]`` -> int8 outputs).
    """

    clips: np.ndarray
    inputs: np.ndarray
    labels: np.ndarray
    outputs: np.ndarray
    run_model: Callable[[np.ndarray], np.ndarray]


def _check_target(tools, target, bundle_dir: Path, ops: Sequence[str], *, inputs: np.ndarray, expected: np.ndarray,
                  pcm: PcmCheck | None, host_arena: int, cache_dir: Path, work_dir: Path) -> dict[str, Any]:
    start = time.perf_counter()
    build = lambda arena_bytes: emulate.build_firmware(tools, target, bundle_dir, ops, cache_dir=cache_dir,
                                                       work_dir=work_dir, arena_bytes=arena_bytes)
    # A first link with a token arena tells how much of the board's RAM the rest of the firmware takes.
    probe_arena = 16
    room = emulate.room_for_arena(target, build(probe_arena), probe_arena, inputs[0].nbytes if len(inputs) else 0)
    identity = {"target": target.name, "board": target.board, "description": target.description}
    if room < host_arena:  # reported, not run: the model needs a bigger part than this board
        return {**identity, "fits_board": False,
                "note": f"not run: the model's {host_arena:,}-byte tensor arena (host) does not fit in the "
                        f"{target.ram_bytes >> 20} MB of RAM of {target.board} beside the firmware's other data "
                        f"({max(room, 0):,} bytes left)"}
    arena = emulate.measuring_arena(host_arena, room)
    firmware = build(arena)
    build_seconds = time.perf_counter() - start
    output_bytes = int(np.prod(expected.shape[1:]))
    run = emulate.run_firmware(tools, target, firmware.elf, inputs, mode=0, cache_dir=cache_dir,
                               layout=emulate.int8_layout(output_bytes))
    device_outputs = run.outputs["outputs"].reshape(expected.shape)
    mismatched, max_diff = output_differences(device_outputs, expected)
    instructions = run.phases[:, 0]
    result: dict[str, Any] = {
        **identity,
        "fits_board": True,
        "examples": int(len(inputs)),
        "mismatched_examples": mismatched,
        "max_abs_diff": max_diff,
        "bit_exact": mismatched == 0,
        "arena_bytes_used": run.arena_bytes,
        "text_bytes": firmware.text,
        "data_bytes": firmware.data,
        # the measuring firmware's bss holds a larger arena than the model uses: report the model's
        "bss_bytes": firmware.bss - arena + run.arena_bytes,
        "instructions_per_inference": int(round(float(instructions.mean()))),
        "instructions_per_inference_max": int(instructions.max()),
        "build_seconds": round(build_seconds, 1),
        "emulation_seconds": round(run.seconds, 2),
    }
    heap = target.ram_bytes - firmware.data - firmware.bss - emulate.STACK_AND_RUNTIME_BYTES
    if pcm is not None and len(pcm.clips) and pcm.clips[0].nbytes > heap:
        result["pcm_note"] = (f"the clip's {pcm.clips[0].nbytes:,} bytes of PCM do not fit beside the firmware in "
                              f"the {target.ram_bytes >> 20} MB of RAM of {target.board} ({heap:,} bytes left)")
    elif pcm is not None and len(pcm.clips):
        model_inputs, input_bytes = pcm.inputs.shape[1], int(np.prod(pcm.inputs.shape[2:]))
        run_pcm = emulate.run_firmware(
            tools, target, firmware.elf, pcm.clips, mode=1, cache_dir=cache_dir,
            layout=emulate.pcm_layout(model_inputs, input_bytes, output_bytes, expected.shape[-1]))
        device_inputs = run_pcm.outputs["inputs"].reshape(pcm.inputs.shape)
        device_pcm_outputs = run_pcm.outputs["outputs"]
        on_device_inputs = pcm.run_model(device_inputs.reshape(-1, *pcm.inputs.shape[2:])).reshape(
            device_pcm_outputs.shape)
        model_mismatch, _ = output_differences(device_pcm_outputs, on_device_inputs)
        input_diff = np.abs(device_inputs.astype(np.int64) - pcm.inputs.astype(np.int64))
        labels = run_pcm.outputs["label"].astype(np.int64)
        result["pcm"] = {
            "clips": int(len(pcm.clips)),
            "labels_equal": int(np.count_nonzero(labels == pcm.labels)),
            "device_labels": labels.tolist(),
            "python_labels": np.asarray(pcm.labels).tolist(),
            "model_bit_exact_on_device_inputs": model_mismatch == 0,
            "input_values_differing": int(np.count_nonzero(input_diff)),
            "input_values": int(input_diff.size),
            "input_max_abs_diff": int(input_diff.max()) if input_diff.size else 0,
            "output_max_abs_diff_vs_python_pipeline": output_differences(device_pcm_outputs, pcm.outputs)[1],
            "frontend_instructions_per_clip": int(round(float(run_pcm.phases[:, 0].mean()))),
            "model_instructions_per_clip": int(round(float(run_pcm.phases[:, 1].mean()))),
            "emulation_seconds": round(run_pcm.seconds, 2),
        }
    return result


def check_bundle(bundle_dir: Path, ops: Sequence[str], *, inputs: np.ndarray, expected: np.ndarray,
                 target_names: Sequence[str], sources: str | None, host_arena: int, work_dir: Path,
                 pcm: PcmCheck | None = None, cache_dir: Path | None = None) -> dict[str, Any]:
    """Run the bundle in ``bundle_dir`` on each target; the report's ``device`` section.

    Args:
        inputs, expected: int8 model inputs ``[n, ...]`` and the Python interpreter's outputs on them.
        target_names: :data:`tfasc.device.targets.TARGETS` names.
        sources: the TFLite Micro / CMSIS source tree (None: ``$TFASC_DEVICE_SOURCES``).
        host_arena: the arena the Python interpreter used (sizes the measuring firmware's arena).
        pcm: clips for the bundle's PCM path (None: the int8 inputs only).

    Returns:
        ``{"targets": {name: figures}, "arena_bytes": the largest, ...}`` or, when the tools or sources
        are missing here, ``{"skipped": reason}``.

    Raises:
        DeviceMismatchError: a device output or label differed.
        RuntimeError: the firmware failed to build or run (the compiler's or the firmware's words).
    """
    chosen = [target_table.target(name) for name in target_names]
    reason = toolchain.unavailable_reason(sources)
    if reason is not None:
        return {"skipped": reason, "targets": {}}
    tools = toolchain.find_toolchain(sources)
    cache = Path(cache_dir) if cache_dir is not None else emulate.default_cache_dir()
    results = {}
    for target in chosen:
        results[target.name] = _check_target(tools, target, Path(bundle_dir), ops, inputs=inputs, expected=expected,
                                             pcm=pcm, host_arena=host_arena, cache_dir=cache, work_dir=work_dir)
    problems = []
    for name, figures in results.items():
        if not figures["fits_board"]:
            continue
        if not figures["bit_exact"]:
            problems.append(f"{name}: {figures['mismatched_examples']} of {figures['examples']} int8 inputs gave "
                            f"outputs differing from the Python TFLite Micro interpreter (up to "
                            f"{figures['max_abs_diff']} LSB)")
        check = figures.get("pcm")
        if check and not check["model_bit_exact_on_device_inputs"]:
            problems.append(f"{name}: the model's outputs on the inputs the device's front end made differ from "
                            "the Python interpreter's")
        if check and check["labels_equal"] != check["clips"]:
            problems.append(f"{name}: {check['clips'] - check['labels_equal']} of {check['clips']} clips got another "
                            f"label from PCM on the device ({check['device_labels']}) than in the Python pipeline "
                            f"({check['python_labels']})")
    if problems:
        raise DeviceMismatchError("device check failed: " + "; ".join(problems))
    ran = [f["arena_bytes_used"] for f in results.values() if f["fits_board"]]
    return {"targets": results, "arena_bytes": max(ran) if ran else None, "sources": str(tools.sources)}
