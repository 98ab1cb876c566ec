"""PNG plots for the run directory: training curves and confusion matrices (matplotlib, no display).

Figures are built with ``matplotlib.figure.Figure`` and written with the Agg canvas directly, so
nothing here touches pyplot's global state: the caller's backend, open figures and rcParams stay as
they were (a notebook keeps its inline backend).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

import numpy as np

from tfasc.files import atomic_path


def _figure(figsize: tuple[float, float]):
    # Imported lazily: matplotlib is only needed when a report is drawn.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=figsize)
    FigureCanvasAgg(figure)  # attaches itself as figure.canvas; savefig renders with Agg
    return figure


def _save(figure, path: Path) -> Path:
    """Write ``figure`` as a PNG, atomically (the temporary keeps the suffix savefig reads)."""
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=100)
    return Path(path)


def read_history(csv_path: Path) -> dict[str, list[float]]:
    """Columns of a Keras CSVLogger file (one row per epoch), keeping the last row of each epoch."""
    rows: dict[int, dict] = {}
    with open(csv_path, newline="") as handle:
        for row in csv.DictReader(handle):
            rows[int(row["epoch"])] = row
    columns: dict[str, list[float]] = {}
    for epoch in sorted(rows):
        for key, value in rows[epoch].items():
            columns.setdefault(key, []).append(float(value) if value not in ("", None) else float("nan"))
    return columns


def plot_history(history: dict[str, list[float]], path: Path) -> Path:
    """Loss and accuracy per epoch, training and evaluation side by side."""
    epochs = np.asarray(history.get("epoch", []), int) + 1
    fig = _figure((10, 4))
    axes = fig.subplots(1, 2)
    for axis, metric in zip(axes, ("loss", "accuracy")):
        for prefix, label in (("", "train"), ("val_", "evaluate")):
            if prefix + metric in history:
                axis.plot(epochs, history[prefix + metric], marker="o", label=label)
        axis.set_xlabel("epoch")
        axis.set_ylabel(metric)
        axis.grid(alpha=0.3)
        axis.legend()
    return _save(fig, path)


def plot_confusion(matrix: Sequence[Sequence[int]], class_names: Sequence[str], path: Path, title: str) -> Path:
    """Confusion matrix with row-normalized colours and raw counts written in each cell."""
    matrix = np.asarray(matrix)
    normalized = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    size = max(4, 0.6 * len(class_names) + 2)
    fig = _figure((size, size))
    axis = fig.subplots()
    axis.imshow(normalized, cmap="Blues", vmin=0, vmax=1)
    ticks = np.arange(len(class_names))
    axis.set_xticks(ticks, class_names, rotation=45, ha="right")
    axis.set_yticks(ticks, class_names)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(title)
    for i in range(len(class_names)):
        for j in range(len(class_names)):
            axis.text(j, i, str(matrix[i, j]), ha="center", va="center",
                      color="white" if normalized[i, j] > 0.5 else "black")
    return _save(fig, path)


def plot_folds(folds: Sequence[str], series: dict[str, Sequence[float | None]], path: Path, *, ylabel: str,
               title: str) -> Path:
    """Cross-validation: one group of bars per fold, one bar per series (e.g. float and int8 model,
    values in [0, 1] drawn as %), each series' mean over its folds as a line of its colour (dashed,
    dotted, dash-dotted: equal means stay visible)."""
    fig = _figure((max(6, 0.9 * len(folds) * max(len(series), 1) + 2), 4))
    axis = fig.subplots()
    positions = np.arange(len(folds))
    width = 0.8 / max(len(series), 1)
    for i, (name, values) in enumerate(series.items()):
        heights = np.array([np.nan if v is None else 100 * v for v in values], float)
        bars = axis.bar(positions + (i - (len(series) - 1) / 2) * width, np.nan_to_num(heights), width, label=name)
        if np.isfinite(heights).any():
            mean = float(np.nanmean(heights))
            axis.axhline(mean, color=bars.patches[0].get_facecolor(), linestyle=("--", ":", "-.")[i % 3],
                         linewidth=1.5, label=f"{name} mean {mean:.1f}%")
    axis.set_xticks(positions, folds, rotation=45 if len(folds) > 6 else 0, ha="right" if len(folds) > 6 else "center")
    axis.set_xlabel("held-out fold")
    axis.set_ylabel(ylabel)
    axis.set_ylim(0, 100)
    axis.set_title(title)
    axis.grid(axis="y", alpha=0.3)
    axis.legend(loc="lower right", fontsize="small")
    return _save(fig, path)


def plot_search_scatter(x: Sequence[float], accuracy: Sequence[float], path: Path, *, xlabel: str) -> Path:
    """Architecture search (Wu & Lee, Fig. 3): one dot per trained candidate, accuracy (%) against ``x``."""
    fig = _figure((6, 4))
    axis = fig.subplots()
    axis.scatter(x, accuracy, s=14, alpha=0.7)
    axis.set_xlabel(xlabel)
    axis.set_ylabel("accuracy after the brief training (%)")
    axis.set_title(f"{len(accuracy)} candidates")
    axis.grid(alpha=0.3)
    return _save(fig, path)


def plot_search_histograms(groups: dict[str, Sequence[float]], path: Path) -> Path:
    """Architecture search (Wu & Lee, Fig. 4): normalized accuracy (%) histograms, one per group
    (e.g. growth ratio), on shared bins, each labelled with its mean."""
    fig = _figure((6, 4))
    axis = fig.subplots()
    values = [v for group in groups.values() for v in group]
    bins = np.histogram_bin_edges(values, bins=min(20, max(5, len(values) // 3)))
    for name, group in groups.items():
        if len(group):
            axis.hist(group, bins=bins, density=True, histtype="step", linewidth=1.5,
                      label=f"{name} (n={len(group)}, mean {np.mean(group):.1f}%)")
    axis.set_xlabel("accuracy after the brief training (%)")
    axis.set_ylabel("normalized count")
    axis.grid(alpha=0.3)
    axis.legend(fontsize="small")
    return _save(fig, path)
