"""The MLflow helper: the store's location, and runs never left RUNNING."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest

from deeplecture import tracking
from deeplecture.runtime import TrainingInterrupted


def test_the_store_is_at_the_repository_root_even_inside_a_dvc_temp_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    temp_copy = tmp_path / "repo" / ".dvc" / "tmp" / "exps" / "tmpabc123"
    temp_copy.mkdir(parents=True)
    monkeypatch.setenv("DVC_ROOT", str(temp_copy))
    assert tracking.project_root() == tmp_path / "repo"
    assert tracking.tracking_uri().startswith(f"sqlite:///{tmp_path / 'repo' / 'mlflow.db'}?")


def test_mlflow_tracking_uri_overrides_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert tracking.tracking_uri() == "http://127.0.0.1:5999"


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (TrainingInterrupted("SIGTERM"), "KILLED"),
        (KeyboardInterrupt(), "KILLED"),
        (RuntimeError("x"), "FAILED"),
    ],
)
def test_a_run_ends_killed_or_failed_never_running(
    mlflow_store: str, error: BaseException, status: str
) -> None:
    with pytest.raises(type(error)), tracking.tracked_run("cifar10", "t", {"variant": "cnn74"}):
        raise error
    (run,) = mlflow.search_runs(experiment_names=["cifar10"], output_format="list")
    assert run.info.status == status


def test_experiments_get_an_absolute_artifact_folder_at_the_root(
    tmp_path: Path, mlflow_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    tracking.use_project_store()
    experiment_id = tracking.ensure_experiment("cifar10")
    assert tracking.ensure_experiment("cifar10") == experiment_id
    location = mlflow.get_experiment(experiment_id).artifact_location
    assert location == (tmp_path / "mlartifacts" / "cifar10").as_uri()
