"""Stage ``export``: int8 / float16 / float32 TFLite, TFLite Micro bit-exact check, int8 evaluation,
profile and the Cortex-M bundle (see :mod:`tfasc.deploy.export`). The int8 model comes from the QAT
model when the run has one, else from the newest float model calibrated on training inputs (the first
``export.representative_examples`` clips, or segments with ``features.segment_frames``)."""

from __future__ import annotations

from typing import Any

from tfasc.data.prepare import frontend_of, normalized
from tfasc.log import log
from tfasc.formatting import headline, percent
from tfasc.training.context import FLOAT_MODEL, QAT_MODEL, StageContext
from tfasc.training.rundir import Artifact
from tfasc.training.stages import Stage, register


def device_frontend(context: StageContext) -> dict[str, Any]:
    """What the device computes before the int8 model: the front-end, clip format and normalization
    (a global one as the scalar mean and std, which a waveform bundle folds into its PCM conversion)."""
    recipe, normalization = context.recipe, context.data.normalization
    scalar = ({"standardize_mean": normalization.mean[0], "standardize_std": normalization.std[0]}
              if normalization.mode == "global" else {})
    return {
        **frontend_of(recipe).parameters(),
        "sample_rate": recipe.data.sample_rate,
        "clip_seconds": recipe.data.duration_s,
        "audio_channels": recipe.data.channels,
        "normalization": normalization.mode,
        **scalar,
    }


def device_clips(context: StageContext, count: int):
    """The first ``count`` evaluation clips as int16 PCM ``[n, samples, channels]`` and the Python pipeline's
    normalized model inputs of each ``[n, model_inputs, ...]`` (the training front end on the same PCM):
    what the emulated device's PCM path is compared with. None without clips."""
    import numpy as np

    from tfasc.data.audio import load_audio
    from tfasc.data.pipeline import feature_function

    recipe, data = context.recipe, context.data
    examples = data.eval.examples[:count]
    if not examples:
        return None, None
    samples = round(recipe.data.sample_rate * recipe.data.duration_s)
    clips = np.stack([load_audio(example.path, sample_rate=recipe.data.sample_rate, channels=recipe.data.channels,
                                 num_samples=samples) for example in examples])
    # The device reads int16: training's decoded float is pcm / 32768, so this is exact for 16-bit files.
    pcm = np.clip(np.round(clips * 32768.0), -32768, 32767).astype(np.int16)
    extract = feature_function(frontend_of(recipe), recipe.data.sample_rate, samples, recipe.data.channels)
    features = extract(pcm.astype(np.float32) / 32768.0).numpy()
    inputs = normalized(features, data)
    return pcm, inputs.reshape(len(pcm), -1, *inputs.shape[1:])


class ExportStage(Stage):
    name = "export"
    needs = (FLOAT_MODEL,)
    artifacts = (
        Artifact("deploy", "bundle"),
        Artifact("model_float32.tflite", "float32_tflite"),
        Artifact("model_float16.tflite", "float16_tflite"),
    )
    report_section = "deploy"

    def run(self, context: StageContext) -> dict[str, Any]:
        from tfasc.compress.export_form import to_export_form
        from tfasc.deploy.export import export_model

        recipe, data = context.recipe, context.data
        config = recipe.export
        float_model = context.load(FLOAT_MODEL, by=self.name)
        exported_float = to_export_form(float_model)
        has_qat = context.manifest.newest(QAT_MODEL) is not None
        int8_source = context.load(QAT_MODEL, by=self.name) if has_qat else exported_float
        log("exporting int8 / float16 / float32 TFLite and verifying the int8 model in TFLite Micro")
        from tfasc.device.toolchain import unavailable_reason

        device = config.device
        runs = bool(device.targets) and unavailable_reason(device.sources) is None
        pcm_clips, pcm_inputs = device_clips(context, device.clips) if runs and device.clips else (None, None)
        return export_model(
            int8_source=int8_source,
            float_model=exported_float,
            profiled_model=float_model,
            representative=normalized(data.train.features, data, limit=config.representative_examples),
            eval_inputs=normalized(data.eval.features, data),
            normalization=data.normalization,
            eval_targets=data.eval_targets,
            class_names=data.index.classes,
            multi_label=data.index.multi_label,
            sigmoid_outputs=data.sigmoid_outputs,
            segment_frames=data.segment_frames,
            clip_frames=data.train.features.shape[2] if data.segment_frames else None,
            frontend=device_frontend(context),
            clip_seconds=data.input_seconds,  # the audio one inference accounts for
            out_dir=context.output(),
            verify_examples=config.verify_examples,
            find_smallest_arena=config.smallest_arena,
            device={"targets": list(device.targets), "sources": device.sources, "examples": device.examples,
                    "required": device.required},
            pcm_clips=pcm_clips,
            pcm_inputs=pcm_inputs,
        )

    def markdown(self, report: dict) -> list[str]:
        deploy, float_metrics = report[self.report_section], report["metrics"]
        tflm, files, prof = deploy["tflm"], deploy["files"], deploy["profile"]
        exact = "bit-exact" if tflm["bit_exact"] else f"NOT bit-exact ({tflm['mismatched_examples']} mismatches)"
        smallest = f", smallest working arena {tflm['smallest_arena_bytes']:,} bytes" if tflm.get("smallest_arena_bytes") else ""
        storage = prof.get("tflite_int8", {})
        lines = [
            "## Deployment (int8, TFLite Micro)",
            "",
            f"- int8 {headline(deploy['metrics'])} (the float model it came from: "
            f"{headline(deploy.get('float_metrics', float_metrics))})",
            f"- top-1 agreement of the int8 model with the float model (pruned if pruning ran) "
            f"{percent(deploy['top1_agreement_with_float'])}, with the Keras model it was converted from "
            f"{percent(deploy['top1_agreement_with_keras_source'])}",
            f"- TFLite Micro vs TFLite reference kernels on {tflm['examples']} evaluation "
            f"{'segments' if report['data'].get('segment_frames') else 'clips'}: {exact}",
            f"- int8 metrics from TFLite's {deploy.get('int8_evaluation_kernels', 'optimized')} kernels",
            f"- tensor arena used: {tflm['arena_bytes_used']:,} bytes{smallest}",
            f"- ops: {', '.join(deploy['ops'])}",
            f"- files: int8 {files['int8']['bytes']:,} B, float16 {files['float16']['bytes']:,} B, "
            f"float32 {files['float32']['bytes']:,} B",
            f"- parameters {prof['params']:,}, non-zero {prof['nonzero_params']:,}; DCASE-rule size "
            f"(non-zero × bits): {prof['dcase_size_kb']['32bit']:.1f} KB float32, {prof['dcase_size_kb']['16bit']:.1f} KB "
            f"float16, {prof['dcase_size_kb']['8bit']:.1f} KB int8",
            f"- int8 flatbuffer weights stored: {storage.get('stored_bytes', 0):,} bytes "
            f"(identical copies: {storage.get('identical_copy_bytes', 0):,} bytes)",
            f"- {prof['macs']:,} multiply-accumulates per inference, {prof['macs_per_second_of_audio']:,.0f} per second of audio",
            "",
        ]
        if deploy.get("sharing"):
            lines.insert(-1, f"- {deploy['sharing']['text']}")
        if deploy.get("device"):
            from tfasc.deploy.device_report import markdown_lines

            lines += ["### On emulated Cortex-M cores", "", *markdown_lines(deploy["device"]), ""]
        return lines

    def confusion_plots(self, result: dict) -> list[tuple[str, str, dict]]:
        return [("int8 model, evaluation", "confusion_matrix_int8.png", result["metrics"])]


register(ExportStage())
