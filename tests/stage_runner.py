"""Run a stage entry point as DVC does, and check how it refused bad input."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from conftest import PROJECT_ROOT

# Seconds a refused run may spend after its imports: reading params.yaml, nothing more.
FAIL_FAST_S = 3.0


@dataclass
class Stage:
    """A finished stage process."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float  # wall time of the whole process
    import_seconds: float  # of which spent importing modules (only with timed=True)

    @property
    def work_seconds(self) -> float:
        """Wall time less the imports: what the stage itself did before exiting."""
        return self.seconds - self.import_seconds


def run_stage(script: str, cwd: Path, *args: object, timed: bool = False) -> Stage:
    """`python stages/<script>.py ARGS --params CWD/params.yaml` in `cwd`, as DVC runs it.

    The environment points at no MLflow store or DVC root, so the defaults (files in `cwd`)
    apply. `timed` adds `-X importtime`, whose report separates import time from work.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "DVC_ROOT")}
    command = [
        sys.executable,
        *(["-X", "importtime"] if timed else []),
        str(PROJECT_ROOT / "stages" / f"{script}.py"),
        *map(str, args),
        "--params",
        str(cwd / "params.yaml"),
    ]
    started = time.monotonic()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=180)
    seconds = time.monotonic() - started
    imported_us = sum(int(us) for us in re.findall(r"^import time:\s+(\d+) \|", done.stderr, re.M))
    return Stage(done.returncode, done.stdout, done.stderr, seconds, imported_us / 1e6)


def assert_refused(stage: Stage, *needles: str) -> None:
    """Exit status 1 with a one-line `error:` naming each needle, not a traceback."""
    assert stage.returncode == 1, f"exit {stage.returncode}\n{stage.stderr[-3000:]}"
    assert "error: " in stage.stderr and "Traceback" not in stage.stderr, stage.stderr[-3000:]
    for needle in needles:
        assert needle in stage.stderr, f"{needle!r} not in stderr:\n{stage.stderr[-3000:]}"
