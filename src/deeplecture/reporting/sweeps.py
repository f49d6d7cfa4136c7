"""The report's seed sweeps: per variant n, mean ± std, a 95 % interval and every seed's value;
per step of the progression the gain, its interval and whether it is beyond noise; a figure.

Inputs are the files `deeplecture-sweep collect` wrote (reports/sweeps/<name>.json), each run's
values as MLflow holds them. Nothing is typed: a sweep of one seed says that no spread is known.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from deeplecture.figure_file import save_png
from deeplecture.reporting.results import Planned, describe_source
from deeplecture.reporting.tables import markdown_table
from deeplecture.sweeps.stats import CONFIDENCE, TEST_NAME, Gain, Spread, gain, spread

NO_SPREAD = "no spread known (n = 1)"


@dataclass(frozen=True)
class SweepResult:
    name: str
    runs: list[dict[str, Any]]
    variants: list[str]  # those the sweep ran, in the order of params.yaml's `variants`
    lecture: dict[str, float]  # variant -> the lecture's accuracy

    def accuracy(self, variant: str) -> Spread:
        return spread([run["test_accuracy"] for run in self.of(variant)])

    def of(self, variant: str) -> list[dict[str, Any]]:
        return [run for run in self.runs if run["variant"] == variant]

    def steps(self) -> list[tuple[str, str, Gain]]:
        """Consecutive variants of one dataset, each step's gain in test accuracy."""
        dataset = {run["variant"]: run["dataset"] for run in self.runs}
        pairs = zip(self.variants, self.variants[1:], strict=False)
        return [
            (before, after, gain(self.accuracy(before), self.accuracy(after)))
            for before, after in pairs
            if dataset[before] == dataset[after]
        ]


def read_sweeps(folder: Path, planned: list[Planned]) -> list[SweepResult]:
    """Every collected sweep in `folder`, by name; variants params.yaml no longer lists are left
    out (their lecture figure is unknown)."""
    order = {plan.variant: plan for plan in planned}
    sweeps = []
    for path in sorted(folder.glob("*.json")):
        document = json.loads(path.read_text())
        runs = [run for run in document["runs"] if run["variant"] in order]
        ran = {run["variant"] for run in runs}
        variants = [variant for variant in order if variant in ran]
        lecture = {variant: order[variant].lecture_accuracy for variant in variants}
        if runs:
            sweeps.append(SweepResult(document["sweep"], runs, variants, lecture))
    return sweeps


def render(sweep: SweepResult, figure: Path | None, report_dir: Path) -> list[str]:
    lines = [
        f"## Seed sweep `{sweep.name}`",
        "",
        f"Every run tagged `sweep: {sweep.name}` in MLflow, collected by "
        f"`deeplecture-sweep collect {sweep.name}` into `reports/sweeps/{sweep.name}.json`. "
        f"{_scale(sweep)}",
        "",
        markdown_table(
            pd.DataFrame([_variant_row(sweep, v) for v in sweep.variants]), VARIANT_COLUMNS
        ),
        "",
    ]
    steps = sweep.steps()
    if steps:
        lines += [
            markdown_table(pd.DataFrame([_step_row(*step) for step in steps]), STEP_COLUMNS),
            "",
            f"A gain is beyond noise when its {100 * CONFIDENCE:.0f} % interval excludes zero "
            f"({TEST_NAME}, two-sided p < {1 - CONFIDENCE:.2f}). Welch's test compares two "
            "means without assuming that both variants spread alike (a network with batch "
            "normalization need not spread as one without), and its t interval holds for the "
            "few runs a sweep has, where a normal approximation or a bootstrap (too few "
            "distinct resamples) would be too narrow.",
            "",
        ]
    if figure is not None:
        relative = figure.resolve().relative_to(report_dir.resolve()).as_posix()
        lines += [f"![sweep {sweep.name}]({relative})", ""]
    return lines


def save_figure(sweep: SweepResult, path: Path) -> Path:
    """Mean test accuracy per variant with its 95 % interval, every seed as a dot, and the
    lecture's figure as a grey mark."""
    figure = Figure(figsize=(max(5.0, 1.3 * len(sweep.variants) + 2), 4.2))
    axes = figure.add_subplot()
    for position, variant in enumerate(sweep.variants):
        accuracy = sweep.accuracy(variant)
        values = 100 * np.array(accuracy.values)
        first = position == 0  # one legend entry per kind of mark
        axes.scatter(
            np.full(len(values), position + 0.15),
            values,
            s=12,
            color="#7aa6d6",
            label="each seed" if first else None,
        )
        interval = accuracy.interval
        error = None
        if interval is not None:
            error = [[100 * (accuracy.mean - interval[0])], [100 * (interval[1] - accuracy.mean)]]
        axes.errorbar(
            position,
            100 * accuracy.mean,
            yerr=error,
            fmt="o",
            color="#1f77b4",
            capsize=6,
            label="mean, 95 % interval" if first else None,
        )
        axes.scatter(
            position - 0.15,
            100 * sweep.lecture[variant],
            marker="_",
            s=300,
            color="#9e9e9e",
            label="lecture" if first else None,
        )
    axes.set_xticks(range(len(sweep.variants)), sweep.variants)
    axes.set_xlim(-0.6, len(sweep.variants) - 0.4)
    axes.set_ylabel("test accuracy (%)")
    axes.set_title(f"Seed sweep {sweep.name}: n = {_n_text(sweep)} per variant")
    axes.grid(axis="y", alpha=0.3)
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncols=3, frameon=False)
    return save_png(figure, path)


VARIANT_COLUMNS = {
    "model": "left", "n": "right", "mean": "right", "std": "right", "95 % interval": "right",
    "lecture": "right", "per seed (seed: accuracy)": "left",
}  # fmt: skip
STEP_COLUMNS = {
    "step": "left", "gain": "right", "95 % interval": "right", "p (Welch)": "right",
    "beyond noise": "left",
}  # fmt: skip


def _variant_row(sweep: SweepResult, variant: str) -> dict[str, str]:
    accuracy = sweep.accuracy(variant)
    per_seed = ", ".join(
        f"{run['seed']}: {100 * run['test_accuracy']:.2f}" for run in sweep.of(variant)
    )
    return {
        "model": f"`{variant}`",
        "n": str(accuracy.n),
        "mean": f"{100 * accuracy.mean:.2f} %",
        "std": NO_SPREAD if accuracy.std is None else f"{100 * accuracy.std:.2f} pt",
        "95 % interval": _interval(accuracy.interval, "%"),
        "lecture": f"{100 * sweep.lecture[variant]:.1f} %",
        "per seed (seed: accuracy)": per_seed,
    }


def _step_row(before: str, after: str, step: Gain) -> dict[str, str]:
    if step.beyond_noise is None:
        verdict = "unknown: a variant has n = 1"
    else:
        verdict = "yes" if step.beyond_noise else "no: within seed noise"
    return {
        "step": f"`{before}` → `{after}`",
        "gain": f"{100 * step.difference:+.2f} pt",
        "95 % interval": _interval(step.interval, "pt", signed=True),
        "p (Welch)": "—" if step.p_value is None else f"{step.p_value:.2g}",
        "beyond noise": verdict,
    }


def _interval(interval: tuple[float, float] | None, unit: str, signed: bool = False) -> str:
    if interval is None:
        return "—"
    sign = "+" if signed else ""
    return f"[{100 * interval[0]:{sign}.2f}, {100 * interval[1]:{sign}.2f}] {unit}"


def _scale(sweep: SweepResult) -> str:
    """What the runs were trained at, from their own params: a reader must know the scale a
    verdict holds for."""
    parts = []
    for label, key, form in (
        ("profile", "profile", "{}"),
        ("epochs", "epochs", "{}"),
        ("training images", "train_images", "{:,}"),
        ("test images", "test_images", "{:,}"),
        ("backend", "backend", "{}"),
        ("device", "device", "{}"),
        ("seeds trained", "trained", "{}"),  # alone, or together: vmap, sequential, one by one
    ):
        values = sorted({str(run.get(key)) for run in sweep.runs if run.get(key) is not None})
        if values:
            shown = [form.format(int(v)) if v.isdigit() else v for v in values]
            parts.append(f"{label} {' / '.join(shown)}")
    sources = sorted({describe_source(str(run.get("data_source") or "")) for run in sweep.runs})
    parts.append(f"data: {' / '.join(sources)}")
    return "Scale: " + "; ".join(parts) + "."


def _n_text(sweep: SweepResult) -> str:
    counts = sorted({len(sweep.of(variant)) for variant in sweep.variants})
    return " / ".join(str(count) for count in counts)
