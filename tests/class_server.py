"""The project's class server (`deeplecture-server start`) for real, on a test PostgreSQL."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mlflow_server import START_TIMEOUT_S, free_port
from postgres_server import Postgres
from processes import stop

ADMIN = "teacher"


@dataclass(frozen=True)
class ClassServer:
    url: str
    pid: int
    seconds_to_start: float  # from the command to /health answering


def server_command(folder: Path, postgres: Postgres, port: int, secrets_file: Path) -> list[str]:
    return [
        str(Path(sys.executable).parent / "deeplecture-server"), "start",
        "--database", postgres.uri("mlflow"),
        "--auth-database", postgres.uri("mlflow_auth"),
        "--artifacts", str(folder / "artifacts"),
        "--secrets", str(secrets_file),
        "--host", "127.0.0.1", "--port", str(port),
        "--admin", ADMIN, "--workers", "1",
    ]  # fmt: skip


@contextlib.contextmanager
def class_server(
    folder: Path, postgres: Postgres, secrets_file: Path, port: int | None = None
) -> Iterator[ClassServer]:
    """Start the server on a free (or the given) loopback port; stop it by PID at the end."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    started = time.monotonic()
    log = (folder / f"server-{port}.log").open("a")
    process = subprocess.Popen(
        server_command(folder, postgres, port, secrets_file), env=env,
        stdout=log, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = started + START_TIMEOUT_S
        while True:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2).read()
                break
            except OSError:
                assert process.poll() is None, (folder / f"server-{port}.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "the class server did not start"
                time.sleep(0.25)
        yield ClassServer(url, process.pid, time.monotonic() - started)
    finally:
        stop(process)
        log.close()
