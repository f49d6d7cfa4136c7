"""The foundations demos in MLflow: one run each in experiment `foundations`."""

from __future__ import annotations

from pathlib import Path

import mlflow

from deeplecture import tracking
from deeplecture.foundations import EXPERIMENT
from deeplecture.foundations.run import FoundationsResults, summary_metrics, summary_tables

# demo -> (prefix of its keys in summary_metrics, its figure's file stem, its table's key)
DEMOS = {
    "least_squares": ("least_squares.", "least_squares", None),
    "logistic": ("logistic.", "logistic", None),
    "convexity": ("convexity.", "convexity", None),
    "or_neuron": ("or_neuron.", None, "or_neuron"),
    "xor_lecture": ("xor.lecture.", "xor_loss", "xor"),
    "xor_corrected": ("xor.corrected.", "xor_loss", "xor"),
}


def log_foundations(results: FoundationsResults, figure_paths: list[Path]) -> list[str]:
    """Log each demo as its own run (metrics, its curve, figure and table); return run ids."""
    metrics = summary_metrics(results)
    tables = summary_tables(results)
    figures = {path.stem: path for path in figure_paths}
    curves = {
        "least_squares": ("sse", results.least_squares.costs),
        "logistic": ("cross_entropy", results.logistic.costs),
        "xor_lecture": ("loss", results.xor_lecture.losses),
        "xor_corrected": ("loss", results.xor_corrected.losses),
    }
    run_ids = []
    for demo, (prefix, figure, table) in DEMOS.items():
        tags = tracking.run_tags(demo, EXPERIMENT, "full")
        with tracking.tracked_run(EXPERIMENT, demo, tags) as run:
            mlflow.log_metrics(
                {
                    key.removeprefix(prefix): value
                    for key, value in metrics.items()
                    if key.startswith(prefix)
                }
            )
            if demo in curves:
                tracking.log_curve(*curves[demo])
            if figure in figures:
                mlflow.log_artifact(str(figures[figure]), artifact_path="figures")
            if table is not None:
                mlflow.log_dict(tables[table], f"{table}_table.json")
            run_ids.append(run.info.run_id)
    return run_ids
