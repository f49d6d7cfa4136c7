"""Stopping a server a test started: by its PID, and waited for, so that nothing outlives it."""

from __future__ import annotations

import signal
import subprocess


def stop(process: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM, a wait of up to `timeout` seconds for a clean exit, then SIGKILL."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
