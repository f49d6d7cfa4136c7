"""Faults during training and tracking, injected for real into the stage processes.

SIGTERM mid-run, SIGKILL mid-save, and an MLflow server that is not there.
"""

from __future__ import annotations

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

from conftest import PROJECT_ROOT, write_params
from deeplecture.data import processed
from deeplecture.params import load_params
from deeplecture.training import TrainingOutputs, train_variant
from http_server import closed_port_url

pytestmark = pytest.mark.slow


def _stage(script: str, args: list[str], cwd: Path, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(PROJECT_ROOT / "stages" / script), *args],
        cwd=cwd,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _train_args(tmp_path: Path, data: Path) -> list[str]:
    return [
        "cnn74", "--data", str(data), "--params", str(tmp_path / "params.yaml"),
        "--model", str(tmp_path / "out" / "cnn74.keras"),
        "--record", str(tmp_path / "out" / "cnn74.train.json"),
        "--history", str(tmp_path / "out" / "history.csv"),
        "--checkpoints", str(tmp_path / "checkpoints"),
    ]  # fmt: skip


def test_sigterm_marks_the_run_killed_and_keeps_the_checkpoint(
    tmp_path: Path, tiny_data: Path, mlflow_store: str
) -> None:
    write_params(tmp_path, {"train.cnn74.epochs": 200})
    process = _stage(
        "train.py", _train_args(tmp_path, tiny_data), tmp_path, MLFLOW_TRACKING_URI=mlflow_store
    )
    state = tmp_path / "checkpoints" / "cnn74" / "state.json"
    deadline = time.monotonic() + 120
    while not state.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert state.exists(), process.communicate()[1][-3000:]
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)

    assert process.returncode == 143, stderr[-3000:]
    assert "interrupted" in stderr and "resume" in stderr
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
            from deeplecture.training import _save_model
            model = get_variant("cnn74").build(Scaling.divide255(3), False)
            print("ready", flush=True)
            while True:
                _save_model(model, Path({str(target)!r}))
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
    process = _stage(
        "train.py", _train_args(tmp_path, tiny_data), tmp_path, MLFLOW_TRACKING_URI=server
    )
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
    process = _stage(
        "evaluate.py",
        [
            "cnn74", "--data", str(tiny_data), "--params", str(tmp_path / "params.yaml"),
            "--model", str(out / "cnn74.keras"), "--record", str(out / "cnn74.train.json"),
            "--metrics", str(out / "metrics.json"), "--predictions", str(out / "predictions.csv"),
        ],
        tmp_path,
        MLFLOW_TRACKING_URI=server,
    )  # fmt: skip
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr[-3000:]
    assert "test metrics not logged to MLflow" in stderr and server in stderr
    assert json.loads((out / "metrics.json").read_text())["test_images"] == 60
