"""Faults during training and tracking, injected for real into the stage processes.

SIGTERM mid-run, SIGKILL in the first epoch and mid-save, an MLflow server that is not there or
dies mid-run, a SQLite store that is read-only, turns read-only mid-run, or is damaged.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import keras
import mlflow
import numpy as np
import pytest

from conftest import InjectedCrash, crash_after_epoch, training_outputs, write_params
from deeplecture.data import processed
from deeplecture.params import load_params
from deeplecture.training import TrainingOutputs, train_variant
from http_server import closed_port_url
from mlflow_server import free_port, mlflow_server
from training_stage import (
    WatchedStage,
    evaluate_process,
    fails_mid_run_then_resumes,
    metric_steps,
    one_error_line,
    stage_process,
    train_args,
    train_process,
    wait_for_epochs,
)

pytestmark = pytest.mark.slow


def test_sigterm_marks_the_run_killed_and_keeps_the_checkpoint(
    tmp_path: Path, tiny_data: Path, mlflow_store: str
) -> None:
    write_params(tmp_path, {"train.cnn74.epochs": 200})
    process = train_process(tmp_path, tiny_data, mlflow_store)
    state = wait_for_epochs(process, tmp_path / "checkpoints", 1)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)

    assert process.returncode == 143, stderr[-3000:]
    (line,) = [line for line in stderr.splitlines() if line.startswith("interrupted: ")]
    assert "SIGTERM" in line and "resume" in line
    assert "Traceback" not in stderr
    assert json.loads(state.read_text())["epochs_done"] >= 1
    assert not (tmp_path / "out" / "cnn74.keras").exists()
    (run,) = mlflow.search_runs(experiment_names=["cifar10"], output_format="list")
    assert run.info.status == "KILLED"


def test_a_kill_during_model_save_never_leaves_a_truncated_model(tmp_path: Path) -> None:
    target = tmp_path / "model.keras"
    saver = tmp_path / "saver.py"
    saver.write_text(
        textwrap.dedent(
            f"""
            from pathlib import Path
            from deeplecture.models import get_variant
            from deeplecture.scaling import Scaling
            from deeplecture import model_file
            model = get_variant("cnn74").build(Scaling.divide255(3), "none")
            print("ready", flush=True)
            while True:
                model_file.save(model, Path({str(target)!r}), [str(i) for i in range(10)])
            """
        )
    )
    process = subprocess.Popen([sys.executable, str(saver)], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "ready"
    deadline = time.monotonic() + 60
    while not target.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    delays = (0.05, 0.13, 0.29, 0.41)  # different points inside a ~0.3 s save
    for kills, delay in enumerate(delays, start=1):
        time.sleep(delay)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        assert keras.saving.load_model(target).count_params() == 1_639_914
        if kills < len(delays):
            process = subprocess.Popen(
                [sys.executable, str(saver)], stdout=subprocess.PIPE, text=True
            )
            assert process.stdout.readline().strip() == "ready"


def test_an_unreachable_mlflow_server_fails_training_fast_with_a_clear_error(
    tmp_path: Path, tiny_data: Path
) -> None:
    write_params(tmp_path, {"train.cnn74.epochs": 1})
    server = closed_port_url("").rstrip("/")
    started = time.monotonic()
    process = train_process(tmp_path, tiny_data, server)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 1
    assert server in stderr and "did not answer" in stderr
    assert time.monotonic() - started < 60
    assert not (tmp_path / "out" / "cnn74.keras").exists()


def test_an_unreachable_mlflow_server_still_gets_the_metrics_file_written(
    tmp_path: Path, tiny_data: Path, mlflow_store: str
) -> None:
    params = load_params(write_params(tmp_path, {"train.cnn74.epochs": 1}))
    out = tmp_path / "out"
    outputs = TrainingOutputs(
        out / "cnn74.keras", out / "cnn74.train.json", out / "h.csv", tmp_path / "ck"
    )
    train_variant("cnn74", params, processed.load(tiny_data), outputs)
    server = closed_port_url("").rstrip("/")
    process = stage_process(
        "evaluate.py",
        [
            "cnn74", "--data", str(tiny_data), "--params", str(tmp_path / "params.yaml"),
            "--model", str(out / "cnn74.keras"), "--record", str(out / "cnn74.train.json"),
            "--metrics", str(out / "metrics.json"), "--predictions", str(out / "predictions.csv"),
            "--per-class", str(out / "per_class.csv"), "--provenance", str(out / "provenance.json"),
        ],
        tmp_path,
        MLFLOW_TRACKING_URI=server,
    )  # fmt: skip
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr[-3000:]
    assert "test metrics not logged to MLflow" in stderr and server in stderr
    assert json.loads((out / "metrics.json").read_text())["test_images"] == 60


# --- the MLflow store failing ------------------------------------------------------------


@contextlib.contextmanager
def immutable(path: Path):
    """`chattr +i`: not even root may write `path` (or, for a folder, create files in it), as
    a read-only store is for its owner. Skips where the file system has no such attribute."""
    done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"chattr +i is not supported here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def _store(folder: Path) -> str:
    """A SQLite store in `folder` that already has its tables, as after a first run."""
    folder.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    mlflow.MlflowClient(uri).search_experiments()
    return uri


def test_a_read_only_store_fails_before_training_in_one_line(
    tmp_path: Path, tiny_data: Path
) -> None:
    write_params(tmp_path, {"train.cnn74.epochs": 1})
    uri = _store(tmp_path / "store")
    with immutable(tmp_path / "store" / "mlflow.db"):
        process = train_process(tmp_path, tiny_data, uri)
        _, stderr = process.communicate(timeout=120)
    assert process.returncode == 1
    line = one_error_line(stderr)
    assert str(tmp_path / "store" / "mlflow.db") in line and "cannot be written" in line
    assert "Epoch" not in stderr and not (tmp_path / "out").exists()
    assert not list((tmp_path / "checkpoints").glob("*/*"))


def test_a_damaged_store_is_named_with_the_fix_for_a_damaged_file(
    tmp_path: Path, tiny_data: Path
) -> None:
    write_params(tmp_path, {"train.cnn74.epochs": 1})
    store = tmp_path / "mlflow.db"
    store.write_bytes(b"this is not an SQLite database, it was overwritten" * 100)
    process = stage_process(
        "train.py", train_args(tmp_path, tiny_data), tmp_path,
        MLFLOW_TRACKING_URI=f"sqlite:///{store}",
    )  # fmt: skip
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 1
    line = one_error_line(stderr)
    assert f"{store} is damaged" in line and f"mv {store}" in line
    assert "server" not in line  # the hint for a remote server does not apply to a file


def test_a_store_that_turns_read_only_mid_run_loses_no_epoch_and_a_rerun_resumes(
    tmp_path: Path, tiny_data: Path
) -> None:
    folder = tmp_path / "store"
    uri = _store(folder)
    lock = contextlib.ExitStack()
    try:
        # Its folder made immutable: SQLite can no longer create the journal every write needs.
        fails_mid_run_then_resumes(
            tmp_path, tiny_data, uri,
            break_store=lambda: lock.enter_context(immutable(folder)), mend_store=lock.close,
        )  # fmt: skip
    finally:
        lock.close()  # whatever failed: pytest must be able to delete the folder


def test_a_server_that_dies_mid_run_fails_the_stage_fast_and_a_rerun_resumes(
    tmp_path: Path, tiny_data: Path
) -> None:
    backend = f"sqlite:///{tmp_path / 'server.db'}"
    port = free_port()
    server = contextlib.ExitStack()
    url = server.enter_context(mlflow_server(backend, port))
    try:
        fails_mid_run_then_resumes(
            tmp_path, tiny_data, url,
            break_store=server.close,
            mend_store=lambda: server.enter_context(mlflow_server(backend, port)),
        )  # fmt: skip
    finally:
        server.close()


def test_a_kill_during_the_first_epoch_is_resumed_in_the_same_run(
    tmp_path: Path, tiny_data: Path, mlflow_store: str
) -> None:
    write_params(tmp_path, {"train.cnn74.epochs": 2})
    process = train_process(tmp_path, tiny_data, mlflow_store)
    state_path = wait_for_epochs(process, tmp_path / "checkpoints", 0)
    process.kill()  # SIGKILL: nothing in the process can react
    process.communicate(timeout=60)
    state = json.loads(state_path.read_text())
    assert state["epochs_done"] == 0 and state["run_id"]
    (killed,) = mlflow.search_runs(experiment_names=["cifar10"], output_format="list")
    assert killed.info.status == "RUNNING"  # nobody could close it: the rerun must

    rerun = train_process(tmp_path, tiny_data, mlflow_store)
    _, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, stderr[-3000:]
    (run,) = mlflow.search_runs(experiment_names=["cifar10"], output_format="list")
    assert run.info.run_id == state["run_id"] and run.info.status == "FINISHED"
    assert metric_steps(mlflow_store, run.info.run_id) == [0, 1]


def test_a_killed_run_that_is_not_resumed_is_closed_by_the_next_training(
    tmp_path: Path, tiny_data: Path, mlflow_store: str
) -> None:
    write_params(tmp_path, {"train.cnn74.epochs": 2})
    process = train_process(tmp_path, tiny_data, mlflow_store)
    state = json.loads(wait_for_epochs(process, tmp_path / "checkpoints", 0).read_text())
    process.kill()
    process.communicate(timeout=60)

    write_params(tmp_path, {"train.cnn74.epochs": 1})  # other settings: a run of its own
    rerun = train_process(tmp_path, tiny_data, mlflow_store)
    stdout, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, stderr[-3000:]
    assert "train.epochs: 2 -> 1" in stdout  # what differs from the checkpoint kept beside
    killed = mlflow.get_run(state["run_id"])
    assert killed.info.status == "KILLED"


# --- bad settings and outputs, found before the first epoch -------------------------------


def test_a_batch_larger_than_the_training_split_fails_the_stage_in_one_line(
    tmp_path: Path, tiny_data: Path, mlflow_store: str
) -> None:
    write_params(tmp_path, {"train.cnn74.batch_size": 1_000_000_000})
    process = train_process(tmp_path, tiny_data, mlflow_store)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 1  # as any other bad value in params.yaml
    line = one_error_line(stderr)
    assert "train.cnn74.batch_size: 1000000000" in line and "180 images" in line  # 180 to fit
    assert "Epoch" not in stderr
    assert mlflow.search_runs(experiment_names=["cifar10"], output_format="list") == []


def test_a_read_only_output_folder_fails_before_the_first_epoch_in_one_line(
    tmp_path: Path, tiny_data: Path, mlflow_store: str
) -> None:
    write_params(tmp_path, {"train.cnn74.epochs": 2})
    out = tmp_path / "out"  # where train_args puts the model, the record and the history
    out.mkdir()
    with immutable(out):
        process = train_process(tmp_path, tiny_data, mlflow_store)
        _, stderr = process.communicate(timeout=300)
    assert process.returncode == 1
    line = one_error_line(stderr)
    assert f"{out / 'cnn74.keras'} cannot be written" in line
    assert "Epoch" not in stderr and not list((tmp_path / "checkpoints").glob("*/*"))
    assert mlflow.search_runs(experiment_names=["cifar10"], output_format="list") == []


# --- a stop while the model is logged ----------------------------------------------------


def _variant_models(uri: str, run: mlflow.entities.Run) -> list:
    """The LoggedModels of `run` named after its variant (cnn74), deleted ones left out."""
    models = mlflow.MlflowClient(uri).search_logged_models(
        [run.info.experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'"
    )
    return [model for model in models if model.name == "cnn74"]


def _wait_until_the_model_is_being_logged(process: subprocess.Popen, uri: str) -> None:
    """Poll the store until the stage has created its LoggedModel (MLflow creates it PENDING,
    then writes the artifacts for seconds, then marks it READY)."""
    deadline = time.monotonic() + 180
    client = mlflow.MlflowClient(uri)
    while process.poll() is None and time.monotonic() < deadline:
        experiment = client.get_experiment_by_name("cifar10")
        if experiment and client.search_logged_models([experiment.experiment_id]):
            return
        time.sleep(0.05)
    raise AssertionError(f"no model was logged:\n{process.communicate()[1][-3000:]}")


def test_a_kill_while_the_model_is_logged_leaves_one_logged_model_after_the_rerun(
    tmp_path: Path, tiny_data: Path, mlflow_store: str
) -> None:
    """SIGKILL while the evaluate stage has MLflow write the model's artifacts leaves it
    PENDING, the training run as training left it and nothing registered; the rerun ends with
    one READY model, the registered one."""
    write_params(tmp_path, {"train.cnn74.epochs": 1})
    trained = train_process(tmp_path, tiny_data, mlflow_store)
    assert trained.wait(timeout=300) == 0
    process = evaluate_process(tmp_path, tiny_data, mlflow_store)
    _wait_until_the_model_is_being_logged(process, mlflow_store)
    process.kill()
    process.communicate(timeout=60)
    (run,) = mlflow.search_runs(experiment_names=["cifar10"], output_format="list")
    assert run.info.status == "FINISHED"  # the model is logged into it without reopening it
    assert [model.status for model in _variant_models(mlflow_store, run)] == ["PENDING"]
    assert mlflow.MlflowClient(mlflow_store).search_registered_models() == []

    rerun = evaluate_process(tmp_path, tiny_data, mlflow_store)
    stdout, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, stderr[-3000:]
    assert "deleted LoggedModel" in stdout and "(PENDING)" in stdout
    (model,) = _variant_models(mlflow_store, run)
    version = mlflow.MlflowClient(mlflow_store).get_model_version_by_alias("cifar10-cnn74", "full")
    assert model.status == "READY" and version.source == f"models:/{model.model_id}"


# --- resuming --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variant", "loop"), [("cnn74", "fast"), ("cnn74", "fit"), ("cnn88", "fast")]
)
def test_a_resumed_run_trains_exactly_what_an_uninterrupted_one_trains(
    variant: str,
    loop: str,
    tmp_path: Path,
    tiny_data: Path,
    mlflow_store: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Same seed, stopped after epoch 1 and resumed, or not stopped: the same batches, the same
    dropout (and, cnn88, augmentation) draws, so the same losses and the same weights."""
    params = load_params(
        write_params(
            tmp_path,
            {
                f"train.{variant}.epochs": 3,
                f"train.{variant}.batch_size": 16,
                f"train.{variant}.steps_per_epoch": 15 if variant == "cnn88" else None,
                "engine.loop": loop,
            },
        )
    )
    data = processed.load(tiny_data)
    whole = training_outputs(tmp_path / "whole", variant)
    uninterrupted = train_variant(variant, params, data, whole)

    resumed_outputs = training_outputs(tmp_path / "resumed", variant)
    with monkeypatch.context() as patch:
        crash_after_epoch(patch, epochs=1)
        with pytest.raises(InjectedCrash):
            train_variant(variant, params, data, resumed_outputs)
    resumed = train_variant(variant, params, data, resumed_outputs)

    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert resumed["history"][key] == uninterrupted["history"][key], key
    weights = [keras.saving.load_model(o.model).get_weights() for o in (whole, resumed_outputs)]
    for first, second in zip(*weights, strict=True):
        np.testing.assert_array_equal(first, second)


# --- stop signals ----------------------------------------------------------------------------


def _printed(text: str) -> Callable[[WatchedStage], bool]:
    return lambda stage: stage.printed(text)


# Each phase: how many shots, what the shot waits for, then a random delay (s) in a range.
# "opening" is where a stop used to be lost (2 tries in 3): SQLAlchemy runs garbage-collector
# callbacks while MLflow opens the run, and an exception raised there by a signal handler was
# dropped. (Before the stage listens, while Python and Keras load, SIGTERM simply ends it.)
_PHASES = {
    # abandoned runs, the run opening, its params and dataset, the first checkpoint
    "opening": (6, _printed("training cnn74 on"), (0.0, 0.3)),
    # the model rebuilt from the checkpoint, the device found, the run reopened
    "resuming": (3, _printed("resuming cnn74"), (0.0, 0.3)),
    "training": (3, _printed("training cnn74 on"), (0.5, 4.0)),
}


def _shot_lands(stage: WatchedStage, signum: int) -> int:
    """Signal the stage; check that the stop was honoured: never exit 0, one line, no run left
    FINISHED or RUNNING. The exit status."""
    stage.process.send_signal(signum)
    returncode, stderr = stage.finish()
    assert returncode == {signal.SIGTERM: 143, signal.SIGINT: 130}[signum], stderr[-3000:]
    (line,) = [line for line in stderr.splitlines() if line.startswith("interrupted: ")]
    assert "rerun to resume" in line and "Traceback" not in stderr, stderr[-3000:]
    runs = mlflow.search_runs(experiment_names=["cifar10"], output_format="list")
    assert {run.info.status for run in runs} <= {"KILLED"}, stderr[-3000:]
    return returncode


def test_a_stop_signal_is_never_lost_whatever_phase_it_lands_in(
    tmp_path: Path, tiny_data: Path, mlflow_store: str
) -> None:
    moments = random.Random(21)  # random moments, the same ones every run
    write_params(tmp_path, {"train.cnn74.epochs": 100})  # never reached: every attempt stops
    outcomes = []
    for phase, (shots, ready, (shortest, longest)) in _PHASES.items():
        for shot in range(shots):
            signum = signal.SIGINT if shot % 3 == 2 else signal.SIGTERM  # Ctrl-C
            stage = WatchedStage(tmp_path, tiny_data, mlflow_store)  # resumes the last one
            stage.wait_for(lambda stage=stage, ready=ready: ready(stage))
            time.sleep(moments.uniform(shortest, longest))
            outcomes.append(f"{phase} {_shot_lands(stage, signum)}")

    # Finishing: the epochs are done, the model is written, it goes to MLflow. With one epoch,
    # every rerun resumes straight into this phase.
    finishing = tmp_path / "finishing"
    finishing.mkdir()
    write_params(finishing, {"train.cnn74.epochs": 1})
    model = finishing / "out" / "cnn74.keras"
    for _ in range(3):
        model.unlink(missing_ok=True)
        stage = WatchedStage(finishing, tiny_data, mlflow_store)
        stage.wait_for(model.exists)
        outcomes.append(f"finishing {_shot_lands(stage, signal.SIGTERM)}")
    print(f"{len(outcomes)} stopped stages, phase and exit status: {outcomes}")

    stage = WatchedStage(finishing, tiny_data, mlflow_store)  # left alone, it finishes
    returncode, stderr = stage.finish(timeout=300)
    assert returncode == 0, stderr[-3000:]
    record = json.loads((finishing / "out" / "cnn74.train.json").read_text())
    assert mlflow.get_run(record["run_id"]).info.status == "FINISHED"
