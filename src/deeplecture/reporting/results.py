"""Collect what the pipeline measured, per model, from the files the stages wrote.

Nothing here knows a result in advance: every number comes from `metrics/<dataset>/<variant>.json`
(written by evaluate from the saved model) and the per-epoch history the training stage wrote.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DATASETS = ("cifar10", "fashion_mnist")

# What a source is, by the archive's file name: the report says which data a figure was measured
# on, because the JPEG re-encoding and the bundled sample are not the lecture's data.
SOURCE_KINDS = {
    "cifar-10-binary.tar.gz": "canonical CIFAR-10 (binary)",
    "cifar10-jpeg.tar.gz": "CIFAR-10 re-encoded as JPEG (lossy)",
    "cifar10-sample.tar.gz": "bundled CIFAR-10 sample",
    "fashion-mnist.s3-website.eu-central-1.amazonaws.com": "canonical Fashion-MNIST",
}


@dataclass(frozen=True)
class ModelResult:
    dataset: str
    variant: str
    metrics: dict[str, Any]
    history: dict[str, list[float]]  # column -> per-epoch values; empty if no history file
    predictions: list[tuple[str, str]]  # (actual, predicted) per test image; empty if none
    quirks: list[str]  # the lecture's, stated beside the row (params.yaml variants)

    @property
    def source_kind(self) -> str:
        return describe_source(self.metrics.get("data_source", ""))


def describe_source(source: str) -> str:
    """A reader's name for a data source: canonical, a known copy, or 'local copy: <name>'."""
    name = source.rstrip("/").rsplit("/", 1)[-1]
    return SOURCE_KINDS.get(name, f"local copy: {name}" if name else "unknown")


def collect(
    metrics_root: Path, plots_root: Path, quirks: dict[str, list[str]]
) -> list[ModelResult]:
    """Every model with a metrics file, in dataset then variant order."""
    results = []
    for dataset in DATASETS:
        for metrics_path in sorted((metrics_root / dataset).glob("*.json")):
            variant = metrics_path.stem
            results.append(
                ModelResult(
                    dataset=dataset,
                    variant=variant,
                    metrics=json.loads(metrics_path.read_text()),
                    history=_read_columns(plots_root / dataset / variant / "history.csv"),
                    predictions=_read_pairs(plots_root / dataset / variant / "predictions.csv"),
                    quirks=quirks.get(variant, []),
                )
            )
    return results


def read_foundations(path: Path) -> dict[str, float] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _read_columns(path: Path) -> dict[str, list[float]]:
    if not path.is_file():
        return {}
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {key: [float(row[key]) for row in rows] for key in (rows[0] if rows else {})}


def _read_pairs(path: Path) -> list[tuple[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return [(row["actual"], row["predicted"]) for row in csv.DictReader(handle)]
