"""The class server's secrets: read from the environment or from a file only its owner can read.

Never from the command line (any user on the machine can read a process's arguments) and never
from params.yaml (committed, and recorded by DVC and MLflow). The names are MLflow's own where
MLflow has one, so the same variables work with a bare `mlflow server` too.
"""

from __future__ import annotations

import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

ADMIN_PASSWORD = "MLFLOW_AUTH_ADMIN_PASSWORD"
SECRET_KEY = "MLFLOW_FLASK_SERVER_SECRET_KEY"  # signs the UI's sessions and CSRF tokens
DATABASE_PASSWORD = "DEEPLECTURE_DATABASE_PASSWORD"  # PostgreSQL's, handed to libpq as PGPASSWORD
NAMES = (ADMIN_PASSWORD, SECRET_KEY, DATABASE_PASSWORD)
MIN_PASSWORD_LENGTH = 12  # MLflow's basic-auth refuses shorter passwords


class SecretsError(ValueError):
    """A secret is missing, too weak, or kept where others can read it; the message says which."""


@dataclass(frozen=True)
class ServerSecrets:
    admin_password: str
    secret_key: str
    database_password: str

    def __repr__(self) -> str:  # never printed by accident, e.g. in a traceback's locals
        return "ServerSecrets(<hidden>)"


def load(file: Path | None, environ: dict[str, str] | None = None) -> ServerSecrets:
    """Each secret from the environment if set there, else from `file` (NAME=value lines)."""
    environ = os.environ if environ is None else environ
    from_file = read_file(file) if file else {}
    values = {}
    for name in NAMES:
        value = environ.get(name) or from_file.get(name)
        if not value:
            where = f"{file} or the environment" if file else "the environment (or --secrets FILE)"
            raise SecretsError(f"{name} is not set in {where}")
        values[name] = value
    if len(values[ADMIN_PASSWORD]) < MIN_PASSWORD_LENGTH:
        raise SecretsError(f"{ADMIN_PASSWORD} must be at least {MIN_PASSWORD_LENGTH} characters")
    return ServerSecrets(values[ADMIN_PASSWORD], values[SECRET_KEY], values[DATABASE_PASSWORD])


def read_file(path: Path) -> dict[str, str]:
    """NAME=value lines (blank lines and # comments skipped) of a file only its owner can read."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except OSError as error:
        raise SecretsError(f"cannot read the secrets file {path}: {error.strerror}") from error
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SecretsError(
            f"{path} can be read by other users (mode {stat.filemode(mode)}): chmod 600 {path}"
        )
    values = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, equals, value = line.partition("=")
        if not equals or name.strip() not in NAMES:
            raise SecretsError(
                f"{path}:{number}: expected NAME=value with NAME one of {', '.join(NAMES)}"
            )
        values[name.strip()] = value.strip()
    return values


def write_new_file(path: Path, database_password: str | None = None) -> None:
    """Create `path` (mode 600) with a random admin password and secret key; refuse to replace one.

    The database password is PostgreSQL's own, chosen when its role was made: given, or left for
    the teacher to fill in.
    """
    path = Path(path)
    lines = [
        "# deeplecture-server secrets: keep this file private (mode 600), never commit it.",
        f"{ADMIN_PASSWORD}={random_password()}",
        f"{SECRET_KEY}={secrets.token_hex(32)}",
        f"{DATABASE_PASSWORD}={database_password or ''}",
    ]
    # O_EXCL: an existing file (with the passwords students were given) is never overwritten.
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as error:
        raise SecretsError(f"{path} exists already: remove it first to make new secrets") from error
    with os.fdopen(descriptor, "w") as file:
        file.write("\n".join(lines) + "\n")


def random_password() -> str:
    """A password for an account: 20 URL-safe characters (about 120 bits)."""
    return secrets.token_urlsafe(15)


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` readable by its owner only (created so: never briefly public)."""
    path = Path(path)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)  # an existing file keeps its mode through O_CREAT
    with os.fdopen(descriptor, "w") as file:
        file.write(text)
