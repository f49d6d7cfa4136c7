"""Faults during training and tracking, injected for real into the stage processes.

SIGTERM mid-run, SIGKILL in the first epoch and mid-save, an MLflow server that is not there or
dies mid-run, a SQLite store that is read-only, turns read-only mid-run, or is damaged.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import keras
import mlflow
import pytest

from conftest import write_params
from deeplecture.data import processed
from deeplecture.params import load_params
from deeplecture.training import TrainingOutputs, train_variant
from http_server import closed_port_url
from mlflow_server import free_port, mlflow_server
from training_stage import (
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
            model = get_variant("cnn74").build(Scaling.divide255(3), False)
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
