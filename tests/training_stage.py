"""The train stage as a process of its own, for fault tests: started, watched, broken, rerun."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
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


def evaluate_process(tmp_path: Path, data: Path, store: str) -> subprocess.Popen:
    """The evaluate stage for the cnn74 that `train_process` wrote in `tmp_path`."""
    out = tmp_path / "out"
    return stage_process(
        "evaluate.py",
        [
            "cnn74",
            "--data",
            str(data),
            "--params",
            str(tmp_path / "params.yaml"),
            "--model",
            str(out / "cnn74.keras"),
            "--record",
            str(out / "cnn74.train.json"),
            "--metrics",
            str(out / "metrics.json"),
            "--predictions",
            str(out / "predictions.csv"),
            "--per-class",
            str(out / "per_class.csv"),
            "--provenance",
            str(out / "provenance.json"),
        ],  # fmt: skip
        tmp_path,
        MLFLOW_TRACKING_URI=store,
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


class WatchedStage:
    """The train stage for cnn74 (as `train_process`), its output lines watched as they come, to
    be signalled at a chosen moment. SIGINT is heard even where the test runner ignores it (a
    background job of a script)."""

    def __init__(self, tmp_path: Path, data: Path, store: str) -> None:
        self.lines: list[str] = []
        # A file, never a full pipe, whatever is printed; read and closed by `finish`.
        self._errors = tempfile.TemporaryFile("w+")  # noqa: SIM115
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(PROJECT_ROOT / "stages" / "train.py"),
                *train_args(tmp_path, data),
            ],
            cwd=tmp_path,
            env={**os.environ, "MLFLOW_TRACKING_URI": store, "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE,
            stderr=self._errors,
            text=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)

    def wait_for(self, ready: Callable[[], bool], timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"never ready:\n{self.finish()[1][-3000:]}")
            time.sleep(0.01)

    def printed(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    def finish(self, timeout: float = 120) -> tuple[int, str]:
        """Wait for the process to end: its exit status and what it wrote to stderr."""
        returncode = self.process.wait(timeout=timeout)
        self._reader.join(timeout=10)
        self._errors.seek(0)
        with self._errors:
            return returncode, self._errors.read()
