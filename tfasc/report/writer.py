"""``report.json`` (machine-readable) and ``report.md`` (for people), written atomically."""

from __future__ import annotations

import json
import os
from pathlib import Path


def write_atomic(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def _percent(value) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _number(value, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _metrics_section(title: str, metrics: dict) -> list[str]:
    if "mAP" in metrics:
        return [f"### {title}", "", f"- mAP: {_number(metrics['mAP'])} on {metrics['examples']} clips", ""]
    lines = [
        f"### {title}",
        "",
        f"- accuracy: {_percent(metrics['accuracy'])} ({metrics['examples']} clips)",
        f"- macro accuracy (DCASE): {_percent(metrics['macro_accuracy'])}",
        f"- log loss: {_number(metrics['log_loss'])}",
        "",
        "| class | accuracy |",
        "|---|---|",
        *[f"| {name} | {_percent(value)} |" for name, value in metrics["per_class_accuracy"].items()],
        "",
    ]
    return lines


def _compression_sections(report: dict) -> list[str]:
    lines = []
    if "prune" in report:
        prune = report["prune"]
        sparsity = prune["sparsity"]
        how = "one global magnitude threshold" if prune["mode"] == "global" else "TF-MOT per-layer targets"
        lines += [
            "## Pruning",
            "",
            f"- {sparsity['zeros']:,} of {sparsity['params']:,} prunable weights are zero "
            f"({_percent(sparsity['sparsity'])}, {how})",
            f"- accuracy after fine-tuning: {_percent(prune['metrics'].get('accuracy'))}, "
            f"macro accuracy {_percent(prune['metrics'].get('macro_accuracy'))}",
            "",
        ]
    if "qat" in report:
        qat = report["qat"]
        kept = f", sparsity kept: {_percent(qat['sparsity']['sparsity'])}" if "sparsity" in qat else ""
        lines += [
            "## Quantization-aware training",
            "",
            f"- accuracy (simulated int8): {_percent(qat['metrics'].get('accuracy'))}, "
            f"macro accuracy {_percent(qat['metrics'].get('macro_accuracy'))}{kept}",
            "",
        ]
    return lines


def _deploy_section(deploy: dict, float_metrics: dict) -> list[str]:
    tflm, files, prof = deploy["tflm"], deploy["files"], deploy["profile"]
    exact = "bit-exact" if tflm["bit_exact"] else f"NOT bit-exact ({tflm['mismatched_examples']} mismatches)"
    smallest = f", smallest working arena {tflm['smallest_arena_bytes']:,} bytes" if tflm.get("smallest_arena_bytes") else ""
    storage = prof.get("tflite_int8", {})
    lines = [
        "## Deployment (int8, TFLite Micro)",
        "",
        f"- int8 accuracy {_percent(deploy['metrics'].get('accuracy'))}, macro accuracy "
        f"{_percent(deploy['metrics'].get('macro_accuracy'))} (trained float model: "
        f"{_percent(float_metrics.get('accuracy'))})",
        f"- top-1 agreement of the int8 model with the float model (pruned if pruning ran) "
        f"{_percent(deploy['top1_agreement_with_float'])}, with the Keras model it was converted from "
        f"{_percent(deploy['top1_agreement_with_keras_source'])}",
        f"- TFLite Micro vs TFLite reference kernels on {tflm['examples']} evaluation clips: {exact}",
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
    return lines


def render_markdown(report: dict) -> str:
    """A short human-readable summary of ``report``."""
    model, data = report["model"], report["data"]
    lines = [
        f"# {report['recipe']} — run report",
        "",
        f"- model: `{model['name']}`, {model['params']:,} parameters ({model['trainable_params']:,} trainable)",
        f"- data: `{data['dataset']}`, {data['train_examples']} training / {data['eval_examples']} evaluation clips, "
        f"classes: {', '.join(data['classes'])}",
    ]
    if data.get("skipped_files"):
        lines.append(f"- skipped unreadable files: {data['skipped_files']}")
    lines += [f"- time: {report['time_s']:.1f} s", "", "## Evaluation", ""]
    lines += _metrics_section(f"{data['eval_split']} split", report["metrics"])
    for group, metrics in report.get("held_out", {}).items():
        lines += _metrics_section(f"held-out group: {group}", metrics)
    lines += _compression_sections(report)
    if report.get("deploy"):
        lines += _deploy_section(report["deploy"], report["metrics"])
    if report.get("plots"):
        lines += ["## Plots", "", *[f"![{name}]({path})" for name, path in report["plots"].items()], ""]
    return "\n".join(lines)


def write_report(run_dir: Path, report: dict) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.md`` into ``run_dir``."""
    run_dir = Path(run_dir)
    json_path = write_atomic(run_dir / "report.json", json.dumps(report, indent=2, sort_keys=False) + "\n")
    md_path = write_atomic(run_dir / "report.md", render_markdown(report) + "\n")
    return json_path, md_path
