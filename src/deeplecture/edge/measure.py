"""What an exported model costs and buys, measured beside Keras' own `predict` in one process:
test accuracy, agreement with the Keras model, file size, batch-1 latency and batch-256
throughput, all on the CPU.

Timing rules, the same for every format: a few untimed warm-up calls first (first calls
allocate and compile); latency times `calls` single-image calls one by one (median and 95th
percentile, in ms); throughput times one pass over the whole test split in batches of 256.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deeplecture.data.splits import ImageSplit

THROUGHPUT_BATCH = 256
WARMUP_CALLS = 5

# (N, H, W, C) float32 raw pixels -> (N, classes) probabilities
Forward = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Runner:
    """One format under test: how it predicts a large batch and a single image."""

    name: str
    file: Path
    predict_batch: Forward  # any N; split into batches of THROUGHPUT_BATCH
    predict_one: Forward  # N = 1, the latency path


def measure(
    runner: Runner, test: ImageSplit, reference: np.ndarray | None, calls: int
) -> tuple[dict[str, float], np.ndarray]:
    """The figures of `runner` on the test split, and its probabilities. `reference`: the Keras
    model's probabilities, to compare with (None: this is the Keras model)."""
    images = np.ascontiguousarray(test.images, dtype=np.float32)
    probabilities, seconds = _timed_pass(runner.predict_batch, images)
    median, p95 = _latency_ms(runner.predict_one, images, calls)
    if reference is None:
        reference = probabilities
    figures = {
        "accuracy": float(np.mean(probabilities.argmax(axis=1) == test.labels)),
        "top1_agreement": float(np.mean(probabilities.argmax(axis=1) == reference.argmax(axis=1))),
        "max_probability_difference": float(np.abs(probabilities - reference).max()),
        "size_bytes": runner.file.stat().st_size,
        "latency_ms_median": median,
        "latency_ms_p95": p95,
        "throughput_images_per_s": len(images) / seconds,
    }
    return figures, probabilities


def _timed_pass(predict_batch: Forward, images: np.ndarray) -> tuple[np.ndarray, float]:
    predict_batch(images[:THROUGHPUT_BATCH])  # warm-up: the first call builds and allocates
    start = time.perf_counter()
    probabilities = np.asarray(predict_batch(images), dtype=np.float64)
    return probabilities, time.perf_counter() - start


def _latency_ms(predict_one: Forward, images: np.ndarray, calls: int) -> tuple[float, float]:
    # The same images for every format: the first `calls` of the test split, cycled.
    singles = [images[index % len(images)][np.newaxis] for index in range(calls)]
    for single in singles[:WARMUP_CALLS]:
        predict_one(single)
    durations = []
    for single in singles:
        start = time.perf_counter()
        predict_one(single)
        durations.append(time.perf_counter() - start)
    median, p95 = np.percentile(np.array(durations) * 1000.0, [50, 95])
    return float(median), float(p95)


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux), else what `platform` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine() -> dict[str, object]:
    """Where the figures were measured: CPU, cores and the runtimes' versions."""
    from importlib.metadata import version

    return {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "versions": {
            name: version(name)
            for name in ("onnxruntime", "ai-edge-litert", "keras", "tensorflow", "numpy")
        },
    }
