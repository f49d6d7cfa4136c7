"""A committed copy of the project in a temporary git repository, for real `dvc` runs."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from filelock import FileLock

from conftest import PROJECT_ROOT, shipped_params_text

FILES = ("dvc.yaml", "fashion_mnist/dvc.yaml", "pyproject.toml", ".dvcignore")
# the report stage reads sweeps/ and the measured platforms
FOLDERS = ("src", "stages", "sweeps", "data/sample", "reports/sweeps", "reports/platforms")


def run_command(args: list[str], cwd: Path, extra_env: dict[str, str] | None = None) -> str:
    """Run a command as a user would (this venv's tools first on PATH); return its output,
    failing the test with the output's tail when it exits non-zero. `extra_env` is set last."""
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        # dvc exp run commits experiment refs: give git an identity on machines without one.
        "GIT_AUTHOR_NAME": "pipeline test",
        "GIT_AUTHOR_EMAIL": "test@deeplecture.invalid",
        "GIT_COMMITTER_NAME": "pipeline test",
        "GIT_COMMITTER_EMAIL": "test@deeplecture.invalid",
    }
    env.pop("MLFLOW_TRACKING_URI", None)  # the project's default store: mlflow.db at the root
    env.update(extra_env or {})
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{output[-6000:]}"
    return output


def make_project_repo(root: Path) -> Path:
    """Copy the pipeline's files into `root`, then `git init`, `dvc init` and commit."""
    for name in FILES:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(PROJECT_ROOT / name, root / name)
    (root / "params.yaml").write_text(shipped_params_text())
    for folder in FOLDERS:
        shutil.copytree(
            PROJECT_ROOT / folder,
            root / folder,
            ignore=shutil.ignore_patterns("__pycache__"),
            dirs_exist_ok=True,  # a test may have copied more of reports/ first
        )
    for command in (
        ["git", "init", "-q"],
        ["dvc", "init", "-q"],
        ["dvc", "config", "core.analytics", "false"],
        ["git", "add", "-A"],
        ["git", "commit", "-qm", "init"],
    ):
        run_command(command, root)
    return root


def stages_run(output: str) -> list[str]:
    """The stages a `dvc repro` / `dvc exp run` output says it ran, sorted."""
    return sorted(line.split("'")[1] for line in output.splitlines() if "Running stage" in line)


# The smoke profile, smaller still to keep the suite quick (same code path): what the shared
# smoke run sets with `-S`, and what a test that reruns its stages must set too.
SMOKE_SETTINGS = {
    "profile": "smoke",
    "preprocess.cifar10.train_limit": 400,
    "train.cnn88.steps_per_epoch": 8,
}
FIRST_RUN_LOG = "first_run.log"  # the shared run's output; written last, so it marks it whole


def smoke_arguments() -> list[str]:
    """SMOKE_SETTINGS as `dvc exp run`'s `-S` arguments."""
    return [arg for key, value in SMOKE_SETTINGS.items() for arg in ("-S", f"{key}={value}")]


def shared_smoke_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`dvc exp run` of the root pipeline at SMOKE_SETTINGS in a committed project copy, run
    once per test session by whichever test worker asks first (the others wait on its lock).

    Its tests only read it through `copy_project`: several modules start from a finished run,
    and each such run is three minutes of stages on this project's 2-core machine."""
    folder = _session_folder(tmp_path_factory)
    run = folder / "smoke-run"
    with FileLock(folder / "smoke-run.lock"):
        if not (run / FIRST_RUN_LOG).is_file():
            shutil.rmtree(run, ignore_errors=True)  # a worker that failed half-way
            run.mkdir()
            make_project_repo(run)
            output = run_command(["dvc", "exp", "run", *smoke_arguments()], run)
            (run / FIRST_RUN_LOG).write_text(output)
    return run


def _session_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of this test session that every test worker sees: pytest-xdist gives each
    worker its own base folder inside the session's."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if "PYTEST_XDIST_WORKER" in os.environ else base


def copy_project(source: Path, destination: Path) -> Path:
    """A copy of a project that has run: its git repository, DVC cache, outputs and MLflow
    store, as a run in `destination` would have left them. MLflow's SQLite store, its model
    descriptions and DVC's record of the experiment run keep absolute paths: the copy's name
    its own folder, so new runs there log their artifacts there."""
    shutil.copytree(source, destination, symlinks=True)
    old, new = str(source.resolve()), str(destination.resolve())
    for path in destination.rglob("*"):
        inside = path.relative_to(destination).parts
        if path.is_file() and inside[0] != ".git" and inside[:2] != (".dvc", "cache"):
            raw = path.read_bytes()
            if path.name == "mlflow.db":
                _relocate_store(path, old, new)
            elif old.encode() in raw:
                path.write_bytes(raw.replace(old.encode(), new.encode()))
    return destination


def _relocate_store(store_file: Path, old: str, new: str) -> None:
    """Rewrite `old` to `new` in every text column of an MLflow SQLite store (a byte-wise
    replace would break SQLite's records where the two differ in length)."""
    with sqlite3.connect(store_file) as store:
        for table, column in _path_columns(store):
            store.execute(f"UPDATE {table} SET {column} = replace({column}, ?, ?)", (old, new))


def _path_columns(store: sqlite3.Connection) -> list[tuple[str, str]]:
    """Every text column of every table in an MLflow SQLite store."""
    tables = [row[0] for row in store.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    return [
        (table, column[1])
        for table in tables
        for column in store.execute(f"PRAGMA table_info({table})")
        if "CHAR" in column[2].upper() or "TEXT" in column[2].upper()
    ]
