"""Where a model's results live: `metrics/<dataset>/<variant>.json` holds its numbers (what
`dvc metrics diff` compares), `<variant>.run.json` beside it says how they were made (profile,
data source, backend, device, versions): strings, which DVC would otherwise show as columns."""

from __future__ import annotations

from pathlib import Path

RUN_DESCRIPTION_SUFFIX = ".run.json"


def run_description_path(metrics_path: Path) -> Path:
    """`metrics/cifar10/cnn74.json` -> `metrics/cifar10/cnn74.run.json`."""
    return metrics_path.with_name(metrics_path.stem + RUN_DESCRIPTION_SUFFIX)


def model_metrics_files(folder: Path) -> list[Path]:
    """The metrics files of one dataset's models, by variant name (run descriptions left out)."""
    return sorted(
        path for path in folder.glob("*.json") if not path.name.endswith(RUN_DESCRIPTION_SUFFIX)
    )
