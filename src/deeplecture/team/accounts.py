"""`deeplecture-accounts`: student accounts on the class server, from a CSV of names.

    deeplecture-accounts students.csv --server https://mlflow.example.edu \\
        --secrets /srv/deeplecture/server.secrets --credentials-out credentials.csv

For each row (column `username`), through MLflow's own basic-auth API as the admin:
- a new account gets a random password, written with its name to `--credentials-out` (mode
  600; appended to when it exists, for students who join later); an existing one is kept as is;
- the student owns (MANAGE) the experiments `<username>-cifar10`, `<username>-fashion_mnist`
  and `<username>-foundations`, where `DEEPLECTURE_EXPERIMENT_PREFIX=<username>` sends a run;
- the teacher's reference experiments (`cifar10`, `fashion_mnist`, `foundations`) are readable
  (READ) and so not writable by the student.
Every account reads every other experiment and registered model (the server's default READ): a
class shares its results, and only the owner (and the teacher) can change them.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import sys
from pathlib import Path

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.server import get_app_client

from deeplecture.team import secrets
from deeplecture.team.secrets import SecretsError

REFERENCE_EXPERIMENTS = ("cifar10", "fashion_mnist", "foundations")
USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # also a valid experiment prefix


class AccountsError(ValueError):
    """A problem with the CSV or the server, in one line."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="deeplecture-accounts", description=__doc__.splitlines()[0]
    )
    parser.add_argument("students", type=Path, help="CSV with a column 'username'")
    parser.add_argument("--server", default=os.environ.get("MLFLOW_TRACKING_URI"))
    parser.add_argument("--secrets", type=Path, help="the server's secrets file (admin password)")
    parser.add_argument("--admin", default="admin")
    parser.add_argument("--credentials-out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        if not args.server:
            raise AccountsError("name the server: --server URL (or set MLFLOW_TRACKING_URI)")
        names = read_usernames(args.students)
        _log_in_as_admin(args.admin, args.secrets)
        created = set_up_accounts(args.server, names)
    except (AccountsError, SecretsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if created:
        append_credentials(args.credentials_out, created)
    print(
        f"{len(names)} accounts ready ({len(created)} new, passwords in "
        f"{args.credentials_out}; {len(names) - len(created)} kept)"
    )
    return 0


def read_usernames(path: Path) -> list[str]:
    """The `username` column of a CSV; a bad, duplicated or missing name names its line."""
    try:
        with path.open(newline="", encoding="utf-8") as file:
            rows = list(csv.DictReader(file))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise AccountsError(f"cannot read {path}: {error}") from error
    if not rows or "username" not in rows[0]:
        raise AccountsError(f"{path}: expected a header line with a column 'username'")
    names: list[str] = []
    for line, row in enumerate(rows, start=2):
        name = (row["username"] or "").strip()
        if not USERNAME.fullmatch(name):
            raise AccountsError(
                f"{path}:{line}: {name!r} is not a user name (letters, digits, '_', '.', '-')"
            )
        if name in names:
            raise AccountsError(f"{path}:{line}: {name!r} is listed twice")
        names.append(name)
    return names


def _log_in_as_admin(admin: str, secrets_file: Path | None) -> None:
    # MLflow's clients read these two variables for every request.
    password = os.environ.get(secrets.ADMIN_PASSWORD)
    if not password and secrets_file:
        password = secrets.read_file(secrets_file).get(secrets.ADMIN_PASSWORD)
    if not password:
        raise AccountsError(
            f"no admin password: set {secrets.ADMIN_PASSWORD} or pass --secrets FILE"
        )
    os.environ["MLFLOW_TRACKING_USERNAME"] = admin
    os.environ["MLFLOW_TRACKING_PASSWORD"] = password


def set_up_accounts(server: str, names: list[str]) -> dict[str, str]:
    """Create missing accounts and set every listed account's permissions; return the new
    accounts' passwords by name."""
    auth = get_app_client("basic-auth", tracking_uri=server)
    tracking = MlflowClient(server)
    try:
        reference = {name: _experiment_id(tracking, name) for name in REFERENCE_EXPERIMENTS}
        created = {}
        for name in names:
            if _exists(auth, name):
                state = "kept"
            else:
                created[name] = secrets.random_password()
                auth.create_user(name, created[name])
                state = "created"
            owned = [f"{name}-{base}" for base in REFERENCE_EXPERIMENTS]
            for experiment in owned:
                _grant(auth, name, _experiment_id(tracking, experiment), "MANAGE")
            for experiment_id in reference.values():
                _grant(auth, name, experiment_id, "READ")
            print(f"{name}: {state}; owns {', '.join(owned)}; reads {', '.join(reference)}")
    except MlflowException as error:
        raise AccountsError(
            f"the server {server} refused: {' '.join(error.message.split())}"
        ) from error
    return created


def _exists(auth, name: str) -> bool:
    try:
        auth.get_user(name)
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            return False
        raise
    return True


def _experiment_id(client: MlflowClient, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    return experiment.experiment_id if experiment else client.create_experiment(name)


def _grant(auth, username: str, experiment_id: str, permission: str) -> None:
    # A second grant of the same resource is refused (RESOURCE_ALREADY_EXISTS): replace it.
    try:
        auth.revoke_user_permission(username, "experiment", experiment_id)
    except MlflowException as error:
        if error.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
    auth.grant_user_permission(username, "experiment", experiment_id, permission)


def append_credentials(path: Path, created: dict[str, str]) -> None:
    """Add `username,password` rows to `path` (mode 600), the header first if it is new."""
    existing = path.read_text() if path.exists() else "username,password\n"
    rows = "".join(f"{name},{password}\n" for name, password in created.items())
    secrets.write_private(path, existing + rows)
