"""Export a trained model: int8 / float16 / float32 TFLite, TFLite Micro verification, int8
evaluation, size and cost profile, and the Cortex-M bundle. Reads models; never trains.

Inputs are standardized model inputs exactly as the model saw them in training: features
``[n, freq, time, channels]`` (with ``features.segment_frames``, segments of a clip's features)
or waveforms ``[n, samples, channels]``; the bundle's ``model_config.h`` records the front end
(feature parameters or the PCM-to-input conversion), the standardization and the segmenting so the
device can reproduce them. Scores are per clip: the mean of a clip's segments' probabilities.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from tfasc import metrics as metric_fns
from tfasc.compress.graph import with_input_shape
from tfasc.deploy import bundle, convert, flatbuffer, profile, tflm
from tfasc.evaluate import clip_probabilities, score
from tfasc.files import write_atomic

INT8_FILE = "model_int8.tflite"
FLOAT16_FILE = "model_float16.tflite"
FLOAT32_FILE = "model_float32.tflite"


def kernel_sharing(model, tflite_int8: bytes) -> dict[str, Any]:
    """Whether the int8 flatbuffer stores each distinct kernel of ``model`` once, in numbers and words.

    The DCASE rule counts a shared kernel once; flash holds what the flatbuffer stores. A converter
    that folds a different BatchNorm into each use of a shared convolution stores one copy per use.
    """
    kernels = profile.distinct_kernels(model)
    stored = flatbuffer.kernel_buffers(tflite_int8)
    once = stored["buffers"] <= kernels
    text = (
        f"The int8 flatbuffer stores {stored['buffers']} weight buffers ({stored['bytes']:,} bytes) for "
        f"{stored['operators']} convolution/dense ops and the model's {kernels} distinct kernels: "
        + ("every shared kernel is stored once, as the DCASE-rule size counts it."
           if once else
           f"{stored['buffers'] - kernels} extra copies, so flash holds more than the DCASE-rule size counts.")
    )
    return {"keras_kernels": kernels, "int8_kernel_ops": stored["operators"],
            "int8_kernel_buffers": stored["buffers"], "int8_kernel_bytes": stored["bytes"],
            "stored_once": once, "text": text}


def export_model(
    *,
    int8_source,
    float_model,
    profiled_model=None,
    representative: np.ndarray,
    eval_inputs: np.ndarray,
    eval_targets: np.ndarray,
    class_names: Sequence[str],
    multi_label: bool,
    frontend: Mapping[str, Any],
    clip_seconds: float,
    out_dir: Path,
    verify_examples: int,
    find_smallest_arena: bool = True,
    normalization=None,
    segment_frames: int | None = None,
    clip_frames: int | None = None,
    sigmoid_outputs: bool | None = None,
    device: Mapping[str, Any] | None = None,
    pcm_clips: np.ndarray | None = None,
    pcm_inputs: np.ndarray | None = None,
) -> dict[str, Any]:
    """Convert, verify, evaluate and bundle; returns the ``deploy`` section of the report.

    Args:
        int8_source: the model converted to int8 (quantization-aware after the qat stage, else float
            and calibrated on ``representative``).
        float_model: the float model (pruned when pruning ran, in export form) for the float16 /
            float32 files and the top-1 agreement.
        profiled_model: the model whose parameters and MACs are reported (default ``float_model``):
            the trained float model before any export rewrite.
        representative: ``[n, ...]`` normalized training inputs for int8 calibration.
        eval_inputs, eval_targets: normalized evaluation model inputs and the clips' one-/multi-hot
            targets: with segments, ``clip_frames // segment_frames`` consecutive inputs (segments) per clip. The
            TFLite Micro check runs on the first ``verify_examples`` inputs; the metrics score clips,
            each the mean of its segments' probabilities (:func:`tfasc.evaluate.clip_probabilities`).
        frontend: the model's front end for ``model_config.h``, ``{"kind": "log_mel", ...feature
            parameters}`` or ``{"kind": "waveform", "sample_rate", "clip_seconds",
            "audio_channels", "standardize_mean", "standardize_std"}`` (see ``tfasc.deploy.bundle``).
        out_dir: the run directory; the bundle goes to ``out_dir/deploy``.
        normalization: the training input normalization, reproduced in C by the bundle's
            ``input_path.h`` (:class:`tfasc.data.normalization.Normalization`; None: no such file).
        segment_frames, clip_frames: the frames of one model input (``features.segment_frames``; None:
            whole clips) and of a clip's features (the bundle documents cutting and averaging).
        sigmoid_outputs: per-class sigmoid probabilities instead of a softmax
            (:func:`tfasc.metrics.sigmoid_outputs`; default ``multi_label``).
        device: the emulated-device check (:mod:`tfasc.device.check`): ``targets`` (names; empty: no
            check), ``sources`` (the TFLite Micro / CMSIS tree, None: ``$TFASC_DEVICE_SOURCES``),
            ``examples`` (verified inputs run on each core), ``required`` (fail when the tools are missing).
        pcm_clips, pcm_inputs: clips of int16 PCM ``[n, samples, channels]`` for the bundle's PCM path and
            the Python pipeline's normalized float model inputs of each ``[n, model_inputs, ...]``.
    """
    sigmoid = multi_label if sigmoid_outputs is None else sigmoid_outputs
    segments_per_clip = 1 if segment_frames is None else clip_frames // segment_frames
    if len(eval_inputs) != len(eval_targets) * segments_per_clip:
        raise ValueError(f"{len(eval_inputs)} evaluation inputs are not {segments_per_clip} per clip of "
                         f"{len(eval_targets)} targets")
    out_dir = Path(out_dir)
    calibration = [example[np.newaxis] for example in np.asarray(representative, np.float32)]
    example_shape = tuple(np.shape(eval_inputs)[1:])  # fixes the length of a model that accepts any
    int8 = convert.to_tflite(int8_source, kind="int8", representative_data=calibration, input_shape=example_shape)
    float16 = convert.to_tflite(float_model, kind="float16", input_shape=example_shape)
    float32 = convert.to_tflite(float_model, kind="float32", input_shape=example_shape)
    ops = flatbuffer.check_builtin_only(int8)

    input_q, output_q = convert.io_quantization(int8)
    verify_inputs = input_q.quantize(eval_inputs[:verify_examples])
    exactness = tflm.verify_bit_exact(int8, verify_inputs)
    arena_used = tflm.arena_bytes_used(int8)
    arena_min = tflm.smallest_arena(int8) if find_smallest_arena else None

    # The whole evaluation split through the int8 model with the optimized kernels where they equal
    # the reference kernels (which TFLite Micro matches) on the verified inputs, else the reference
    # kernels: the int8 metrics are the device's.
    optimized_exact = bool(np.array_equal(convert.run_tflite_raw(int8, verify_inputs, reference_kernels=False),
                                          exactness.reference_outputs))
    def clip_scores(logits_of) -> np.ndarray:
        return clip_probabilities(lambda inputs: metric_fns.probabilities_from_logits(logits_of(inputs), sigmoid=sigmoid),
                                  eval_inputs, segments_per_clip)

    keras_logits = lambda model: (lambda inputs: model.predict(inputs, verbose=0, batch_size=64))
    int8_scores = clip_scores(lambda inputs: convert.run_tflite(int8, inputs, reference_kernels=not optimized_exact))
    float_scores = clip_scores(keras_logits(float_model))
    source_scores = float_scores if int8_source is float_model else clip_scores(keras_logits(int8_source))
    int8_metrics = score(int8_scores, eval_targets, class_names, multi_label=multi_label)
    float_metrics = score(float_scores, eval_targets, class_names, multi_label=multi_label)
    agrees = lambda scores: float(np.mean(int8_scores.argmax(axis=1) == scores.argmax(axis=1)))

    profiled = with_input_shape(profiled_model or float_model, example_shape)  # MACs of one evaluation input
    complexity = profile.profile_model(profiled, clip_seconds=clip_seconds, tflite_int8=int8)
    bundle_arguments = dict(
        input_details={"shape": input_q.shape, "quantization": (input_q.scale, input_q.zero_point)},
        output_details={"shape": output_q.shape, "quantization": (output_q.scale, output_q.zero_point)},
        frontend=frontend,
        ops=ops,
        class_names=class_names,
        normalization=normalization,
        segment_frames=segment_frames,
        clip_frames=clip_frames,
        sigmoid_outputs=sigmoid,
        macs=complexity["macs"],
    )
    bundle_dir = bundle.write_bundle(out_dir / "deploy", int8, arena_bytes=arena_used, **bundle_arguments)
    device_report = None
    if device and device.get("targets"):
        device_report = run_device_check(
            bundle_dir, int8, ops, device, verify_inputs=verify_inputs, verified=exactness.tflm_outputs,
            host_arena=arena_used, work_dir=out_dir / "device", input_q=input_q, output_q=output_q,
            sigmoid=sigmoid, pcm_clips=pcm_clips, pcm_inputs=pcm_inputs, frontend=frontend)
        if device_report.get("arena_bytes"):
            from tfasc.deploy.device_report import readme_lines

            arenas = {name: figures["arena_bytes_used"] for name, figures in device_report["targets"].items()
                      if figures["fits_board"]}
            bundle.write_bundle(out_dir / "deploy", int8, arena_bytes=max(arenas.values()), device_arenas=arenas,
                                device_lines=readme_lines(device_report), **bundle_arguments)
    write_atomic(out_dir / FLOAT16_FILE, float16)
    write_atomic(out_dir / FLOAT32_FILE, float32)

    return {
        "metrics": int8_metrics,
        "float_metrics": float_metrics,
        # with the float model (pruned when pruning ran), and with the Keras model converted to int8
        # (the quantization-aware one after qat): the second isolates the converter and int8 kernels.
        "top1_agreement_with_float": agrees(float_scores),
        "top1_agreement_with_keras_source": agrees(source_scores),
        "int8_evaluation_kernels": "optimized (equal to the reference kernels on the verified inputs)"
                                   if optimized_exact else "reference (the optimized kernels differed on the verified inputs)",
        "tflm": {
            **exactness.to_dict(),
            "arena_bytes_used": arena_used,
            "smallest_arena_bytes": arena_min,
        },
        "ops": ops,
        "files": {
            "int8": {"path": str((bundle_dir / INT8_FILE).relative_to(out_dir)), "bytes": len(int8)},
            "float16": {"path": FLOAT16_FILE, "bytes": len(float16)},
            "float32": {"path": FLOAT32_FILE, "bytes": len(float32)},
        },
        "input_quantization": {"scale": input_q.scale, "zero_point": input_q.zero_point},
        **({"device": device_report} if device_report is not None else {}),
        "sharing": kernel_sharing(float_model, int8),
        "profile": complexity,
    }


def python_pcm_labels(outputs: np.ndarray, output_q, *, sigmoid: bool) -> np.ndarray:
    """Each clip's class from its model outputs ``[n, model_inputs, K]`` int8: the mean over its inputs of
    the probabilities of the dequantized logits, as ``tfasc.evaluate.clip_probabilities`` scores clips."""
    logits = output_q.dequantize(outputs.reshape(-1, outputs.shape[-1]))
    probabilities = metric_fns.probabilities_from_logits(logits, sigmoid=sigmoid).reshape(outputs.shape)
    return probabilities.mean(axis=1).argmax(axis=1)


def run_device_check(bundle_dir: Path, int8: bytes, ops, device: Mapping[str, Any], *, verify_inputs: np.ndarray,
                     verified: np.ndarray, host_arena: int, work_dir: Path, input_q, output_q, sigmoid: bool,
                     pcm_clips: np.ndarray | None, pcm_inputs: np.ndarray | None,
                     frontend: Mapping[str, Any]) -> dict[str, Any]:
    """The bundle on the emulated cores (:func:`tfasc.device.check.check_bundle`): the first
    ``device["examples"]`` verified inputs, and the PCM clips when the bundle has a PCM path.

    Raises:
        RuntimeError: the tools are missing and ``device["required"]``; a device check failure.
    """
    from tfasc.device.check import PcmCheck, check_bundle

    pcm = None
    if pcm_clips is not None and len(pcm_clips) and "TFASC_HAS_PCM_PATH" in (bundle_dir / "tfasc_model.h").read_text():
        inputs = input_q.quantize(pcm_inputs.reshape(-1, *pcm_inputs.shape[2:])).reshape(pcm_inputs.shape)
        run_model = lambda values: tflm.run_tflm(int8, values)
        outputs = run_model(inputs.reshape(-1, *inputs.shape[2:])).reshape(*inputs.shape[:2], -1)
        pcm = PcmCheck(clips=np.asarray(pcm_clips, np.int16), inputs=inputs, outputs=outputs,
                       labels=python_pcm_labels(outputs, output_q, sigmoid=sigmoid), run_model=run_model)
    examples = int(device.get("examples", len(verify_inputs)))
    report = check_bundle(bundle_dir, ops, inputs=verify_inputs[:examples], expected=verified[:examples],
                          target_names=device["targets"], sources=device.get("sources"), host_arena=host_arena,
                          work_dir=Path(work_dir), pcm=pcm)
    if report.get("skipped") and device.get("required"):
        raise RuntimeError(f"export.device.required: the device check cannot run here: {report['skipped']}")
    if (bundle_dir / "frontend.h").exists():
        from tfasc.device.frontend import frontend_costs

        params, clip = bundle.log_mel_frontend_arguments(frontend)
        report["frontend"] = frontend_costs(params, **clip)
    if pcm is None and report.get("targets"):
        reason = bundle.log_mel_frontend_files(frontend)[1] if frontend.get("kind") == "log_mel" else ""
        report["pcm_note"] = (f"no PCM path in this bundle (no C front end for these features{': ' + reason if reason else ''})"
                              if pcm_clips is not None else "no clips were given for the PCM path")
    return report
