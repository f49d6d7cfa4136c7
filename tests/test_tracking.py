"""The MLflow helper: the store's location, and runs never left RUNNING."""

from __future__ import annotations

import gc
import os
import random
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest

from deeplecture import tracking
from deeplecture.runtime import (
    TrainingInterrupted,
    raise_if_stop_requested,
    stop_requested,
    stop_requests_heard,
)


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
def test_a_stop_signal_inside_a_store_call_never_cuts_it_and_the_run_ends_killed(
    mlflow_store: str,
) -> None:
    logged = []
    with (
        pytest.raises(TrainingInterrupted, match="SIGTERM"),
        stop_requests_heard(),
        tracking.tracked_run("cifar10", "t", {}),
    ):
        with tracking.store_calls("logging"):
            os.kill(os.getpid(), signal.SIGTERM)
            mlflow.log_metric("loss", 1.0)
            logged.append("loss")
        logged.append("the rest of the block")  # up to its end, the run's last safe point
    assert logged == ["loss", "the rest of the block"]
    (run,) = mlflow.search_runs(experiment_names=["cifar10"], output_format="list")
    assert run.info.status == "KILLED"  # not FINISHED, although its block ran to the end
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
    entered = []
    with (
        pytest.raises(TrainingInterrupted),
        stop_requests_heard(),
        tracking.tracked_run("cifar10", "t", {}),
    ):
        entered.append(True)  # never: the stop is acted on as soon as the run is open
    assert entered == []
    (run,) = mlflow.search_runs(experiment_names=["cifar10"], output_format="list")
    assert run.info.status == "KILLED"


@pytest.mark.usefixtures("stop_signals_heard")
def test_a_stop_signal_before_the_run_opens_opens_none(mlflow_store: str) -> None:
    with pytest.raises(KeyboardInterrupt), stop_requests_heard():
        os.kill(os.getpid(), signal.SIGINT)
        with tracking.tracked_run("cifar10", "t", {}):
            pass
    assert mlflow.search_runs(experiment_names=["cifar10"], output_format="list") == []


@pytest.mark.usefixtures("stop_signals_heard")
def test_a_stop_signal_that_lands_in_a_garbage_collector_callback_is_not_lost() -> None:
    # SQLAlchemy runs such callbacks while MLflow opens a run: an exception raised there by a
    # signal handler is printed as "Exception ignored in" and dropped, and training went on.
    def collect_and_be_stopped(phase: str, info: dict) -> None:
        if phase == "start":
            gc.callbacks.remove(collect_and_be_stopped)
            os.kill(os.getpid(), signal.SIGTERM)
            sum(range(1000))  # Python code after the signal: where its handler runs

    after = []
    with pytest.raises(TrainingInterrupted, match="SIGTERM"), stop_requests_heard():
        gc.callbacks.append(collect_and_be_stopped)
        gc.collect()
        after.append("collected")
    assert after == ["collected"]  # acted on at the block's end, its last safe point


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
            pytest.raises((TrainingInterrupted, KeyboardInterrupt)),
            stop_requests_heard(),
            tracking.tracked_run("cifar10", "t", {}),
        ):
            killer.start()
            for epoch in range(10_000):
                tracking.log_epoch({"loss": 1.0, "accuracy": 0.5}, epoch)
                raise_if_stop_requested()  # between epochs, as the training loops do
        killer.join()
    runs = mlflow.search_runs(experiment_names=["cifar10"], output_format="list")
    assert [run.info.status for run in runs] == ["KILLED"] * 30


@pytest.mark.usefixtures("stop_signals_heard")
def test_a_stop_signal_the_process_ignores_stays_ignored() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with pytest.raises(TrainingInterrupted), stop_requests_heard():
        os.kill(os.getpid(), signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert not stop_requested()
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop_requested()
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN


def test_experiments_get_an_absolute_artifact_folder_at_the_root(
    tmp_path: Path, mlflow_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    tracking.use_project_store()
    experiment_id = tracking.ensure_experiment("cifar10")
    assert tracking.ensure_experiment("cifar10") == experiment_id
    location = mlflow.get_experiment(experiment_id).artifact_location
    assert location == (tmp_path / "mlartifacts" / "cifar10").as_uri()
