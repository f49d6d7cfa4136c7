"""What a person watching a training stage sees: a bar on a terminal, a line every few seconds
in a CI log, and a history file that grows epoch by epoch while the stage runs."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from conftest import PROJECT_ROOT, InjectedCrash, crash_after_epoch, write_params
from deeplecture.data import processed
from deeplecture.params import load_params
from deeplecture.training import TrainingOutputs, train_variant

# 180 fit images in batches of 16: 12 steps an epoch, 24 in the stage.
TINY = {"train.cnn74.epochs": 2, "train.cnn74.batch_size": 16, "engine.steps_per_call": 4}


def _outputs(tmp_path: Path) -> TrainingOutputs:
    out = tmp_path / "out"
    return TrainingOutputs(
        out / "cnn74.keras", out / "cnn74.train.json", out / "history.csv", out / "checkpoints"
    )


def _read_terminal(command: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run `command` with its output on a pseudo-terminal, as in a user's shell."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))  # rows, cols
    process = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=follower, stderr=follower, env=env
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    return process.wait(timeout=300), b"".join(chunks).decode(errors="replace")


@pytest.mark.slow
@pytest.mark.parametrize("loop", ["fit", "fast"])
def test_a_terminal_shows_one_bar_for_the_whole_stage_with_rate_and_eta(
    tmp_path: Path, tiny_data: Path, mlflow_store: str, loop: str
) -> None:
    params = write_params(tmp_path, {**TINY, "engine.loop": loop})
    outputs = _outputs(tmp_path)
    command = [
        sys.executable, str(PROJECT_ROOT / "stages" / "train.py"), "cnn74",
        "--data", str(tiny_data), "--model", str(outputs.model), "--record", str(outputs.record),
        "--history", str(outputs.history), "--checkpoints", str(outputs.checkpoints),
        "--params", str(params),
    ]  # fmt: skip
    status, screen = _read_terminal(command, dict(os.environ))

    assert status == 0, screen[-3000:]
    redraws = screen.split("\r")
    assert len(redraws) > 2  # the bar is redrawn in place, not printed line by line
    final = [text for text in redraws if "24/24 steps" in text]
    assert final, screen[-2000:]
    # The whole stage (both epochs) is one bar: its ETA is the stage's, not the epoch's.
    assert re.search(r"cnn74 100%\|.*\| 24/24 steps \[\d\d:\d\d<00:00", final[-1])
    assert re.search(r"epoch 2/2 step 12/12, \d+ img/s", final[-1])
    # Each finished epoch leaves its line above the bar.
    for epoch in (1, 2):
        assert re.search(rf"Epoch {epoch}/2 - 12/12 - .*val_accuracy: \d\.\d{{4}}", screen)


@pytest.mark.parametrize("loop", ["fit", "fast"])
def test_without_a_terminal_progress_is_a_line_every_few_seconds(
    tmp_path: Path,
    tiny_data: Path,
    mlflow_store: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    loop: str,
) -> None:
    data = processed.load(tiny_data)
    monkeypatch.setenv("DEEPLECTURE_PROGRESS_SECONDS", "0")  # a line after every call
    params = load_params(write_params(tmp_path, {**TINY, "engine.loop": loop}))
    train_variant("cnn74", params, data, _outputs(tmp_path))
    every_call = capsys.readouterr().err

    assert "\r" not in every_call
    lines = [line for line in every_call.splitlines() if line.startswith("cnn74 epoch")]
    assert re.fullmatch(
        r"cnn74 epoch 2/2 step 12/12 \| \d+ img/s \| stage 24/24 steps, ETA 00:00", lines[-1]
    )
    # The fast loop runs 11 full batches in calls of 4, 4 and 3, and the short one alone.
    expected_calls = 2 * (12 if loop == "fit" else 4)
    assert len(lines) == expected_calls
    assert "Epoch 1/2 - 12/12" in every_call and "Epoch 2/2 - 12/12" in every_call

    # At the default interval (30 s) a run this short prints its epoch lines only.
    monkeypatch.delenv("DEEPLECTURE_PROGRESS_SECONDS")
    params = load_params(
        write_params(tmp_path, {**TINY, "engine.loop": loop, "train.cnn74.seed": 5})
    )
    train_variant("cnn74", params, data, _outputs(tmp_path / "again"))
    quiet = capsys.readouterr().err
    assert "cnn74 epoch" not in quiet and quiet.count("Epoch ") == 2


def test_the_history_file_grows_after_every_epoch(
    tmp_path: Path, tiny_data: Path, mlflow_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`dvc plots show` during a run reads the history as it stands after the last epoch."""
    params = load_params(write_params(tmp_path, {**TINY, "train.cnn74.epochs": 3}))
    outputs = _outputs(tmp_path)
    crash_after_epoch(monkeypatch, 2)
    with pytest.raises(InjectedCrash):
        train_variant("cnn74", params, processed.load(tiny_data), outputs)

    rows = outputs.history.read_text().splitlines()
    assert rows[0] == "epoch,loss,accuracy,val_loss,val_accuracy,learning_rate"
    assert [row.split(",")[0] for row in rows[1:]] == ["0", "1"]
    assert not outputs.model.exists()  # the history is live; the model comes at the end
