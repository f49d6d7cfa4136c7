"""A sweep's finished runs, from the MLflow store they were logged to, as one JSON file.

The report reads this file, never MLflow itself: the report is reproducible from the repository,
and a sweep whose runs met on a class server (every machine running its share) is collected once,
by whoever writes the report. Every value comes from a run: its `sweep` tag, its params (seed and
scale) and the test metrics the evaluate stage logged to it.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import mlflow

from deeplecture import catalog, tracking
from deeplecture.atomic import write_json

# What a run's params say about the scale it was trained at; the report states them.
SCALE_PARAMS = ("profile", "epochs", "train_images", "validation_images", "data_source")


class SweepNotFound(LookupError):
    """No finished, evaluated run carries the sweep's tag."""


def collect_runs(sweep: str) -> list[dict[str, Any]]:
    """One entry per (variant, seed) of `sweep`: the latest finished run with test metrics."""
    tracking.use_project_store()
    experiments = [tracking.experiment_name(dataset) for dataset in catalog.DATASETS]
    with tracking.store_calls(f"searching the runs of sweep {sweep!r}"):
        found = [
            experiment
            for name in experiments
            if (experiment := mlflow.get_experiment_by_name(name)) is not None
        ]
        runs = (
            mlflow.search_runs(
                experiment_ids=[experiment.experiment_id for experiment in found],
                filter_string=f"tags.sweep = '{sweep}' and attributes.status = 'FINISHED'",
                order_by=["attributes.start_time ASC"],
                output_format="list",
            )
            if found
            else []
        )
    latest: dict[tuple[str, int], dict[str, Any]] = {}
    for run in runs:
        if "test_accuracy" not in run.data.metrics:
            continue  # trained, but its evaluate stage has not logged to it (yet)
        entry = _entry(run)
        latest[(entry["variant"], entry["seed"])] = entry  # a rerun replaces the earlier run
    return sorted(latest.values(), key=lambda entry: (entry["variant"], entry["seed"]))


def write_summary(sweep: str, out: Path) -> dict[str, Any]:
    """Collect `sweep` and write it to `out`; `SweepNotFound` if it has no evaluated run."""
    runs = collect_runs(sweep)
    if not runs:
        raise SweepNotFound(
            f"no finished, evaluated run is tagged sweep={sweep!r} in "
            f"{tracking.tracking_uri().split('?')[0]}: run the sweep first (deeplecture-sweep run)"
        )
    summary = {
        "sweep": sweep,
        "collected": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "runs": runs,
    }
    write_json(out, summary)
    return summary


def _entry(run: mlflow.entities.Run) -> dict[str, Any]:
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    return {
        "variant": tags["variant"],
        "dataset": tags["dataset"],
        "seed": int(params["seed"]),
        "test_accuracy": metrics["test_accuracy"],
        "test_loss": metrics["test_loss"],
        "test_images": _count(metrics.get("test_images")),
        "train_seconds": metrics.get("train_seconds"),
        **{key: _number(params.get(key)) for key in SCALE_PARAMS},
        "backend": tags.get("keras_backend"),
        "device": tags.get("device"),
        "dvc_exp_name": tags.get("dvc_exp_name"),
        "trained": _trained(tags.get("trained_together")),
        "run_id": run.info.run_id,
    }


def _trained(strategy: str | None) -> str:
    """How the run's seed trained: alone (its own experiment), or in one program with the
    sweep's other seeds, and how (vmap, sequential, one by one: loops/seeds.py)."""
    return f"together ({strategy})" if strategy else "alone"


def _count(value: float | None) -> int | None:
    return None if value is None else int(value)


def _number(value: str | None) -> int | str | None:
    """Params come back as strings; counts are numbers in the summary."""
    return int(value) if value is not None and value.isdigit() else value
