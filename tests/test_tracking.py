"""The MLflow helper: the store's location, and runs never left RUNNING."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest

from deeplecture import tracking
from deeplecture.runtime import TrainingInterrupted, stop_signals_raise


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


@pytest.fixture
def stop_signals_heard() -> Iterator[None]:
    """SIGTERM and SIGINT at Python's defaults for the test: started as a background job of a
    script, this process would ignore SIGINT, and the code under test keeps that."""
    previous = {
        signal.SIGTERM: signal.signal(signal.SIGTERM, signal.SIG_DFL),
        signal.SIGINT: signal.signal(signal.SIGINT, signal.default_int_handler),
    }
    yield
    for number, handler in previous.items():
        signal.signal(number, handler)


@pytest.mark.usefixtures("stop_signals_heard")
def test_a_stop_signal_inside_a_store_call_waits_until_the_call_is_done(
    mlflow_store: str,
) -> None:
    logged = []
    with (
        stop_signals_raise(),
        pytest.raises(TrainingInterrupted, match="SIGTERM"),
        tracking.tracked_run("cifar10", "t", {}),
    ):
        with tracking.store_calls("logging"):
            os.kill(os.getpid(), signal.SIGTERM)
            mlflow.log_metric("loss", 1.0)
            logged.append("loss")
        logged.append("after the call")  # never: the signal is raised as the call ends
    assert logged == ["loss"]
    (run,) = mlflow.search_runs(experiment_names=["cifar10"], output_format="list")
    assert run.info.status == "KILLED"
    assert mlflow.MlflowClient().get_run(run.info.run_id).data.metrics == {"loss": 1.0}


@pytest.mark.usefixtures("stop_signals_heard")
def test_a_stop_signal_while_the_run_opens_ends_it_killed(
    mlflow_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    start_run = mlflow.start_run

    def start_run_and_be_stopped(**arguments: object) -> mlflow.ActiveRun:
        os.kill(os.getpid(), signal.SIGTERM)
        return start_run(**arguments)

    monkeypatch.setattr(mlflow, "start_run", start_run_and_be_stopped)
    with (
        stop_signals_raise(),
        pytest.raises(TrainingInterrupted),
        tracking.tracked_run("cifar10", "t", {}),
    ):
        pass  # never reached: the signal is raised as the run has opened
    (run,) = mlflow.search_runs(experiment_names=["cifar10"], output_format="list")
    assert run.info.status == "KILLED"


@pytest.mark.usefixtures("stop_signals_heard")
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_runs_stopped_at_any_moment_of_their_logging_end_killed(
    mlflow_store: str, stop: signal.Signals
) -> None:
    # Most moments of this loop are inside SQLite statements: a signal raised there used to
    # leave MLflow's session broken or the database locked, and about one run in ten RUNNING.
    rounds = random.Random(0)
    for _ in range(30):
        killer = threading.Timer(rounds.uniform(0.01, 0.3), os.kill, (os.getpid(), stop))
        with (
            stop_signals_raise(),
            pytest.raises((TrainingInterrupted, KeyboardInterrupt)),
            tracking.tracked_run("cifar10", "t", {}),
        ):
            killer.start()
            for epoch in range(10_000):
                tracking.log_epoch({"loss": 1.0, "accuracy": 0.5}, epoch)
        killer.join()
    runs = mlflow.search_runs(experiment_names=["cifar10"], output_format="list")
    assert [run.info.status for run in runs] == ["KILLED"] * 30


@pytest.mark.usefixtures("stop_signals_heard")
def test_a_stop_signal_the_process_ignores_stays_ignored() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with stop_signals_raise():
        os.kill(os.getpid(), signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        with pytest.raises(TrainingInterrupted):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)  # interrupted: the handler raises as soon as it runs


def test_experiments_get_an_absolute_artifact_folder_at_the_root(
    tmp_path: Path, mlflow_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    tracking.use_project_store()
    experiment_id = tracking.ensure_experiment("cifar10")
    assert tracking.ensure_experiment("cifar10") == experiment_id
    location = mlflow.get_experiment(experiment_id).artifact_location
    assert location == (tmp_path / "mlartifacts" / "cifar10").as_uri()
