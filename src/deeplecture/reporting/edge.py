"""The report's Edge section: every exported model beside its Keras original, from the files
`measure_edge` wrote (reports/edge/<dataset>/<variant>.json). Nothing is typed in: a variant
whose exports were not measured has no row.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from deeplecture.reporting.results import Planned
from deeplecture.reporting.tables import markdown_table

FORMAT_TITLES = {
    "keras": "Keras `predict` (.keras)",
    "onnx": "ONNX Runtime (.onnx)",
    "onnx-int8": "ONNX Runtime, int8 (.int8.onnx)",
    "litert": "LiteRT (.tflite)",
}


@dataclass(frozen=True)
class EdgeResult:
    variant: str
    measured: dict[str, Any]  # measure_edge's document

    @property
    def formats(self) -> dict[str, dict[str, float]]:
        return self.measured["formats"]


def read_edge(folder: Path, planned: list[Planned]) -> list[EdgeResult]:
    """The measured variants of `planned`, in its order."""
    results = []
    for plan in planned:
        path = folder / plan.dataset / f"{plan.variant}.json"
        if path.is_file():
            results.append(EdgeResult(plan.variant, json.loads(path.read_text())))
    return results


COLUMNS = {
    "model": "left", "format": "left", "test accuracy": "right", "vs Keras": "right",
    "top-1 agreement": "right", "largest Δp": "right", "file": "right",
    "batch 1, median": "right", "batch 1, p95": "right", "latency vs Keras": "right",
    "batch 256": "right",
}  # fmt: skip

INT8_COLUMNS = {
    "model": "left", "accuracy vs float": "right", "file vs float": "right",
    "batch-1 latency vs float": "right",
}  # fmt: skip


def render(results: list[EdgeResult]) -> list[str]:
    """The section's markdown lines; none without a measured variant."""
    if not results:
        return []
    first = results[0].measured
    lines = [
        "## Edge: forward only, without Keras",
        "",
        'The lecture\'s last step, "Edge Computer: forward Only": each evaluated model exported '
        "(stage `export`) and run by a small runtime alone, beside Keras' own `predict` in the "
        "same process (stage `measure_edge`). Agreement: the share of test images whose top "
        "class equals the Keras model's; largest Δp: the largest difference of any class "
        "probability. Latency: one image per call, timed after warm-up; throughput: the whole "
        f"test split in batches of {first['throughput_batch']}. The `.keras` file also holds the "
        "optimizer's state, which no exported file needs.",
        "",
        *_measured_on(results),
        "",
        markdown_table(pd.DataFrame([row for r in results for row in _rows(r)]), COLUMNS),
        "",
    ]
    int8 = [r for r in results if "onnx-int8" in r.formats and "onnx" in r.formats]
    if int8:
        lines += [
            "int8 (static quantization, calibrated on training images) against float ONNX:",
            "",
            markdown_table(pd.DataFrame([_int8_row(r) for r in int8]), INT8_COLUMNS),
            "",
        ]
    return lines


def _measured_on(results: list[EdgeResult]) -> list[str]:
    """Where and how the figures were measured: one line, or one per setting with the variants
    it holds when they differ (a variant re-measured on another machine, a smoke run's)."""
    settings: dict[str, list[str]] = {}
    for result in results:
        measured = result.measured
        machine = measured["machine"]
        versions = ", ".join(f"{name} {version}" for name, version in machine["versions"].items())
        setting = (
            f"{machine['cpu']} ({machine['cores']} cores), {measured['test_images']:,} test "
            f"images, {measured['latency_calls']} timed calls at batch 1; {versions}."
        )
        settings.setdefault(setting, []).append(f"`{result.variant}`")
    if len(settings) == 1:
        return [f"Measured on {setting}" for setting in settings]
    return [
        f"- {', '.join(variants)}: measured on {setting}" for setting, variants in settings.items()
    ]


def _rows(result: EdgeResult) -> list[dict[str, str]]:
    keras = result.formats["keras"]
    rows = []
    for name, title in FORMAT_TITLES.items():
        figures = result.formats.get(name)
        if figures is None:
            continue
        is_keras = name == "keras"
        rows.append(
            {
                "model": f"`{result.variant}`",
                "format": title,
                "test accuracy": f"{figures['accuracy']:.2%}",
                "vs Keras": "" if is_keras else _points(figures["accuracy"] - keras["accuracy"]),
                "top-1 agreement": "" if is_keras else f"{figures['top1_agreement']:.2%}",
                "largest Δp": "" if is_keras else f"{figures['max_probability_difference']:.0e}",
                "file": _megabytes(figures["size_bytes"]),
                "batch 1, median": f"{figures['latency_ms_median']:.2f} ms",
                "batch 1, p95": f"{figures['latency_ms_p95']:.2f} ms",
                "latency vs Keras": ""
                if is_keras
                else f"{figures['latency_ms_median'] / keras['latency_ms_median']:.3f}×",
                "batch 256": f"{figures['throughput_images_per_s']:,.0f} images/s",
            }
        )
    return rows


def _int8_row(result: EdgeResult) -> dict[str, str]:
    int8, float_onnx = result.formats["onnx-int8"], result.formats["onnx"]
    latency_ratio = int8["latency_ms_median"] / float_onnx["latency_ms_median"]
    return {
        "model": f"`{result.variant}`",
        "accuracy vs float": _points(int8["accuracy"] - float_onnx["accuracy"]),
        "file vs float": f"{int8['size_bytes'] / float_onnx['size_bytes']:.0%}",
        "batch-1 latency vs float": f"{latency_ratio:.2f}×",
    }


def _points(difference: float) -> str:
    return f"{100 * difference:+.2f} pt"


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.2f} MB"
