"""The report's figures: the progression, learning curves and confusion matrices (PNG)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from deeplecture.confusion import confusion_matrix
from deeplecture.figure_file import save_png
from deeplecture.reporting.results import ModelResult, Platform

# One colour per platform that measured the progression, in the order the report lists them.
PLATFORM_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd")


def save_progression(results: list[ModelResult], platforms: list[Platform], path: Path) -> Path:
    """Per model, the lecture's accuracy beside each platform's reproduced one (the pipeline's
    own runs first, then each measured platform); a platform that did not run a model has no
    bar there."""
    series = [("metrics/", results)] if results else []
    series += [(platform.name, platform.results) for platform in platforms if platform.results]
    by_variant = {r.variant: r for _, rows in series for r in rows}  # for the lecture's figure
    variants = list(dict.fromkeys(r.variant for _, rows in series for r in rows))
    width = 0.8 / (len(series) + 1)
    figure = Figure(figsize=(max(6.0, (1.0 + 0.5 * len(series)) * len(variants) + 2), 4.4))
    axes = figure.add_subplot()
    positions = np.arange(len(variants))
    lecture = {v: by_variant[v].metrics["lecture_accuracy"] for v in variants}
    bars = [("lecture", "#9e9e9e", lecture)]
    bars += [
        (_series_label(name, rows), color, {r.variant: r.metrics["test_accuracy"] for r in rows})
        for (name, rows), color in zip(series, PLATFORM_COLORS, strict=False)
    ]
    for index, (label, color, values) in enumerate(bars):
        shown = [i for i, v in enumerate(variants) if v in values]
        heights = [100 * values[variants[i]] for i in shown]
        offset = (index - (len(bars) - 1) / 2) * width
        drawn = axes.bar(positions[shown] + offset, heights, width=width, label=label, color=color)
        axes.bar_label(drawn, labels=[f"{h:.1f}" for h in heights], fontsize=8, padding=2)
    axes.set_xticks(positions, variants)
    axes.set_ylabel("test accuracy (%)")
    axes.set_ylim(0, 105)
    axes.set_title("The lecture's progression, reproduced")
    axes.legend(loc="upper left", fontsize=8)
    return save_png(figure, path)


def _series_label(name: str, rows: list[ModelResult]) -> str:
    """A legend entry: where the bars were measured (device and backend, when the rows agree)."""
    stacks = {(r.provenance.get("device", "?"), r.provenance.get("backend", "?")) for r in rows}
    where = ", ".join(stacks.pop()) if len(stacks) == 1 else "several devices"
    return f"{name}: {where}"


def save_learning_curves(result: ModelResult, path: Path) -> Path:
    """Accuracy and loss per epoch, training and validation, side by side."""
    figure = Figure(figsize=(9.6, 4.0))
    epochs = np.arange(1, len(result.history.get("loss", [])) + 1)
    for index, quantity in enumerate(("accuracy", "loss")):
        axes = figure.add_subplot(1, 2, index + 1)
        for key, label in ((quantity, "training"), (f"val_{quantity}", "validation")):
            if key in result.history:
                axes.plot(epochs, result.history[key], marker="o", markersize=3, label=label)
        axes.set_xlabel("epoch")
        axes.set_ylabel(quantity)
        axes.grid(alpha=0.3)
        axes.legend()
    on = f" ({result.platform})" if result.platform else ""
    figure.suptitle(f"{result.variant}{on}: learning curves")
    return save_png(figure, path)


def save_confusion(result: ModelResult, path: Path) -> Path:
    """The confusion matrix of the test split, counts in each cell, rows = true class."""
    class_names = result.class_names
    index = {name: i for i, name in enumerate(class_names)}
    actual = [index[name] for name, _ in result.predictions]
    predicted = [index[name] for _, name in result.predictions]
    matrix = confusion_matrix(actual, predicted, len(class_names))
    figure = Figure(figsize=(6.4, 5.6))
    axes = figure.add_subplot()
    image = axes.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axes, fraction=0.046)
    axes.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right", fontsize=8)
    axes.set_yticks(range(len(class_names)), class_names, fontsize=8)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    threshold = matrix.max() / 2 if matrix.size else 0
    for (row, col), count in np.ndenumerate(matrix):
        axes.text(col, row, str(count), ha="center", va="center", fontsize=7,
                  color="white" if count > threshold else "black")  # fmt: skip
    on = f" ({result.platform})" if result.platform else ""
    axes.set_title(f"{result.variant}{on}: confusion matrix (test)")
    return save_png(figure, path)
