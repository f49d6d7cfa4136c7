"""The report's figures: the progression, learning curves and confusion matrices (PNG)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from deeplecture.confusion import confusion_matrix
from deeplecture.figure_file import save_png
from deeplecture.reporting.results import ModelResult


def save_progression(results: list[ModelResult], path: Path) -> Path:
    """One bar pair per model: the lecture's accuracy beside the reproduced one."""
    figure = Figure(figsize=(max(6.0, 1.4 * len(results) + 2), 4.2))
    axes = figure.add_subplot()
    positions = np.arange(len(results))
    lecture = [100 * r.metrics["lecture_accuracy"] for r in results]
    reproduced = [100 * r.metrics["test_accuracy"] for r in results]
    for offset, values, label, color in (
        (-0.2, lecture, "lecture", "#9e9e9e"),
        (0.2, reproduced, "reproduced", "#1f77b4"),
    ):
        bars = axes.bar(positions + offset, values, width=0.4, label=label, color=color)
        axes.bar_label(bars, labels=[f"{v:.1f}" for v in values], fontsize=9, padding=2)
    axes.set_xticks(positions, [r.variant for r in results])
    axes.set_ylabel("test accuracy (%)")
    axes.set_ylim(0, 105)
    axes.set_title("The lecture's progression, reproduced")
    axes.legend(loc="upper left")
    return save_png(figure, path)


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
    figure.suptitle(f"{result.variant}: learning curves")
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
    axes.set_title(f"{result.variant}: confusion matrix (test)")
    return save_png(figure, path)
