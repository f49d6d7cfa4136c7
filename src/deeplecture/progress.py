"""`StageProgress`: what a person watching a training stage sees, in both loops.

On a terminal, one progress bar for the whole stage (steps of every epoch still to train), with
the epoch, its step, images per second and the ETA of the stage; each finished epoch leaves one
line above the bar, as `fit(verbose=2)` prints it. Where output goes to a file or a CI log, a bar
would be thousands of carriage returns, so it becomes a plain line every `interval` seconds
(DEEPLECTURE_PROGRESS_SECONDS, default 30) plus the epoch lines.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, TextIO

import keras
from tqdm import tqdm

INTERVAL_VARIABLE = "DEEPLECTURE_PROGRESS_SECONDS"
DEFAULT_INTERVAL = 30.0


def line_interval() -> float:
    """Seconds between progress lines where there is no terminal."""
    value = os.environ.get(INTERVAL_VARIABLE, "")
    try:
        return max(float(value), 0.0) if value else DEFAULT_INTERVAL
    except ValueError:
        raise ValueError(f"{INTERVAL_VARIABLE}={value!r}: expected a number of seconds") from None


class StageProgress(keras.callbacks.Callback):
    """Progress of one stage's epochs `initial_epoch`..`epochs`, `steps` batches each.

    Both loops call `on_train_batch_end(step_in_epoch, logs)`: `fit` after every batch, the
    fast loop after every compiled call (several steps at once), so the count is taken from the
    step index, not from the number of calls."""

    def __init__(
        self,
        name: str,
        *,
        epochs: int,
        initial_epoch: int,
        steps: int,
        batch_size: int,
        stream: TextIO | None = None,
        interval: float | None = None,
    ) -> None:
        super().__init__()
        self.name, self.epochs, self.steps, self.batch_size = name, epochs, steps, batch_size
        self.stream = stream or sys.stderr
        self.interval = line_interval() if interval is None else interval
        self.total = (epochs - initial_epoch) * steps
        self.done_before_epoch = 0
        self.done = 0
        self.epoch = initial_epoch
        self.bar: tqdm | None = None
        self.started = self.epoch_started = self.last_line = 0.0

    # Keras hooks -----------------------------------------------------------------------------
    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.started = self.last_line = time.perf_counter()
        if self.stream.isatty():
            self.bar = tqdm(
                total=self.total,
                desc=self.name,
                unit="step",
                file=self.stream,
                dynamic_ncols=True,
                bar_format="{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} steps "
                "[{elapsed}<{remaining}]{postfix}",
            )

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch, self.epoch_started = epoch, time.perf_counter()
        self.done_before_epoch = self.done

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        advanced = self.done_before_epoch + batch + 1 - self.done
        self.done += advanced
        if self.bar is not None:
            self.bar.set_postfix_str(f"{self._where()}, {self._rate():.0f} img/s", refresh=False)
            self.bar.update(advanced)
        elif time.perf_counter() - self.last_line >= self.interval:
            self.last_line = time.perf_counter()
            self._print(
                f"{self.name} {self._where()} | {self._rate():.0f} img/s | "
                f"stage {self.done}/{self.total} steps, ETA {_clock(self._eta())}"
            )

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        metrics = " - ".join(f"{key}: {float(value):.4f}" for key, value in (logs or {}).items())
        seconds = time.perf_counter() - self.epoch_started
        step = self.done - self.done_before_epoch
        self._print(
            f"Epoch {epoch + 1}/{self.epochs} - {step}/{self.steps} - {seconds:.1f}s - {metrics}"
        )

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    # ------------------------------------------------------------------------------------------
    def _where(self) -> str:
        step = self.done - self.done_before_epoch
        return f"epoch {self.epoch + 1}/{self.epochs} step {step}/{self.steps}"

    def _rate(self) -> float:
        elapsed = time.perf_counter() - self.started
        return self.done * self.batch_size / elapsed if elapsed > 0 else 0.0

    def _eta(self) -> float:
        elapsed = time.perf_counter() - self.started
        return elapsed / self.done * (self.total - self.done) if self.done else float("nan")

    def _print(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)


def _clock(seconds: float) -> str:
    if seconds != seconds:  # NaN: no step finished yet
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"
