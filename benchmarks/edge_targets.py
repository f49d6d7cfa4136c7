"""The edge targets of the export, side by side with what `measure_edge` measured.

    python benchmarks/edge_targets.py reports/edge/cifar10/cnn74.json [...] [--strict]

Per model and target: the measured figure, the target, and whether it is met. Targets:
- ONNX and LiteRT float files: top-1 agreement with Keras >= 99.9 % of the test images, test
  accuracy equal to Keras' within 0.1 pt, batch-1 latency below Keras' `predict`;
- int8 ONNX: accuracy within 1 pt of float ONNX, file <= 30 % of float ONNX; its batch-1
  latency against float ONNX is reported (the goal: below 1).
`--strict` exits 1 when a target is missed (smoke-sized models are too small to judge).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# Figures are ratios of counts and times: a bound met exactly must not fail on float rounding.
EPSILON = 1e-9


@dataclass(frozen=True)
class Target:
    name: str
    formats: tuple[str, ...]  # the formats it applies to
    figure: Callable[[dict, dict], float]  # (the format's row, every format's row) -> figure
    shown: str  # how the figure prints
    limit: float | None  # None: reported, no bound
    at_least: bool = False  # the figure must reach the limit (else stay at or under it)

    def verdict(self, value: float) -> str:
        if self.limit is None:
            return "reported"
        met = value >= self.limit - EPSILON if self.at_least else value <= self.limit + EPSILON
        return "met" if met else "MISSED"


def _points(a: float, b: float) -> float:
    return abs(a - b) * 100


TARGETS = [
    Target("top-1 agreement with Keras >= 99.9 %", ("onnx", "litert"),
           lambda row, all_: row["top1_agreement"], "{:.2%}", 0.999, at_least=True),
    Target("|accuracy - Keras| <= 0.1 pt", ("onnx", "litert"),
           lambda row, all_: _points(row["accuracy"], all_["keras"]["accuracy"]), "{:.2f} pt", 0.1),
    Target("batch-1 latency / Keras predict < 1", ("onnx", "onnx-int8", "litert"),
           lambda row, all_: row["latency_ms_median"] / all_["keras"]["latency_ms_median"],
           "{:.3f}", 1.0),
    Target("|accuracy - float ONNX| <= 1 pt", ("onnx-int8",),
           lambda row, all_: _points(row["accuracy"], all_["onnx"]["accuracy"]), "{:.2f} pt", 1.0),
    Target("file / float ONNX <= 30 %", ("onnx-int8",),
           lambda row, all_: row["size_bytes"] / all_["onnx"]["size_bytes"], "{:.1%}", 0.30),
    Target("batch-1 latency / float ONNX (goal < 1)", ("onnx-int8",),
           lambda row, all_: row["latency_ms_median"] / all_["onnx"]["latency_ms_median"],
           "{:.2f}", None),
]  # fmt: skip


def rows(document: dict) -> list[tuple[str, str, str, str, str]]:
    """(model, format, target, measured, verdict) for every target that applies."""
    formats = document["formats"]
    found = []
    for target in TARGETS:
        for format_name in target.formats:
            if format_name not in formats or "onnx" not in formats:
                continue
            value = target.figure(formats[format_name], formats)
            found.append(
                (document["variant"], format_name, target.name, target.shown.format(value),
                 target.verdict(value))
            )  # fmt: skip
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("measured", type=Path, nargs="+", help="measure_edge's JSON files")
    parser.add_argument("--strict", action="store_true", help="exit 1 if a target is missed")
    args = parser.parse_args(argv)
    table = []
    for path in args.measured:
        document = json.loads(path.read_text())
        table += rows(document)
        machine = document["machine"]
        print(
            f"{path}: {document['test_images']:,} test images, {machine['cpu']} "
            f"({machine['cores']} cores), onnxruntime {machine['versions']['onnxruntime']}, "
            f"ai-edge-litert {machine['versions']['ai-edge-litert']}"
        )
    header = ("model", "format", "target", "measured", "verdict")
    widths = [max(len(str(row[i])) for row in [header, *table]) for i in range(len(header))]
    for row in [header, *table]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)))
    missed = [row for row in table if row[4] == "MISSED"]
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
