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
    if report.get("plots"):
        lines += ["## Plots", "", *[f"![{name}]({path})" for name, path in report["plots"].items()], ""]
    for section in report.get("extra_markdown", []):
        lines += [section, ""]
    return "\n".join(lines)


def write_report(run_dir: Path, report: dict) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.md`` into ``run_dir``."""
    run_dir = Path(run_dir)
    json_path = write_atomic(run_dir / "report.json", json.dumps(report, indent=2, sort_keys=False) + "\n")
    md_path = write_atomic(run_dir / "report.md", render_markdown(report) + "\n")
    return json_path, md_path
