"""A committed copy of the project in a temporary git repository, for real `dvc` runs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

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
