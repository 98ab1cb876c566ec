"""Number formatting and the metrics table shared by every section of ``report.md`` (the stages write their own sections)."""

from __future__ import annotations

# A per-class AP table lists every class up to this many, else the best and worst TABLE_ENDS.
TABLE_ALL_UP_TO = 20
TABLE_ENDS = 10


def percent(value) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def number(value, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def is_tagging(metrics: dict) -> bool:
    """Whether ``metrics`` are multi-label tagging metrics (:func:`tfasc.metrics.multilabel_metrics`)."""
    return "mAP" in metrics


def headline(metrics: dict) -> str:
    """The one-line summary of ``metrics``: mAP, mean AUC and d' for tagging, else the accuracies."""
    if is_tagging(metrics):
        return (f"mAP {number(metrics['mAP'])}, mean AUC {number(metrics.get('mean_auc'))}, "
                f"d' {number(metrics.get('d_prime'), 3)}")
    return f"accuracy {percent(metrics.get('accuracy'))}, macro accuracy {percent(metrics.get('macro_accuracy'))}"


def ranked_classes(per_class_ap: dict) -> list[tuple[str, str]]:
    """``(class, rank label)`` of a per-class AP table, best AP first (classes without positives
    last): every class when there are few, else the best and the worst ``TABLE_ENDS``."""
    ranked = sorted(per_class_ap, key=lambda name: (per_class_ap[name] is None, -(per_class_ap[name] or 0.0)))
    if len(ranked) <= TABLE_ALL_UP_TO:
        return [(name, str(rank)) for rank, name in enumerate(ranked, start=1)]
    shown = list(range(TABLE_ENDS)) + list(range(len(ranked) - TABLE_ENDS, len(ranked)))
    return [(ranked[i], str(i + 1)) for i in shown]


def per_class_ap_table(columns: dict[str, dict], order_by: str) -> list[str]:
    """A markdown table of per-class AP (and AUC) of one or more models: ``columns`` maps a model
    name (``float``, ``int8``) to its tagging metrics; rows ranked by ``columns[order_by]``'s AP."""
    ranked = ranked_classes(columns[order_by]["per_class_ap"])
    header = [f"{model} AP" for model in columns] + [f"{model} AUC" for model in columns]
    lines = ["| rank | class | " + " | ".join(header) + " |", "|---|---|" + "---|" * len(header)]
    previous = 0
    for name, rank in ranked:
        if int(rank) != previous + 1:
            lines.append("| … | | " + " | ".join("" for _ in header) + " |")
        previous = int(rank)
        values = [number(m["per_class_ap"].get(name)) for m in columns.values()]
        values += [number(m.get("per_class_auc", {}).get(name)) for m in columns.values()]
        lines.append(f"| {rank} | {name} | " + " | ".join(values) + " |")
    classes = len(columns[order_by]["per_class_ap"])
    note = (f"Per-class average precision, best first ({classes} classes"
            + (f"; the best and worst {TABLE_ENDS} shown" if classes > TABLE_ALL_UP_TO else "")
            + "; – : no positive, or for AUC no negative, in the evaluation clips).")
    return [note, "", *lines, ""]


def tagging_section(title: str, columns: dict[str, dict]) -> list[str]:
    """mAP, mean AUC and d' of one or more models side by side, then their per-class AP table."""
    models = list(columns)
    first = columns[models[0]]
    rows = [("mAP", "mAP", 4), ("mean AUC", "mean_auc", 4), ("d' (from the mean AUC)", "d_prime", 3)]
    return [
        f"### {title}",
        "",
        f"{first['examples']} clips.",
        "",
        "| metric | " + " | ".join(models) + " |",
        "|---|" + "---|" * len(models),
        *[f"| {label} | " + " | ".join(number(columns[m].get(key), digits) for m in models) + " |"
          for label, key, digits in rows],
        "",
        *per_class_ap_table(columns, order_by=models[0]),
    ]


def metrics_section(title: str, metrics: dict) -> list[str]:
    if is_tagging(metrics):
        return tagging_section(title, {"model": metrics})
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
