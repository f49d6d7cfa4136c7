"""A real OpenSSH server (Debian's `openssh-server`) on 127.0.0.1 and a free port, for tests.

Throwaway keys made on the spot: a host key, and a client key that is its only way in (no
passwords). The client side is a home folder with `.ssh/known_hosts` naming the host key, as a
user's would be. Stopped by its PID, whatever the test did.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mlflow_server import free_port
from processes import stop

SSHD = Path("/usr/sbin/sshd")


@dataclass(frozen=True)
class SSHServer:
    port: int
    user: str
    client_key: Path  # private key the server accepts
    home: Path  # a HOME whose .ssh/known_hosts names the server's host key
    host_key: Path  # the server's private host key

    def url(self, path: Path) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}{path}"


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


@contextlib.contextmanager
def sshd(folder: Path) -> Iterator[SSHServer]:
    if not SSHD.is_file():
        reason = "OpenSSH's server is not installed: apt-get install -y openssh-server"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    folder.mkdir(parents=True, exist_ok=True)
    host_key, client_key = folder / "host_key", folder / "client_key"
    _keygen(host_key)
    _keygen(client_key)
    authorized = folder / "authorized_keys"
    shutil.copy(f"{client_key}.pub", authorized)
    port, user = free_port(), getpass.getuser()
    config = folder / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nPidFile {folder / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {authorized}\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
        "PermitRootLogin prohibit-password\nSubsystem sftp internal-sftp\n"
    )
    home = folder / "home"
    (home / ".ssh").mkdir(parents=True)
    host_public = Path(f"{host_key}.pub").read_text().split()
    (home / ".ssh" / "known_hosts").write_text(
        f"[127.0.0.1]:{port} {host_public[0]} {host_public[1]}\n"
    )
    with contextlib.suppress(PermissionError):  # not root: the package's own must do
        Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation needs it
    # -D: stays in the foreground, so its PID is the Popen's; -e: its log to stderr.
    server = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)],
                              stderr=(folder / "sshd.log").open("w"))  # fmt: skip
    try:
        _wait_for_port(port, server, folder / "sshd.log")
        yield SSHServer(port, user, client_key, home, host_key)
    finally:
        stop(server)


def _wait_for_port(port: int, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        assert server.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, "sshd did not start"
        time.sleep(0.2)
