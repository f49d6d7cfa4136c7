"""The class server's settings, secrets and account lists, checked before anything starts.

(The server, the accounts and the permissions for real: tests/test_class_server.py.)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from conftest import PROJECT_ROOT
from deeplecture import registry, tracking
from deeplecture.params import load_params
from deeplecture.team import accounts, names, secrets, server


def test_a_new_secrets_file_is_private_random_and_never_overwritten(tmp_path) -> None:
    path = tmp_path / "server.secrets"
    secrets.write_new_file(path)
    assert path.stat().st_mode & 0o777 == 0o600
    values = secrets.read_file(path)
    assert len(values[secrets.ADMIN_PASSWORD]) >= secrets.MIN_PASSWORD_LENGTH
    assert len(values[secrets.SECRET_KEY]) == 64
    with pytest.raises(secrets.SecretsError, match="exists already"):
        secrets.write_new_file(path)
    assert secrets.read_file(path) == values  # the passwords handed out still hold

    other = tmp_path / "other.secrets"
    secrets.write_new_file(other)
    assert secrets.read_file(other)[secrets.ADMIN_PASSWORD] != values[secrets.ADMIN_PASSWORD]


def test_secrets_others_can_read_or_that_are_missing_or_weak_are_refused(tmp_path) -> None:
    path = tmp_path / "server.secrets"
    path.write_text(f"{secrets.ADMIN_PASSWORD}=short\n{secrets.SECRET_KEY}=k\n")
    path.chmod(0o640)
    with pytest.raises(secrets.SecretsError, match="chmod 600"):
        secrets.load(path, environ={})
    path.chmod(0o600)
    with pytest.raises(secrets.SecretsError, match=secrets.DATABASE_PASSWORD):
        secrets.load(path, environ={})
    with pytest.raises(secrets.SecretsError, match="at least 12 characters"):
        secrets.load(path, environ={secrets.DATABASE_PASSWORD: "db"})
    # The environment wins over the file, name by name.
    loaded = secrets.load(
        path, environ={secrets.DATABASE_PASSWORD: "db", secrets.ADMIN_PASSWORD: "x" * 12}
    )
    assert (loaded.admin_password, loaded.secret_key) == ("x" * 12, "k")
    assert "x" * 12 not in repr(loaded)

    path.write_text("PASSWORD=oops\n")
    with pytest.raises(secrets.SecretsError, match=r"server.secrets:1: expected NAME=value"):
        secrets.read_file(path)


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("postgresql://mlflow@db:5432/runs", "postgresql+psycopg2://mlflow@db:5432/runs"),
        ("postgresql+psycopg2://mlflow@db/runs", "postgresql+psycopg2://mlflow@db/runs"),
    ],
)
def test_a_database_uri_gets_the_psycopg2_driver(uri: str, expected: str) -> None:
    assert server.database_uri(uri, "--database") == expected


@pytest.mark.parametrize(
    ("uri", "problem"),
    [
        ("postgresql://mlflow:hunter2@db/runs", "holds a password"),
        ("sqlite:///mlflow.db", "expected postgresql+psycopg2://"),
        ("postgresql://db/runs", "expected postgresql+psycopg2://"),  # no user
        ("postgresql://mlflow@db", "expected postgresql+psycopg2://"),  # no database
    ],
)
def test_a_database_uri_that_exposes_a_password_or_is_not_postgres_is_refused(
    uri: str, problem: str
) -> None:
    with pytest.raises(server.ServerError, match=re.escape(problem)) as refused:
        server.database_uri(uri, "--database")
    assert "hunter2" not in str(refused.value)


def test_the_account_list_names_the_line_of_a_bad_or_repeated_name(tmp_path) -> None:
    path = tmp_path / "students.csv"
    path.write_text("username,email\nalice,a@example.edu\n bob ,b@example.edu\n")
    assert accounts.read_usernames(path) == ["alice", "bob"]
    for text, message in (
        ("name\nalice\n", "a column 'username'"),
        ("username\nalice\nal ice\n", ":3: 'al ice' is not a user name"),
        ("username\nalice\nalice\n", ":3: 'alice' is listed twice"),
        ("username\n-alice\n", ":2: '-alice' is not a user name"),
        # bob's names (bob-…) would include all of user bob-cifar10's: no '-' in a user name.
        ("username\nbob\nbob-cifar10\n", ":3: 'bob-cifar10' is not a user name (letters"),
        # A student called cifar10 would own the teacher's cifar10-cnn74, ...
        ("username\ncifar10\n", ":2: 'cifar10' is the first part of the teacher's names"),
    ):
        path.write_text(text)
        with pytest.raises(accounts.AccountsError, match=re.escape(message)):
            accounts.read_usernames(path)


def test_the_prefix_names_a_students_experiments_and_registered_models(monkeypatch) -> None:
    monkeypatch.delenv(tracking.PREFIX_VARIABLE, raising=False)
    assert tracking.experiment_name("cifar10") == "cifar10"
    assert registry.registered_model_name("cifar10", "cnn74") == "cifar10-cnn74"
    monkeypatch.setenv(tracking.PREFIX_VARIABLE, "alice")
    assert tracking.experiment_name("foundations") == "alice-foundations"
    assert registry.registered_model_name("cifar10", "cnn74") == "alice-cifar10-cnn74"
    monkeypatch.setenv(tracking.PREFIX_VARIABLE, "alice/../bob")
    with pytest.raises(tracking.TrackingUnavailable, match="letters, digits"):
        tracking.experiment_name("cifar10")


def test_a_students_names_are_those_that_start_with_theirs_and_a_dash() -> None:
    assert names.own_name("bob", "bob-cifar10-cnn79")
    assert not names.own_name("bob", "bobby-cifar10")  # bobby's
    assert not names.own_name("bob", "bob")  # no such name the project makes
    assert not names.own_name("bob", "bob-")
    assert not names.own_name("bob", "cifar10-cnn88")  # the teacher's


def test_the_accounts_tool_knows_every_name_the_project_uses() -> None:
    reference = accounts.project_names(PROJECT_ROOT / "params.yaml")
    variants = load_params(PROJECT_ROOT / "params.yaml").variants
    assert reference.experiments == ("cifar10", "fashion_mnist", "foundations")
    assert set(reference.registered_models) == {
        names.registered_model_base(dataset, variant)
        for dataset, listed in variants.items()
        for variant in listed
    }
    assert {"cifar10-cnn88", "fashion_mnist-fashion"} <= set(reference.registered_models)
    alices = reference.of("alice")
    assert "alice-fashion_mnist" in alices.experiments
    assert "alice-cifar10-cnn74" in alices.registered_models


_CI_VARIABLES = (
    "CI",
    "GITHUB_ACTIONS",
    "PYTEST_CURRENT_TEST",
    "DO_NOT_TRACK",
)  # MLflow: no telemetry
_AFTER_THE_TOOL = """
import sys
from deeplecture.team import accounts
from mlflow.telemetry.utils import is_telemetry_disabled
code = accounts.main([sys.argv[1], "--credentials-out", sys.argv[2], "--server", sys.argv[3]])
print(code, is_telemetry_disabled())
"""


def test_the_accounts_tool_turns_mlflows_telemetry_off(tmp_path) -> None:
    students = tmp_path / "students.csv"
    students.write_text("username\nal ice\n")  # refused before any request: no server needed
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in _CI_VARIABLES and not key.startswith("MLFLOW_")
    }
    done = subprocess.run(
        [sys.executable, "-c", _AFTER_THE_TOOL, str(students), str(tmp_path / "out.csv"),
         "http://127.0.0.1:9"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.stdout.split() == ["1", "True"], done.stdout + done.stderr
