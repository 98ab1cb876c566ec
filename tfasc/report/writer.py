"""``report.json`` (machine-readable) and ``report.md`` (for people), written atomically.

``report.md`` is the run's header (model, data, time), then each stage's section in stage order,
written by the stage itself (``Stage.markdown`` in :mod:`tfasc.training.stages`), then the plots.
"""

from __future__ import annotations

import json
from pathlib import Path

from tfasc.files import write_atomic
from tfasc.formatting import is_tagging, tagging_section


def render_markdown(report: dict) -> str:
    """A short human-readable summary of ``report``."""
    from tfasc.training import stages

    model, data = report["model"], report["data"]
    lines = [
        f"# {report['recipe']} — run report",
        "",
        f"- model: `{model['name']}`, {model['params']:,} parameters ({model['trainable_params']:,} trainable)",
        f"- data: `{data['dataset']}`, {data['train_examples']} training / {data['eval_examples']} evaluation clips, "
        f"classes: {', '.join(data['classes'])}",
    ]
    if data.get("segment_frames"):
        lines.append(f"- model inputs: {data['segments_per_clip']} segments of {data['segment_frames']} frames per "
                     f"clip; a clip's probabilities ({data.get('outputs', 'softmax')}) are the mean of its segments'")
    elif data.get("outputs") == "sigmoid":
        lines.append("- outputs: an independent sigmoid per class")
    if data.get("sampling") == "balanced":
        lines.append("- training batches: balanced sampling (every class drawn equally often)")
    if data.get("skipped_files"):
        lines.append(f"- skipped unreadable files: {data['skipped_files']}")
    lines += [f"- time: {report['time_s']:.1f} s", ""]
    for name in report["stages"]:
        stage = stages.get(name)
        if stage.report_section is None or report.get(stage.report_section):
            lines += stage.markdown(report)
    lines += deployed_tagging_section(report)
    if report.get("plots"):
        lines += ["## Plots", "", *[f"![{name}]({path})" for name, path in report["plots"].items()], ""]
    return "\n".join(lines)


def deployed_tagging_section(report: dict) -> list[str]:
    """For multi-label data, the exported float model's and the int8 model's mAP, mean AUC, d' and
    per-class AP on the evaluation clips side by side (the export stage's section states accuracies)."""
    deploy = report.get("deploy") or {}
    if not is_tagging(deploy.get("metrics", {})):
        return []
    columns = {"float": deploy["float_metrics"], "int8": deploy["metrics"]} if "float_metrics" in deploy else {
        "int8": deploy["metrics"]}
    return ["## Tagging metrics of the exported models", "",
            *tagging_section(f"{report['data']['eval_split']} split", columns)]


def write_report(run_dir: Path, report: dict) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.md`` into ``run_dir``."""
    run_dir = Path(run_dir)
    json_path = write_atomic(run_dir / "report.json", json.dumps(report, indent=2, sort_keys=False) + "\n")
    md_path = write_atomic(run_dir / "report.md", render_markdown(report) + "\n")
    return json_path, md_path
