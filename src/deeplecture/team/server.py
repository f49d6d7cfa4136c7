"""`deeplecture-server`: the class's MLflow tracking server, on PostgreSQL, with accounts.

    deeplecture-server secrets /srv/deeplecture/server.secrets      # once: random passwords, 600
    deeplecture-server start \\
        --database postgresql+psycopg2://mlflow@127.0.0.1:5432/mlflow \\
        --auth-database postgresql+psycopg2://mlflow@127.0.0.1:5432/mlflow_auth \\
        --artifacts /srv/deeplecture/artifacts --secrets /srv/deeplecture/server.secrets

`start` checks what it is given, then replaces itself with `mlflow server` (same PID, so a
service manager's SIGTERM stops MLflow itself): MLflow's own basic-auth app with one rule added
(class_app.py: a student names experiments and models only `<username>-…`), both stores on
PostgreSQL, artifacts proxied by the server (clients need no storage credentials), telemetry off,
bound to 127.0.0.1 unless `--host` says otherwise. The secrets reach MLflow and libpq through the
environment only (secrets.py); anything after `--` is passed to `mlflow server` as it is.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from deeplecture.team import secrets
from deeplecture.team.secrets import SecretsError, ServerSecrets

APP_NAME = "deeplecture-class"  # pyproject.toml's mlflow.app entry point: class_app.create_app
DRIVER = "postgresql+psycopg2"  # SQLAlchemy's name for PostgreSQL through psycopg2 (SCALE.md)
LOOPBACK = ("127.0.0.1", "localhost", "::1")
DEFAULT_PERMISSION = "READ"  # every account reads every experiment and model; writes its own
CONNECT_TIMEOUT_S = 5
# MLflow checks a password with PBKDF2 on every request: measured here, 4 clients got 5 requests
# a second in all. Caching a successful check for a minute lifts that, at MLflow's documented
# price: a changed or removed password may still work on another worker for up to a minute.
AUTH_CACHE_SECONDS = 60


class ServerError(ValueError):
    """What is wrong with the server's settings, in one line."""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    own, passed_on = _split_at_double_dash(argv)
    args = _parser().parse_args(own)
    try:
        if args.command == "secrets":
            secrets.write_new_file(args.file)
            print(f"wrote {args.file} (mode 600): fill in {secrets.DATABASE_PASSWORD}")
            return 0
        command, environ = server_command(args, secrets.load(args.secrets), passed_on)
    except (SecretsError, ServerError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(
        f"deeplecture-server: http://{args.host}:{args.port} (runs: {args.database}; accounts: "
        f"{args.auth_database}; artifacts: {args.artifacts})",
        flush=True,
    )
    if args.host not in LOOPBACK:
        print(
            "WARNING: basic auth sends passwords as plain text over HTTP: serve the class "
            "through an HTTPS reverse proxy",
            file=sys.stderr,
            flush=True,
        )
    os.execve(command[0], command, environ)  # never returns


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deeplecture-server", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    made = commands.add_parser("secrets", help="create a secrets file with random passwords")
    made.add_argument("file", type=Path)
    start = commands.add_parser("start", help="start the MLflow server (args after -- go to it)")
    start.add_argument("--database", required=True, help=f"{DRIVER}://USER@HOST:PORT/DB, runs")
    start.add_argument("--auth-database", required=True, help="the same form, for the accounts")
    start.add_argument("--artifacts", required=True, help="a folder, or s3://bucket/prefix")
    start.add_argument("--secrets", type=Path, help="NAME=value file, mode 600 (secrets.py)")
    start.add_argument("--host", default="127.0.0.1", help="address to listen on")
    start.add_argument("--port", type=int, default=5000)
    start.add_argument("--admin", default="admin", help="the teacher's (admin) account name")
    start.add_argument("--workers", type=int, default=2, help="server processes (MLflow's: 4)")
    return parser


def _split_at_double_dash(argv: list[str]) -> tuple[list[str], list[str]]:
    if "--" in argv:
        index = argv.index("--")
        return argv[:index], argv[index + 1 :]
    return argv, []


def server_command(
    args: argparse.Namespace, server_secrets: ServerSecrets, passed_on: list[str]
) -> tuple[list[str], dict[str, str]]:
    """The `mlflow server` command line and environment for `args`, after checking them."""
    for module, package in (("flask_wtf", "mlflow[auth]"), ("psycopg2", "psycopg2-binary")):
        if importlib.util.find_spec(module) is None:
            raise ServerError(f"{package} is not installed: pip install -e '.[server]'")
    if not importlib.metadata.entry_points(group="mlflow.app", name=APP_NAME):
        # An install older than the app: mlflow server would fail in each worker instead.
        raise ServerError(f"the MLflow app {APP_NAME} is not installed: pip install -e '.[server]'")
    database = database_uri(args.database, "--database")
    auth_database = database_uri(args.auth_database, "--auth-database")
    for uri in {database, auth_database}:
        check_database(uri, server_secrets.database_password)
    artifacts = _artifacts_destination(args.artifacts)
    config = _write_auth_config(auth_database, args.admin)
    mlflow = shutil.which(
        "mlflow", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    )
    if mlflow is None:
        raise ServerError("the mlflow command is not on PATH: pip install -e '.[server]'")
    command = [
        mlflow, "server",
        "--app-name", APP_NAME,
        "--backend-store-uri", database,
        "--artifacts-destination", artifacts,
        "--host", args.host, "--port", str(args.port),
        "--workers", str(args.workers),
        *passed_on,
    ]  # fmt: skip
    environ = {
        **os.environ,
        "MLFLOW_AUTH_CONFIG_PATH": str(config),
        secrets.ADMIN_PASSWORD: server_secrets.admin_password,
        secrets.SECRET_KEY: server_secrets.secret_key,
        "PGPASSWORD": server_secrets.database_password,  # libpq reads it; no URI carries it
        "MLFLOW_DISABLE_TELEMETRY": "true",
        # The job runner serves GenAI features this project does not use: 13 fewer processes.
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    environ.pop("MLFLOW_TRACKING_URI", None)
    environ.pop(secrets.DATABASE_PASSWORD, None)
    return command, environ


def database_uri(uri: str, option: str) -> str:
    """`uri` with psycopg2 named as its driver; refused if it carries a password."""
    parts = urlsplit(uri)
    scheme = DRIVER if parts.scheme in ("postgresql", "postgres") else parts.scheme
    if scheme != DRIVER:
        raise ServerError(f"{option} {uri!r}: expected {DRIVER}://USER@HOST:PORT/DATABASE")
    if parts.password is not None:
        raise ServerError(
            f"{option}: the URI holds a password, and a command line is readable by every user "
            f"of the machine; put it in {secrets.DATABASE_PASSWORD} (the secrets file) instead"
        )
    if not parts.username or not parts.hostname or not parts.path.strip("/"):
        raise ServerError(f"{option} {uri!r}: expected {DRIVER}://USER@HOST:PORT/DATABASE")
    return parts._replace(scheme=scheme).geturl()


def check_database(uri: str, password: str) -> None:
    """Connect once, so that a wrong password or a database that is not there is one line here,
    not a traceback from each of MLflow's workers."""
    import psycopg2

    parts = urlsplit(uri)
    try:
        psycopg2.connect(
            host=parts.hostname,
            port=parts.port or 5432,
            user=parts.username,
            dbname=parts.path.strip("/"),
            password=password,
            connect_timeout=CONNECT_TIMEOUT_S,
        ).close()
    except psycopg2.Error as error:
        reason = " ".join(str(error).split())
        raise ServerError(f"cannot connect to PostgreSQL at {uri}: {reason}") from error


def _artifacts_destination(value: str) -> str:
    if "://" in value:
        return value  # s3://, gs://, ...: MLflow's artifact repositories take it as it is
    folder = Path(value).expanduser().resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder)


def _write_auth_config(database: str, admin: str) -> Path:
    """MLflow's basic-auth settings (no secret among them), in a private folder of their own."""
    folder = Path(tempfile.mkdtemp(prefix="deeplecture-server-"))
    path = folder / "basic_auth.ini"
    secrets.write_private(
        path,
        "[mlflow]\n"
        f"default_permission = {DEFAULT_PERMISSION}\n"
        f"database_uri = {database}\n"
        f"admin_username = {admin}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        f"auth_cache_ttl_seconds = {AUTH_CACHE_SECONDS}\n",
    )
    return path
