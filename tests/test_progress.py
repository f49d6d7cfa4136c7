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
from io import StringIO
from pathlib import Path

import pytest

from conftest import (
    PROJECT_ROOT,
    InjectedCrash,
    crash_after_epoch,
    training_outputs,
    write_params,
)
from deeplecture.data import processed
from deeplecture.params import load_params
from deeplecture.progress import StageProgress
from deeplecture.training import train_variant

# 180 fit images in batches of 16: 12 steps an epoch, 24 in the stage.
TINY = {"train.cnn74.epochs": 2, "train.cnn74.batch_size": 16, "engine.steps_per_call": 4}
# Printed as training starts: no line can come before the first (compiling) call returns.
COMPILING_LINE = "cnn74 epoch 1/2 step 0/12 | compiling | stage 0/24 steps"


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
    outputs = training_outputs(tmp_path / "out")
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
    train_variant("cnn74", params, data, training_outputs(tmp_path / "out"))
    every_call = capsys.readouterr().err

    assert "\r" not in every_call
    lines = [line for line in every_call.splitlines() if line.startswith("cnn74 epoch")]
    assert lines[0] == COMPILING_LINE
    assert re.fullmatch(
        r"cnn74 epoch 2/2 step 12/12 \| \d+ img/s \| stage 24/24 steps, ETA 00:00", lines[-1]
    )
    # The fast loop runs 11 full batches in calls of 4, 4 and 3, and the short one alone.
    expected_calls = 2 * (12 if loop == "fit" else 4)
    assert len(lines) == 1 + expected_calls
    assert "Epoch 1/2 - 12/12" in every_call and "Epoch 2/2 - 12/12" in every_call

    # At the default interval (30 s) a run this short prints its epoch lines only.
    monkeypatch.delenv("DEEPLECTURE_PROGRESS_SECONDS")
    params = load_params(
        write_params(tmp_path, {**TINY, "engine.loop": loop, "train.cnn74.seed": 5})
    )
    train_variant("cnn74", params, data, training_outputs(tmp_path / "again" / "out"))
    quiet = capsys.readouterr().err
    progress_lines = [line for line in quiet.splitlines() if line.startswith("cnn74 epoch")]
    assert progress_lines == [COMPILING_LINE] and quiet.count("Epoch ") == 2


def test_the_history_file_grows_after_every_epoch(
    tmp_path: Path, tiny_data: Path, mlflow_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`dvc plots show` during a run reads the history as it stands after the last epoch."""
    params = load_params(write_params(tmp_path, {**TINY, "train.cnn74.epochs": 3}))
    outputs = training_outputs(tmp_path / "out")
    crash_after_epoch(monkeypatch, 2)
    with pytest.raises(InjectedCrash):
        train_variant("cnn74", params, processed.load(tiny_data), outputs)

    rows = outputs.history.read_text().splitlines()
    assert rows[0] == "epoch,loss,accuracy,val_loss,val_accuracy,learning_rate"
    assert [row.split(",")[0] for row in rows[1:]] == ["0", "1"]
    assert not outputs.model.exists()  # the history is live; the model comes at the end


class FakeClock:
    """Seconds that pass only when the test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Terminal(StringIO):
    def isatty(self) -> bool:
        return True


def _stage(stream: StringIO, clock: FakeClock) -> StageProgress:
    """Two epochs of 12 steps of 16 images, a line after every call where there is no bar."""
    return StageProgress(
        "cnn88", epochs=2, initial_epoch=0, steps=12, batch_size=16,
        stream=stream, interval=0, clock=clock,
    )  # fmt: skip


def test_the_compiling_first_call_is_left_out_of_the_rate_and_the_eta() -> None:
    clock, stream = FakeClock(), StringIO()
    progress = _stage(stream, clock)
    progress.on_train_begin()
    progress.on_epoch_begin(0)
    assert stream.getvalue() == "cnn88 epoch 1/2 step 0/12 | compiling | stage 0/24 steps\n"

    clock.now += 10.0  # the first call: 4 steps and the compilation of the training step
    progress.on_train_batch_end(3)
    clock.now += 1.0  # then 4 steps a second: 64 images a second
    progress.on_train_batch_end(7)

    first, second = stream.getvalue().splitlines()[1:]
    assert first == (
        "cnn88 epoch 1/2 step 4/12 | first call 10.0s, compiling included | stage 4/24 steps, ETA ?"
    )
    # 16 steps left at 4 a second; counting the first call, 8 steps in 11 s would say 00:22.
    assert second == "cnn88 epoch 1/2 step 8/12 | 64 img/s | stage 8/24 steps, ETA 00:04"
    assert progress.first_call_seconds == 10.0

    # Later epochs keep the rate of every step since the first call, validation included.
    clock.now += 1.0
    progress.on_train_batch_end(11)
    progress.on_epoch_end(0, {"loss": 2.0})
    progress.on_epoch_begin(1)
    clock.now += 3.0
    progress.on_train_batch_end(3)  # 12 timed steps in 5 s
    assert stream.getvalue().splitlines()[-1] == (
        "cnn88 epoch 2/2 step 4/12 | 38 img/s | stage 16/24 steps, ETA 00:03"
    )


def test_the_bar_says_compiling_until_the_first_call_returns() -> None:
    clock, terminal = FakeClock(), Terminal()
    progress = _stage(terminal, clock)
    progress.on_train_begin()
    progress.on_epoch_begin(0)
    assert re.search(
        r"cnn88   0%\|.*\| 0/24 steps \[00:00<\?\], epoch 1/2 step 0/12, compiling$",
        str(progress.bar),
    )

    clock.now += 10.0
    progress.on_train_batch_end(3)
    assert str(progress.bar).endswith(
        "<?], epoch 1/2 step 4/12, first call 10.0s, compiling included"
    )
    clock.now += 1.0
    progress.on_train_batch_end(7)
    assert re.search(
        r"\| 8/24 steps \[\d\d:\d\d<00:04\], epoch 1/2 step 8/12, 64 img/s$", str(progress.bar)
    )
    progress.on_train_end()
    assert "compiling" in terminal.getvalue()  # drawn on the terminal, not only formatted
