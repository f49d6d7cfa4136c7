"""A real PostgreSQL (Debian's `postgresql` package) in a temporary folder, for tests.

A cluster made by `initdb`, listening on 127.0.0.1 and a free port only (its socket in the same
folder), with a role and the databases the class server needs; stopped by `pg_ctl stop` on its
PID file, whatever the test did. `initdb` refuses to run as root (SCALE.md): as root, the cluster
belongs to the `postgres` user the package creates.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mlflow_server import free_port

BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


@dataclass(frozen=True)
class Postgres:
    port: int
    user: str
    password: str

    def uri(self, database: str) -> str:
        """The URI the class server takes: no password in it (that goes by PGPASSWORD)."""
        return f"postgresql+psycopg2://{self.user}@127.0.0.1:{self.port}/{database}"


def postgres_bin() -> Path:
    """The folder of `initdb` and `pg_ctl`; a test that needs them fails (in CI) or is skipped
    (on a machine without the package) with the command that installs them."""
    for folder in BIN_DIRS:
        if (folder / "initdb").is_file():
            return folder
    reason = "PostgreSQL is not installed: apt-get install -y postgresql"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@contextlib.contextmanager
def postgres(databases: tuple[str, ...], password: str) -> Iterator[Postgres]:
    """A running cluster with role `mlflow` (`password`) owning `databases`.

    Its folder is a temporary one of its own directly under the system's temporary folder:
    pytest's are private to their owner, out of reach of the `postgres` user."""
    binaries = postgres_bin()
    as_owner: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="deeplecture-pg-"))
    if os.geteuid() == 0:
        as_owner = ["runuser", "-u", "postgres", "--"]
        owner = pwd.getpwnam("postgres")
        os.chown(folder, owner.pw_uid, owner.pw_gid)
    data, port = folder / "data", free_port()

    def run(*command: str) -> None:
        done = subprocess.run(
            [*as_owner, *command], capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, f"{command[0]} failed: {done.stdout}{done.stderr}"

    run(str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
    # trust for the socket (the fixture's own setup), passwords over TCP (what the server uses).
    (data / "pg_hba.conf").write_text(
        "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n"
    )
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {folder}"
    run(str(binaries / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "log"),
        "-w", "start")  # fmt: skip
    try:
        psql = [str(binaries / "psql"), "-h", str(folder), "-p", str(port), "-U", "postgres",
                "-v", "ON_ERROR_STOP=1", "-q", "-c"]  # fmt: skip
        run(*psql, f"CREATE ROLE mlflow LOGIN PASSWORD '{password}'")
        for database in databases:
            run(*psql, f"CREATE DATABASE {database} OWNER mlflow")
        yield Postgres(port, "mlflow", password)
    finally:
        subprocess.run(
            [*as_owner, str(binaries / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
            capture_output=True, timeout=60, check=False,
        )  # fmt: skip
        shutil.rmtree(folder, ignore_errors=True)
