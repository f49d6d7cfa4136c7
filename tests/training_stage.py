"""The train stage as a process of its own, for fault tests: started, watched, broken, rerun."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import mlflow

from conftest import PROJECT_ROOT, write_params


def stage_process(script: str, args: list[str], cwd: Path, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(PROJECT_ROOT / "stages" / script), *args],
        cwd=cwd,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def train_args(tmp_path: Path, data: Path) -> list[str]:
    return [
        "cnn74", "--data", str(data), "--params", str(tmp_path / "params.yaml"),
        "--model", str(tmp_path / "out" / "cnn74.keras"),
        "--record", str(tmp_path / "out" / "cnn74.train.json"),
        "--history", str(tmp_path / "out" / "history.csv"),
        "--checkpoints", str(tmp_path / "checkpoints"),
    ]  # fmt: skip


def train_process(tmp_path: Path, data: Path, store: str, **env: str) -> subprocess.Popen:
    """The train stage for cnn74 on `data`, logging to `store`, with outputs in `tmp_path`
    (`env`: more environment, e.g. the backend)."""
    return stage_process(
        "train.py", train_args(tmp_path, data), tmp_path, MLFLOW_TRACKING_URI=store, **env
    )


def wait_for_epochs(process: subprocess.Popen, checkpoints: Path, epochs: int) -> Path:
    """Wait until the training process has checkpointed `epochs` epochs; its state.json."""
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        for state in checkpoints.glob("*/state.json"):
            with contextlib.suppress(OSError, ValueError):
                if json.loads(state.read_text())["epochs_done"] >= epochs:
                    return state
        time.sleep(0.2)
    raise AssertionError(f"no epoch checkpointed:\n{process.communicate()[1][-3000:]}")


def one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr[-3000:]
    (line,) = [line for line in stderr.splitlines() if line.startswith("error: ")]
    return line


def metric_steps(uri: str, run_id: str) -> list[int]:
    history = mlflow.MlflowClient(uri).get_metric_history(run_id, "loss")
    return sorted(metric.step for metric in history)


def fails_mid_run_then_resumes(
    tmp_path: Path, data: Path, uri: str, break_store, mend_store
) -> None:
    """Train 4 epochs; break the store after the first; the stage must fail within seconds in
    one line, with the epoch it was logging kept; mended, a rerun resumes the same run."""
    write_params(tmp_path, {"train.cnn74.epochs": 4})
    process = train_process(tmp_path, data, uri)
    state_path = wait_for_epochs(process, tmp_path / "checkpoints", 1)
    break_store()
    broken = time.monotonic()
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 1, stderr[-3000:]
    seconds = time.monotonic() - broken
    print(f"stage exited {seconds:.1f} s after the store broke")
    assert seconds < 45  # the epoch in progress, plus a few seconds
    line = one_error_line(stderr)
    state = json.loads(state_path.read_text())
    assert "rerun to resume" in line and f"{state['epochs_done']} finished epochs" in line
    assert state["unfinished_status"] == "FAILED"
    assert not (tmp_path / "out" / "cnn74.keras").exists()
    mend_store()
    logged = metric_steps(uri, state["run_id"])
    assert len(logged) < state["epochs_done"]  # the epoch whose metrics failed was checkpointed

    rerun = train_process(tmp_path, data, uri)
    stdout, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, stderr[-3000:]
    assert f"resuming cnn74 after epoch {state['epochs_done']}" in stdout
    run = mlflow.MlflowClient(uri).get_run(state["run_id"])
    assert run.info.status == "FINISHED"
    assert metric_steps(uri, state["run_id"]) == [0, 1, 2, 3]  # each epoch once, none lost
    assert run.data.tags["resumed_after_epoch"] == str(state["epochs_done"])
