"""`StageProgress`: what a person watching a training stage sees, in both loops.

On a terminal, one progress bar for the whole stage (steps of every epoch still to train), with
the epoch, its step, images per second and the ETA of the stage; each finished epoch leaves one
line above the bar, as `fit(verbose=2)` prints it. Where output goes to a file or a CI log, a bar
would be thousands of carriage returns, so it becomes a plain line every `interval` seconds
(DEEPLECTURE_PROGRESS_SECONDS, default 30) plus the epoch lines.

The stage's first call compiles the training step (under JAX on an H200, 7.5-12 s of an epoch
that then takes 1-2.5 s): until it returns the bar says "compiling", and the rate and the ETA
count only the steps after it. Counting it as a step made the ETA at the start of cnn88 say
40 minutes for a 5.6-minute run.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
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
    step index, not from the number of calls. `clock` is where the seconds come from.
    After training, `first_call_seconds` holds the first call's time, compilation included."""

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
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        super().__init__()
        self.name, self.epochs, self.steps, self.batch_size = name, epochs, steps, batch_size
        self.stream = stream or sys.stderr
        self.interval = line_interval() if interval is None else interval
        self.clock = clock
        self.total = (epochs - initial_epoch) * steps
        self.done_before_epoch = 0
        self.done = 0
        self.epoch = initial_epoch
        self.bar: tqdm | None = None
        self.started = self.epoch_started = self.last_line = 0.0
        self.first_call_seconds: float | None = None
        # The rate counts from the end of the first call: steps done then, and when.
        self.timed_from = 0.0
        self.done_untimed = 0

    # Keras hooks -----------------------------------------------------------------------------
    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.started = self.last_line = self.clock()
        if self.stream.isatty():
            self.bar = _StageBar(
                self._steps_per_second,
                total=self.total,
                desc=self.name,
                unit="step",
                file=self.stream,
                dynamic_ncols=True,
                bar_format="{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} steps "
                "[{elapsed}<{remaining}]{postfix}",
            )
            self.bar.set_postfix_str(f"{self._where()}, compiling")
        else:
            # No line could come before the first call returns: this one says why it is quiet.
            self._print(
                f"{self.name} {self._where()} | compiling | stage {self.done}/{self.total} steps"
            )

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch, self.epoch_started = epoch, self.clock()
        self.done_before_epoch = self.done

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        now = self.clock()
        advanced = self.done_before_epoch + batch + 1 - self.done
        self.done += advanced
        if self.first_call_seconds is None:
            self.first_call_seconds = now - self.started
            self.timed_from, self.done_untimed = now, self.done
        if self.bar is not None:
            self.bar.set_postfix_str(f"{self._where()}, {self._speed()}", refresh=False)
            self.bar.update(advanced)
        elif now - self.last_line >= self.interval:
            self.last_line = now
            self._print(
                f"{self.name} {self._where()} | {self._speed()} | "
                f"stage {self.done}/{self.total} steps, ETA {_clock(self._eta())}"
            )

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        metrics = " - ".join(f"{key}: {float(value):.4f}" for key, value in (logs or {}).items())
        seconds = self.clock() - self.epoch_started
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

    def _steps_per_second(self) -> float:
        """Steps a second since the first call returned; 0 while none has been timed."""
        elapsed = self.clock() - self.timed_from
        timed = self.done - self.done_untimed
        return timed / elapsed if timed and elapsed > 0 else 0.0

    def _speed(self) -> str:
        rate = self._steps_per_second()
        if rate:
            return f"{rate * self.batch_size:.0f} img/s"
        return f"first call {self.first_call_seconds:.1f}s, compiling included"

    def _eta(self) -> float:
        rate = self._steps_per_second()
        return (self.total - self.done) / rate if rate else float("nan")

    def _print(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)


class _StageBar(tqdm):
    """A tqdm bar whose rate, and so its ETA, is `rate()` (steps a second; 0: unknown, shown
    as "?"): tqdm's own would count the compiling first call as a step like any other."""

    def __init__(self, rate: Callable[[], float], **kwargs: Any) -> None:
        self.stage_rate = rate  # before tqdm's __init__, which draws the bar
        super().__init__(**kwargs)

    @property
    def format_dict(self) -> dict[str, Any]:
        return {**super().format_dict, "rate": self.stage_rate()}


def _clock(seconds: float) -> str:
    if seconds != seconds:  # NaN: no step timed yet
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"
