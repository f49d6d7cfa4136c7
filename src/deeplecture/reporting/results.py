"""Collect what the pipeline measured, per model, from the files the stages wrote.

Nothing here knows a result in advance: every number comes from `metrics/<dataset>/<variant>.json`
(written by evaluate from the saved model) and the per-epoch history the training stage wrote.
A variant params.yaml lists whose metrics file is not there yet is `Pending`: the report says it
has not run (cnn88 at full settings on a CPU, Fashion-MNIST before its pipeline ran).

Measured platforms (`reports/platforms/<name>/`, e.g. the H200 run) keep the same layout
(`metrics/`, `plots/<kind>/`) and are collected the same way, a row per variant each, beside the
pipeline's own.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deeplecture import catalog
from deeplecture.params import Params

# What the stages write beside a model's metrics: plots/<kind>/<dataset>/<variant><suffix>.
PLOT_FILES = {"history": ".csv", "predictions": ".csv", "per_class": ".csv", "provenance": ".json"}
# The pipeline's only augmentation before `train.<variant>.augmentation` existed: a run whose
# provenance names none, of a variant that augments, was trained with it.
AUGMENTATION_BEFORE_THE_KEY = "keras_layers"
# The late epochs whose spread shows what one seed's last epoch may land on: the last fifth
# (cnn88: epochs 101-125; a 25-epoch variant: its last 5).
LATE_FRACTION = 5

# What a source is, by the archive's file name (or a base URL's host), from the catalog: the
# report says which data a figure was measured on, because the JPEG re-encoding and the bundled
# sample are not the lecture's data.
SOURCE_KINDS = {
    name: kind
    for dataset in catalog.DATASETS.values()
    for name, kind in dataset.source_kinds.items()
}


@dataclass(frozen=True)
class Planned:
    """A variant as params.yaml lists it: what the lecture reports, and its quirks."""

    dataset: str
    variant: str
    lecture_accuracy: float
    quirks: list[str]
    augmentation: str = "none"  # train.<variant>.augmentation as params.yaml sets it now
    validation: str = "split"  # "test": the per-epoch validation figures are the test split's


@dataclass(frozen=True)
class Pending:
    """A planned variant with no metrics file yet."""

    planned: Planned

    @property
    def command(self) -> str:
        # The command that produces the dataset's metrics (Fashion-MNIST: a pipeline of its own).
        return catalog.get_dataset(self.planned.dataset).run_command


@dataclass(frozen=True)
class ModelResult:
    dataset: str
    variant: str
    metrics: dict[str, Any]
    provenance: dict[str, Any]  # how the metrics were made; empty if absent
    history: dict[str, list[float]]  # column -> per-epoch values; empty if no history file
    predictions: list[tuple[str, str]]  # (actual, predicted) per test image; empty if none
    class_names: list[str]  # in the dataset's order (per_class.csv); empty if absent
    quirks: list[str]  # the lecture's, stated beside the row (params.yaml variants)
    plan: Planned | None = None
    platform: str = ""  # reports/platforms/<name>; empty: the pipeline's own metrics/

    @property
    def source_kind(self) -> str:
        return describe_source(self.provenance.get("data_source", ""))

    @property
    def augmentation(self) -> str:
        """What the run augmented with: its provenance's word, else (a run from before the key)
        the pipeline's augmentation of that time for a variant that augments."""
        if "augmentation" in self.provenance:
            return str(self.provenance["augmentation"])
        augments = self.plan is not None and self.plan.augmentation != "none"
        return AUGMENTATION_BEFORE_THE_KEY if augments else "none"


@dataclass(frozen=True)
class LateSpread:
    """Where one run's accuracy moved over its last epochs: what one seed's last epoch may be."""

    epochs: int
    low: float
    high: float
    split: str  # "test" or "validation": which images the per-epoch figure is measured on


def late_spread(result: ModelResult) -> LateSpread | None:
    """The range of the per-epoch validation accuracy over the run's last fifth of epochs; None
    without a history. With `validation: test` (cnn88) it is the test accuracy epoch by epoch."""
    values = result.history.get("val_accuracy", [])
    count = len(values) // LATE_FRACTION
    if count < 2:
        return None
    late = values[-count:]
    split = "test" if result.plan and result.plan.validation == "test" else "validation"
    return LateSpread(count, min(late), max(late), split)


@dataclass(frozen=True)
class Platform:
    """A measured platform, committed in reports/platforms/<name>/ (its README: where from)."""

    name: str
    folder: Path
    results: list[ModelResult]
    # Each stage's wall time and, for train stages, its training seconds, from the run's
    # summaries (gpu-run*.json: `progression.stage_seconds` and `.variants`).
    stage_seconds: dict[str, float]
    train_seconds: dict[str, float]


def collect_platforms(platforms_dir: Path, planned: list[Planned]) -> list[Platform]:
    """Every folder of `platforms_dir` with a metrics/ folder, by name; its planned variants
    that have metrics there (one not measured there is simply not its row)."""
    platforms = []
    for folder in sorted(p for p in platforms_dir.glob("*") if (p / "metrics").is_dir()):
        results, _ = collect(folder / "metrics", folder / "plots", planned, folder.name)
        stages, training = _read_stage_seconds(folder)
        platforms.append(Platform(folder.name, folder, results, stages, training))
    return platforms


def _read_stage_seconds(folder: Path) -> tuple[dict[str, float], dict[str, float]]:
    stages: dict[str, float] = {}
    training: dict[str, float] = {}
    for path in sorted(folder.glob("gpu-run*.json")):
        progression = json.loads(path.read_text()).get("progression", {})
        stages.update(progression.get("stage_seconds", {}))
        for variant, figures in progression.get("variants", {}).items():
            training[f"train@{variant}"] = figures["train_seconds"]
    return stages, training


def describe_source(source: str) -> str:
    """A reader's name for a data source: canonical, a known copy, or 'local copy: <name>'."""
    name = source.rstrip("/").rsplit("/", 1)[-1]
    return SOURCE_KINDS.get(name, f"local copy: {name}" if name else "unknown")


def planned_variants(params: Params) -> list[Planned]:
    """Every variant of params.yaml's `variants`, dataset by dataset, in the order listed."""
    return [
        Planned(
            dataset,
            variant,
            params.train[variant].lecture_accuracy,
            list(quirks),
            params.train[variant].augmentation,
            params.train[variant].validation,
        )
        for dataset, variants in params.variants.items()
        for variant, quirks in variants.items()
    ]


def collect(
    metrics_root: Path, plots_root: Path, planned: list[Planned], platform: str = ""
) -> tuple[list[ModelResult], list[Pending]]:
    """The planned variants with a metrics file, and those still to run, in the order given;
    `platform`: the measured platform they come from (empty: the pipeline's own)."""
    results, pending = [], []
    for plan in planned:
        metrics_path = metrics_root / plan.dataset / f"{plan.variant}.json"
        if not metrics_path.is_file():
            pending.append(Pending(plan))
            continue
        files = {
            kind: plots_root / kind / plan.dataset / f"{plan.variant}{suffix}"
            for kind, suffix in PLOT_FILES.items()
        }
        provenance = files["provenance"]
        results.append(
            ModelResult(
                dataset=plan.dataset,
                variant=plan.variant,
                metrics=json.loads(metrics_path.read_text()),
                provenance=json.loads(provenance.read_text()) if provenance.is_file() else {},
                history=_read_columns(files["history"]),
                predictions=_read_pairs(files["predictions"], "actual", "predicted"),
                class_names=[name for name, _ in _read_pairs(files["per_class"], "class")],
                quirks=plan.quirks,
                plan=plan,
                platform=platform,
            )
        )
    return results, pending


def read_foundations(path: Path) -> dict[str, float] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _read_columns(path: Path) -> dict[str, list[float]]:
    if not path.is_file():
        return {}
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {key: [float(row[key]) for row in rows] for key in (rows[0] if rows else {})}


def _read_pairs(path: Path, first: str, second: str = "") -> list[tuple[str, str]]:
    """Two columns of a CSV file, row by row (`second` empty: the first column, twice)."""
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return [(row[first], row[second or first]) for row in csv.DictReader(handle)]
