"""Number formatting and the metrics table shared by every section of ``report.md`` (the stages write their own sections)."""

from __future__ import annotations


def percent(value) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def number(value, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def metrics_section(title: str, metrics: dict) -> list[str]:
    if "mAP" in metrics:
        return [f"### {title}", "", f"- mAP: {number(metrics['mAP'])} on {metrics['examples']} clips", ""]
    lines = [
        f"### {title}",
        "",
        f"- accuracy: {percent(metrics['accuracy'])} ({metrics['examples']} clips)",
        f"- macro accuracy (DCASE): {percent(metrics['macro_accuracy'])}",
        f"- log loss: {number(metrics['log_loss'])}",
        "",
        "| class | accuracy |",
        "|---|---|",
        *[f"| {name} | {percent(value)} |" for name, value in metrics["per_class_accuracy"].items()],
        "",
    ]
    return lines
