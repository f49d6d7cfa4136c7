"""`deeplecture-accounts`: student accounts on the class server, from a CSV of names.

    deeplecture-accounts students.csv --server https://mlflow.example.edu \\
        --secrets /srv/deeplecture/server.secrets --credentials-out credentials.csv

For each row (column `username`), through MLflow's own basic-auth API as the admin:
- a new account gets a random password, written with its name to `--credentials-out` (mode
  600; appended to when it exists, for students who join later); an existing one is kept as is;
- the student owns (MANAGE) the experiments `<username>-cifar10`, `<username>-fashion_mnist`
  and `<username>-foundations`, where `DEEPLECTURE_EXPERIMENT_PREFIX=<username>` sends a run,
  and the registered models `<username>-cifar10-cnn74`, ... (one per variant of params.yaml)
  that evaluate makes; nobody else may create names that start with `<username>-` (class_app.py);
- the teacher's reference experiments (`cifar10`, `fashion_mnist`, `foundations`) and
  registered models (`cifar10-cnn74`, ...) are made first, as the admin's, and are readable
  (READ) and so not writable by the student.
Every account reads every other experiment and registered model (the server's default READ): a
class shares its results, and only the owner (and the teacher) can change them.

Before it changes anything, it checks that none of these names is held (EDIT or MANAGE) by an
account other than its owner, e.g. made by another student on a server without the names rule;
if one is, it stops with one line naming each such name and who holds it.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.server import get_app_client

from deeplecture import catalog, project
from deeplecture.params import ParamsError, load_params
from deeplecture.team import holders, names, secrets
from deeplecture.team.secrets import SecretsError

REFERENCE_EXPERIMENTS = catalog.reference_experiments()


@dataclass(frozen=True)
class ProjectNames:
    """The experiments and registered models the project logs to, for one owner."""

    experiments: tuple[str, ...]
    registered_models: tuple[str, ...]

    def of(self, username: str) -> ProjectNames:
        """The same names in `username`'s part of the server."""
        return ProjectNames(
            tuple(names.prefixed(username, name) for name in self.experiments),
            tuple(names.prefixed(username, name) for name in self.registered_models),
        )


class AccountsError(ValueError):
    """A problem with the CSV or the server, in one line."""


def main(argv: list[str] | None = None) -> int:
    # As the server and training do: MLflow reports usage to an outside host unless told not to.
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    parser = argparse.ArgumentParser(
        prog="deeplecture-accounts", description=__doc__.splitlines()[0]
    )
    parser.add_argument("students", type=Path, help="CSV with a column 'username'")
    parser.add_argument("--server", default=os.environ.get("MLFLOW_TRACKING_URI"))
    parser.add_argument("--secrets", type=Path, help="the server's secrets file (admin password)")
    parser.add_argument("--admin", default="admin")
    parser.add_argument("--credentials-out", type=Path, required=True)
    parser.add_argument(
        "--params", type=Path, help="the variants' params.yaml (default: the repository's)"
    )
    args = parser.parse_args(argv)
    try:
        if not args.server:
            raise AccountsError("name the server: --server URL (or set MLFLOW_TRACKING_URI)")
        usernames = read_usernames(args.students)
        reference = project_names(args.params or project.project_root() / "params.yaml")
        _log_in_as_admin(args.admin, args.secrets)
        created = set_up_accounts(args.server, usernames, reference)
    except (AccountsError, SecretsError, ParamsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if created:
        append_credentials(args.credentials_out, created)
    print(
        f"{len(usernames)} accounts ready ({len(created)} new, passwords in "
        f"{args.credentials_out}; {len(usernames) - len(created)} kept)"
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
    usernames: list[str] = []
    for line, row in enumerate(rows, start=2):
        name = (row["username"] or "").strip()
        if problem := names.username_problem(name):
            raise AccountsError(f"{path}:{line}: {name!r} {problem}")
        if name in usernames:
            raise AccountsError(f"{path}:{line}: {name!r} is listed twice")
        usernames.append(name)
    return usernames


def project_names(params_file: Path) -> ProjectNames:
    """The teacher's names: the experiments and a registered model per variant of params.yaml."""
    variants = load_params(params_file).variants
    return ProjectNames(REFERENCE_EXPERIMENTS, tuple(names.registered_model_bases(variants)))


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


def set_up_accounts(server: str, usernames: list[str], reference: ProjectNames) -> dict[str, str]:
    """Check that no name is held by someone else, make the teacher's names, then the missing
    accounts, and set every listed account's permissions; return the new accounts' passwords."""
    auth = _auth_client(server)
    tracking = MlflowClient(server)
    try:
        owners = {None: reference, **{name: reference.of(name) for name in usernames}}
        _refuse_names_held_by_others(server, tracking, owners)
        for name in reference.experiments:
            _experiment_id(tracking, name)
        for name in reference.registered_models:
            _registered_model(tracking, name)
        reference_ids = [_experiment_id(tracking, name) for name in reference.experiments]
        created = {}
        for name in usernames:
            if holders.found(auth.get_user, name):
                state = "kept"
            else:
                created[name] = secrets.random_password()
                auth.create_user(name, created[name])
                state = "created"
            owned = reference.of(name)
            for experiment in owned.experiments:
                _grant(auth, name, "experiment", _experiment_id(tracking, experiment), "MANAGE")
            for model in owned.registered_models:
                # one not there yet is made by their evaluate, as theirs
                if holders.found(tracking.get_registered_model, model):
                    _grant(auth, name, "registered_model", model, "MANAGE")
            for experiment_id in reference_ids:
                _grant(auth, name, "experiment", experiment_id, "READ")
            print(
                f"{name}: {state}; owns {', '.join(owned.experiments)} and the registered "
                f"models {names.prefixed(name, '*')}; reads {', '.join(reference.experiments)}"
            )
    except MlflowException as error:
        raise AccountsError(
            f"the server {server} refused: {' '.join(error.message.split())}"
        ) from error
    return created


def _auth_client(server: str):
    with warnings.catch_warnings():
        # Its import reaches MLflow's server modules, whose Starlette import warns on stderr
        # about Starlette's own plans: noise in the one line the tool prints when it fails.
        warnings.filterwarnings("ignore", module=r"mlflow\.server")
        return get_app_client("basic-auth", tracking_uri=server)


def _refuse_names_held_by_others(
    server: str, tracking: MlflowClient, owners: dict[str | None, ProjectNames]
) -> None:
    """One line naming every name that an account other than its owner (None: the teacher)
    may change; nothing is made or granted before this check."""
    held = holders.write_holders(server)
    taken = []
    for owner, owned in owners.items():
        for experiment in owned.experiments:
            found = tracking.get_experiment_by_name(experiment)
            others = found and holders.of(held, "experiment", found.experiment_id, owner)
            if others:
                taken.append(f"experiment {experiment} (held by {holders.describe(others)})")
        for model in owned.registered_models:
            others = holders.of(held, "registered_model", model, owner)
            if others and holders.found(tracking.get_registered_model, model):
                taken.append(f"registered model {model} (held by {holders.describe(others)})")
    if taken:
        raise AccountsError(
            f"names taken by another account: {'; '.join(taken)}. Delete them (they may hold "
            "that account's runs and versions) or revoke those permissions, then rerun"
        )


def _experiment_id(client: MlflowClient, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    return experiment.experiment_id if experiment else client.create_experiment(name)


def _registered_model(client: MlflowClient, name: str) -> None:
    # Made empty, as the admin's, so that the name is the teacher's before any student exists.
    if not holders.found(client.get_registered_model, name):
        client.create_registered_model(name)


def _grant(auth, username: str, kind: str, resource_id: str, permission: str) -> None:
    # A second grant of the same resource is refused (RESOURCE_ALREADY_EXISTS): replace it.
    try:
        auth.revoke_user_permission(username, kind, resource_id)
    except MlflowException as error:
        if error.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
    auth.grant_user_permission(username, kind, resource_id, permission)


def append_credentials(path: Path, created: dict[str, str]) -> None:
    """Add `username,password` rows to `path` (mode 600), the header first if it is new."""
    existing = path.read_text() if path.exists() else "username,password\n"
    rows = "".join(f"{name},{password}\n" for name, password in created.items())
    secrets.write_private(path, existing + rows)
