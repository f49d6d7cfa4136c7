"""The class server for real: PostgreSQL, `deeplecture-server`, accounts, a student's pipeline
run, the Model Registry, `mlflow models serve`, concurrent clients and a server that dies.

Everything listens on 127.0.0.1 and free ports, and is stopped by PID (postgres_server.py,
class_server.py). One PostgreSQL cluster and one server serve the whole module.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from class_server import ADMIN, ClassServer, class_server, server_command
from conftest import PROJECT_ROOT, write_params
from deeplecture import registry, tracking
from deeplecture.data.cifar10 import CLASS_NAMES
from deeplecture.foundations.tracking import DEMOS
from deeplecture.team import secrets
from mlflow_server import START_TIMEOUT_S, free_port
from postgres_server import Postgres, postgres
from project_repo import make_project_repo, run_command, smoke_arguments
from training_stage import fails_mid_run_then_resumes, one_error_line, train_process

pytestmark = pytest.mark.slow

DATABASE_PASSWORD = "pg-class-password-7d1e"
STUDENTS = ("alice", "bob")
REFERENCE = ("cifar10", "fashion_mnist", "foundations")
REFERENCE_MODELS = ("cifar10-cnn74", "cifar10-cnn79", "cifar10-cnn84", "cifar10-cnn88",
                    "fashion_mnist-fashion")  # fmt: skip


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("class")


@pytest.fixture(scope="module")
def database() -> Iterator[Postgres]:
    with postgres(("mlflow", "mlflow_auth"), DATABASE_PASSWORD) as running:
        yield running


@pytest.fixture(scope="module")
def secrets_file(folder: Path) -> Path:
    path = folder / "server.secrets"
    _tool("deeplecture-server", "secrets", str(path))
    text = path.read_text().replace(
        "DEEPLECTURE_DATABASE_PASSWORD=", f"DEEPLECTURE_DATABASE_PASSWORD={DATABASE_PASSWORD}"
    )
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def server(folder: Path, database: Postgres, secrets_file: Path) -> Iterator[ClassServer]:
    with class_server(folder, database, secrets_file) as running:
        print(f"class server answered /health {running.seconds_to_start:.1f} s after start")
        yield running


@pytest.fixture(scope="module")
def credentials(folder: Path, server: ClassServer, secrets_file: Path) -> dict[str, str]:
    """The students' accounts, made by `deeplecture-accounts` from a CSV of names."""
    students = folder / "students.csv"
    students.write_text("username\n" + "\n".join(STUDENTS) + "\n")
    out = folder / "credentials.csv"
    _accounts(server, secrets_file, students, out)
    assert out.stat().st_mode & 0o777 == 0o600
    rows = [line.split(",") for line in out.read_text().splitlines()[1:]]
    return dict(rows)


def _admin_password(secrets_file: Path) -> str:
    return secrets.read_file(secrets_file)[secrets.ADMIN_PASSWORD]


def _tool(name: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    done = subprocess.run(
        [str(Path(sys.executable).parent / name), *args],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if check:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


def _accounts(server: ClassServer, secrets_file: Path, students: Path, out: Path, check=True):
    return _tool(
        "deeplecture-accounts", str(students), "--server", server.url,
        "--secrets", str(secrets_file), "--admin", ADMIN, "--credentials-out", str(out),
        check=check,
    )  # fmt: skip


def _request(
    server: ClassServer,
    path: str,
    user: tuple[str, str] | None,
    body: dict | None = None,
    api: str = "api/2.0",
    method: str | None = None,
) -> tuple[int, dict]:
    """One REST call as `user` (name, password), or anonymously: (HTTP status, JSON body, also
    of an error). `api`: also `ajax-api/2.0` (the UI's paths) or `api/3.0`."""
    request = urllib.request.Request(
        f"{server.url}/{api}/mlflow/{path}",
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json"},
        method=method,
    )
    if user:
        token = base64.b64encode(f"{user[0]}:{user[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        try:
            return error.code, json.loads(error.read() or b"{}")
        except ValueError:
            return error.code, {}


def _experiment_id(server: ClassServer, name: str, user: tuple[str, str]) -> str:
    status, body = _request(server, f"experiments/get-by-name?experiment_name={name}", user)
    assert status == 200, (name, status)
    return body["experiment"]["experiment_id"]


def _student_env(url: str, name: str, password: str) -> dict[str, str]:
    """What a student exports to log to the class server under experiments of their own."""
    return {
        "MLFLOW_TRACKING_URI": url,
        "MLFLOW_TRACKING_USERNAME": name,
        "MLFLOW_TRACKING_PASSWORD": password,
        "DEEPLECTURE_EXPERIMENT_PREFIX": name,
    }


# --- starting the server -----------------------------------------------------------------


def test_the_server_runs_mlflow_with_auth_on_postgres_and_no_secret_in_any_command_line(
    server: ClassServer, secrets_file: Path, database: Postgres
) -> None:
    processes = [psutil.Process(server.pid), *psutil.Process(server.pid).children(recursive=True)]
    command_lines = [" ".join(process.cmdline()) for process in processes]
    assert (
        "mlflow server" in command_lines[0] and "--app-name deeplecture-class" in command_lines[0]
    )
    assert database.uri("mlflow") in command_lines[0]
    for secret in (DATABASE_PASSWORD, _admin_password(secrets_file)):
        assert not any(secret in line for line in command_lines)
    assert len(processes) <= 3  # one worker, no job runner: the server's start time
    assert _request(server, "experiments/search?max_results=1", None)[0] == 401


def _start_refused(folder: Path, database: Postgres, secrets_file: Path, *changes) -> str:
    command = server_command(folder, database, free_port(), secrets_file)
    for old, new in changes:
        command[command.index(old)] = new
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stdout + done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: "), done.stderr
    return line


def test_the_server_refuses_secrets_in_sight_and_a_wrong_database_password_in_one_line(
    folder: Path, database: Postgres, secrets_file: Path
) -> None:
    exposed = database.uri("mlflow").replace("mlflow@", f"mlflow:{DATABASE_PASSWORD}@")
    line = _start_refused(folder, database, secrets_file, (database.uri("mlflow"), exposed))
    assert "holds a password" in line and DATABASE_PASSWORD not in line

    readable = folder / "readable.secrets"
    readable.write_text(secrets_file.read_text())
    readable.chmod(0o644)
    line = _start_refused(folder, database, secrets_file, (str(secrets_file), str(readable)))
    assert "can be read by other users" in line and "chmod 600" in line

    wrong = folder / "wrong.secrets"
    wrong.write_text(secrets_file.read_text().replace(DATABASE_PASSWORD, "not-the-password"))
    wrong.chmod(0o600)
    line = _start_refused(folder, database, secrets_file, (str(secrets_file), str(wrong)))
    assert "cannot connect to PostgreSQL" in line and "password authentication failed" in line
    assert "not-the-password" not in line


# --- accounts and what they may do -------------------------------------------------------


def test_accounts_are_made_once_and_a_rerun_keeps_them(
    folder: Path, server: ClassServer, secrets_file: Path, credentials: dict[str, str]
) -> None:
    assert sorted(credentials) == sorted(STUDENTS)
    assert all(len(password) >= 12 for password in credentials.values())
    again = folder / "again.csv"
    done = _accounts(server, secrets_file, folder / "students.csv", again)
    assert "0 new" in done.stdout and not again.exists()  # no password changed, none written

    bad = folder / "bad.csv"
    bad.write_text("username\ncarol\nbad name\n")
    done = _accounts(server, secrets_file, bad, folder / "bad-out.csv", check=False)
    assert done.returncode == 1 and done.stderr.startswith(f"error: {bad}:3: 'bad name'")


def test_students_read_everything_and_write_only_their_own_experiments(
    server: ClassServer, credentials: dict[str, str], secrets_file: Path
) -> None:
    alice = ("alice", credentials["alice"])
    teacher = (ADMIN, _admin_password(secrets_file))
    assert _request(server, "experiments/search?max_results=5", None)[0] == 401
    assert (
        _request(server, "experiments/search?max_results=5", ("alice", "wrong-pass-1234"))[0] == 401
    )

    def create_run(user, experiment: str) -> int:
        experiment_id = _experiment_id(server, experiment, teacher)
        return _request(server, "runs/create", user, {"experiment_id": experiment_id})[0]

    # The teacher's reference experiments: everyone reads them, no student writes them.
    for name in REFERENCE:
        assert _request(server, f"experiments/get-by-name?experiment_name={name}", alice)[0] == 200
        assert create_run(alice, name) == 403
    assert create_run(teacher, "cifar10") == 200
    # Their own: theirs to write. Another student's: readable (README), not writable.
    assert create_run(alice, "alice-cifar10") == 200
    assert _request(server, "experiments/get-by-name?experiment_name=bob-cifar10", alice)[0] == 200
    assert create_run(alice, "bob-cifar10") == 403


# --- names: nobody takes another's experiment or registered model ------------------------


def test_students_create_experiments_and_models_only_under_their_own_prefix(
    server: ClassServer, credentials: dict[str, str], secrets_file: Path
) -> None:
    alice = ("alice", credentials["alice"])
    teacher = (ADMIN, _admin_password(secrets_file))
    # The teacher's reference models are the teacher's before any student logs in.
    for name in REFERENCE_MODELS:
        assert _request(server, f"registered-models/get?name={name}", alice)[0] == 200, name
    for api in ("api/2.0", "ajax-api/2.0"):  # the clients' paths and the UI's
        for name in ("cifar10-cnn88", "bob-cifar10-cnn79", "carol-cifar10-cnn74", "alice"):
            status, body = _request(server, "registered-models/create", alice, {"name": name}, api)
            assert status == 403, (api, name)
            assert "only under names that start with 'alice-'" in body["message"]
        for name in ("cifar10-squat", "bob-cifar10-squat", "carol-cifar10"):
            assert _request(server, "experiments/create", alice, {"name": name}, api)[0] == 403
    # Her own names are hers; a rename out of them is a create by another name.
    status, _ = _request(server, "registered-models/create", alice, {"name": "alice-scratch"})
    assert status == 200
    rename = {"name": "alice-scratch", "new_name": "cifar10-cnn88"}
    assert _request(server, "registered-models/rename", alice, rename)[0] == 403
    status, made = _request(server, "experiments/create", alice, {"name": "alice-scratch"})
    assert status == 200
    rename = {"experiment_id": made["experiment_id"], "new_name": "bob-scratch"}
    assert _request(server, "experiments/update", alice, rename)[0] == 403
    # The model-version and alias calls of the squat: refused on a name that is not hers.
    version = {"name": "cifar10-cnn88", "source": "models:/m-0"}
    assert _request(server, "model-versions/create", alice, version)[0] == 403
    # The teacher is not limited.
    assert _request(server, "experiments/create", teacher, {"name": "teacher-demo"})[0] == 200
    for name in ("alice-scratch", "teacher-demo"):
        _delete_model(server, teacher, name)
    for name in ("alice-scratch", "teacher-demo"):
        experiment_id = (
            _request(server, f"experiments/get-by-name?experiment_name={name}", teacher)[1]
            .get("experiment", {})
            .get("experiment_id")
        )
        if experiment_id:
            _request(server, "experiments/delete", teacher, {"experiment_id": experiment_id})


def _delete_model(server: ClassServer, teacher, name: str) -> None:
    # Deleting a registered model also drops every grant on its name (MLflow's basic-auth).
    _request(server, "registered-models/delete", teacher, {"name": name}, method="DELETE")


def _grant(server: ClassServer, teacher, user: str, kind: str, resource: str, how: str) -> None:
    body = {"username": user, "resource_type": kind, "resource_id": resource, "permission": how}
    assert _request(server, "users/permissions/grant", teacher, body, "api/3.0")[0] == 200


def _revoke(server: ClassServer, teacher, user: str, kind: str, resource: str) -> None:
    body = {"username": user, "resource_type": kind, "resource_id": resource}
    assert _request(server, "users/permissions/revoke", teacher, body, "api/3.0")[0] == 200


def _register_as(user: tuple[str, str], url: str, variant: str, capsys) -> str:
    """evaluate's registration of a `variant` model as `user` (prefix: theirs, or none for the
    teacher): its stderr."""
    record = {"variant": variant, "profile": "full", "data_digest": "0" * 64}
    payload = {"test_accuracy": 0.8, "lecture_accuracy": 0.79}
    env = _student_env(url, *user)
    env[tracking.PREFIX_VARIABLE] = "" if user[0] == ADMIN else user[0]
    capsys.readouterr()
    with _environ(env):
        assert registry.register(record, "m-0", "cifar10", payload) is None
    return capsys.readouterr().err


def test_names_taken_before_the_rule_stop_the_accounts_tool_and_evaluate_in_one_line(
    folder: Path,
    server: ClassServer,
    credentials: dict[str, str],
    secrets_file: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    """A late joiner's experiment and the teacher's model, made by students on a server without
    the names rule (here by the teacher's hand, as the rule now refuses students)."""
    bob = ("bob", credentials["bob"])
    teacher = (ADMIN, _admin_password(secrets_file))
    assert _request(server, "experiments/create", bob, {"name": "carol-fashion_mnist"})[0] == 403
    _, made = _request(server, "experiments/create", teacher, {"name": "carol-fashion_mnist"})
    squatted = made["experiment_id"]
    _grant(server, teacher, "bob", "experiment", squatted, "MANAGE")
    _grant(server, teacher, "alice", "registered_model", "cifar10-cnn79", "MANAGE")
    assert (
        _request(server, "registered-models/create", teacher, {"name": "bob-cifar10-cnn79"})[0]
        == 200
    )
    _grant(server, teacher, "alice", "registered_model", "bob-cifar10-cnn79", "MANAGE")
    late = folder / "late.csv"
    late.write_text("username\nalice\nbob\ncarol\n")
    out = folder / "late-credentials.csv"
    try:
        done = _accounts(server, secrets_file, late, out, check=False)
        assert done.returncode == 1, done.stdout + done.stderr
        (line,) = done.stderr.splitlines() or [done.stderr]
        assert line.startswith("error: names taken by another account: "), done.stderr
        assert "experiment carol-fashion_mnist (held by bob (MANAGE))" in line
        assert "registered model cifar10-cnn79 (held by alice (MANAGE))" in line
        assert "registered model bob-cifar10-cnn79 (held by alice (MANAGE))" in line
        assert not out.exists()  # nothing made: no carol, no password
        assert _request(server, "users/get?username=carol", teacher)[0] == 404

        (line,) = _register_as(teacher, server.url, "cnn79", capsys).splitlines()
        assert line.startswith("warning: model not registered: ")
        assert "cifar10-cnn79 is also held by alice (MANAGE)" in line
        (line,) = _register_as(bob, server.url, "cnn79", capsys).splitlines()
        assert "bob-cifar10-cnn79 exists and another account holds it" in line
    finally:
        _revoke(server, teacher, "bob", "experiment", squatted)
        _revoke(server, teacher, "alice", "registered_model", "cifar10-cnn79")
        _delete_model(server, teacher, "bob-cifar10-cnn79")

    # Taken back by the teacher: carol joins and owns her names; bob cannot touch them.
    done = _accounts(server, secrets_file, late, out)
    assert "carol: created; owns carol-cifar10, carol-fashion_mnist" in done.stdout
    carol = ("carol", dict(line.split(",") for line in out.read_text().splitlines()[1:])["carol"])
    for experiment in ("carol-cifar10", "carol-fashion_mnist"):
        experiment_id = _experiment_id(server, experiment, teacher)
        assert _request(server, "runs/create", carol, {"experiment_id": experiment_id})[0] == 200
        assert _request(server, "runs/create", bob, {"experiment_id": experiment_id})[0] == 403
        assert (
            _request(server, "experiments/delete", bob, {"experiment_id": experiment_id})[0] == 403
        )
    status, _ = _request(server, "registered-models/create", carol, {"name": "carol-cifar10-cnn74"})
    assert status == 200
    version = {"name": "carol-cifar10-cnn74", "source": "models:/m-0"}
    assert _request(server, "model-versions/create", bob, version)[0] == 403
    # Nobody else holds them now: evaluate registers into them.
    for user, name in ((carol, "carol-cifar10-cnn74"), (teacher, "cifar10-cnn79")):
        with _environ(_student_env(server.url, *user)):
            assert registry.held_elsewhere(name) is None, (user[0], name)
    _delete_model(server, teacher, "carol-cifar10-cnn74")


def test_a_wrong_password_fails_the_train_stage_in_seconds_with_nothing_written(
    tmp_path: Path, tiny_data: Path, server: ClassServer, credentials: dict[str, str]
) -> None:
    write_params(tmp_path, {"train.cnn74.epochs": 1})
    env = _student_env(server.url, "alice", "not-alices-password")
    with _environ(env):
        started = time.monotonic()
        process = train_process(tmp_path, tiny_data, server.url)
        _, stderr = process.communicate(timeout=120)
    assert process.returncode == 1, stderr[-3000:]
    line = one_error_line(stderr)
    assert "refused your credentials" in line and "MLFLOW_TRACKING_PASSWORD" in line
    assert "not-alices-password" not in stderr
    assert time.monotonic() - started < 30  # imports, then one refused request
    assert not (tmp_path / "out").exists() and not list((tmp_path / "checkpoints").glob("*/*"))


def test_a_student_logging_to_the_teachers_experiment_is_told_how_to_log_to_their_own(
    tmp_path: Path, tiny_data: Path, server: ClassServer, credentials: dict[str, str]
) -> None:
    write_params(tmp_path, {"train.cnn74.epochs": 1})
    env = {
        **_student_env(server.url, "alice", credentials["alice"]),
        "DEEPLECTURE_EXPERIMENT_PREFIX": "",
    }
    with _environ(env):
        process = train_process(tmp_path, tiny_data, server.url)
        _, stderr = process.communicate(timeout=120)
    assert process.returncode == 1, stderr[-3000:]
    line = one_error_line(stderr)
    assert "does not let your account" in line and "DEEPLECTURE_EXPERIMENT_PREFIX" in line


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# --- a student's pipeline run, the registry and the model server -------------------------


@pytest.fixture(scope="module")
def student_run(
    tmp_path_factory: pytest.TempPathFactory, server: ClassServer, credentials: dict[str, str]
) -> tuple[Path, str]:
    """`dvc exp run` at SMOKE_SETTINGS in a fresh project copy, as alice: (repo, its output)."""
    repo = make_project_repo(tmp_path_factory.mktemp("student"))
    env = _student_env(server.url, "alice", credentials["alice"])
    started = time.monotonic()
    output = run_command(["dvc", "exp", "run", *smoke_arguments()], repo, env)
    print(f"smoke run against the class server: {time.monotonic() - started:.0f} s")
    return repo, output


def test_a_students_run_lands_on_the_server_with_models_figures_and_registered_versions(
    server: ClassServer, credentials: dict[str, str], student_run: tuple[Path, str]
) -> None:
    alice = ("alice", credentials["alice"])
    experiment_id = _experiment_id(server, "alice-cifar10", alice)
    status, found = _request(server, "runs/search", alice, {"experiment_ids": [experiment_id]})
    runs = [run for run in found["runs"] if run["info"]["status"] == "FINISHED"]
    variants = sorted(
        tag["value"] for run in runs for tag in run["data"]["tags"] if tag["key"] == "variant"
    )
    assert variants == ["cnn74", "cnn79", "cnn84", "cnn88"]
    for run in runs:
        # Artifacts went through the server's proxy, not to a path of the student's machine.
        assert run["info"]["artifact_uri"].startswith("mlflow-artifacts:")
        metrics = {metric["key"] for metric in run["data"]["metrics"]}
        assert {"test_accuracy", "val_accuracy"} <= metrics
    status, models = _request(
        server, "logged-models/search", alice, {"experiment_ids": [experiment_id]}
    )
    assert status == 200
    names = sorted(model["info"]["name"] for model in models["models"])
    assert names == ["cnn74", "cnn79", "cnn84", "cnn88"]
    for model in models["models"]:
        linked = {metric["key"]: metric for metric in model["data"]["metrics"]}
        assert linked["test_accuracy"]["dataset_name"] == "cifar10-test"

    for variant in ("cnn74", "cnn79", "cnn84", "cnn88"):
        name = f"alice-cifar10-{variant}"
        status, alias = _request(server, f"registered-models/alias?name={name}&alias=smoke", alice)
        assert status == 200, name
        tags = {tag["key"]: tag["value"] for tag in alias["model_version"]["tags"]}
        assert tags["profile"] == "smoke"
    # The foundations demos, figures included, in the student's own foundations experiment.
    foundations = _experiment_id(server, "alice-foundations", alice)
    status, found = _request(server, "runs/search", alice, {"experiment_ids": [foundations]})
    assert sorted(run["info"]["run_name"] for run in found["runs"]) == sorted(DEMOS)
    least_squares = next(run for run in found["runs"] if run["info"]["run_name"] == "least_squares")
    status, listed = _request(
        server, f"artifacts/list?run_id={least_squares['info']['run_id']}&path=figures", alice
    )
    assert [item["path"] for item in listed["files"]] == ["figures/least_squares.png"]


def test_no_credential_reaches_params_logs_the_lock_file_metrics_the_report_or_mlflow(
    server: ClassServer, credentials: dict[str, str], student_run: tuple[Path, str]
) -> None:
    repo, output = student_run
    password = credentials["alice"]
    assert password not in output
    for path in repo.rglob("*"):
        if path.is_file() and ".git" not in path.parts and path.stat().st_size < 5_000_000:
            assert password.encode() not in path.read_bytes(), path
    alice = ("alice", password)
    experiment_id = _experiment_id(server, "alice-cifar10", alice)
    _, found = _request(server, "runs/search", alice, {"experiment_ids": [experiment_id]})
    assert password not in json.dumps(found)


def test_the_registered_model_is_served_and_names_the_class_of_a_sample_image(
    tmp_path: Path, server: ClassServer, credentials: dict[str, str], student_run
) -> None:
    with tarfile.open(PROJECT_ROOT / "data/sample/cifar10-sample.tar.gz") as archive:
        member = next(m for m in archive.getmembers() if m.name.startswith("test/cat/"))
        image = archive.extractfile(member).read()
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")},
        **_student_env(server.url, "alice", credentials["alice"]),
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    serving = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "models", "serve",
         "-m", "models:/alice-cifar10-cnn74@smoke", "--env-manager", "local",
         "--host", "127.0.0.1", "--port", str(port)],
        env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        _wait_until_up(f"http://127.0.0.1:{port}/ping", serving)
        body = {
            "dataframe_split": {"columns": ["image"], "data": [[base64.b64encode(image).decode()]]}
        }
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations", data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=60) as response:
            (prediction,) = json.loads(response.read())["predictions"]
    finally:
        serving.terminate()
        serving.wait(timeout=30)
    names = CLASS_NAMES
    assert prediction["class"] in names
    assert sum(prediction[name] for name in names) == pytest.approx(1, abs=1e-4)
    assert prediction["class"] == max(names, key=prediction.get)


def _wait_until_up(url: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            assert process.poll() is None, process.stderr.read()[-3000:]
            assert time.monotonic() < deadline, f"{url} did not answer"
            time.sleep(0.5)


# --- load and faults ---------------------------------------------------------------------

CLIENTS, POINTS = 4, 500
_LOGGING_CLIENT = """
import sys, mlflow
client = mlflow.MlflowClient()
run_id = sys.argv[1]
for step in range(int(sys.argv[2])):
    client.log_metric(run_id, "load", float(step), step=step)
"""


def test_four_clients_logging_at_once_store_every_point(
    server: ClassServer, credentials: dict[str, str]
) -> None:
    alice = ("alice", credentials["alice"])
    experiment_id = _experiment_id(server, "alice-cifar10", alice)
    run_ids = [
        _request(server, "runs/create", alice, {"experiment_id": experiment_id})[1]["run"]["info"][
            "run_id"
        ]
        for _ in range(CLIENTS)
    ]
    env = {**os.environ, **_student_env(server.url, *alice)}
    started = time.monotonic()
    clients = [
        subprocess.Popen(
            [sys.executable, "-c", _LOGGING_CLIENT, run_id, str(POINTS)],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for run_id in run_ids
    ]
    for client in clients:
        _, stderr = client.communicate(timeout=600)
        assert client.returncode == 0, stderr[-3000:]
    seconds = time.monotonic() - started
    print(f"{CLIENTS} clients x {POINTS} metric points: {seconds:.1f} s "
          f"({CLIENTS * POINTS / seconds:.0f} points/s)")  # fmt: skip
    for run_id in run_ids:
        status, history = _request(
            server, f"metrics/get-history?run_id={run_id}&metric_key=load&max_results=1000", alice
        )
        assert status == 200
        assert sorted(int(metric["step"]) for metric in history["metrics"]) == list(range(POINTS))


def test_the_server_stopped_mid_run_fails_the_stage_fast_and_a_rerun_resumes(
    tmp_path: Path,
    tiny_data: Path,
    folder: Path,
    database: Postgres,
    secrets_file: Path,
    credentials: dict[str, str],
) -> None:
    port = free_port()
    second = contextlib.ExitStack()
    url = second.enter_context(class_server(folder, database, secrets_file, port)).url
    try:
        with _environ(_student_env(url, "alice", credentials["alice"])):
            fails_mid_run_then_resumes(
                tmp_path, tiny_data, url,
                break_store=second.close,
                mend_store=lambda: second.enter_context(
                    class_server(folder, database, secrets_file, port)
                ),
            )  # fmt: skip
    finally:
        second.close()
