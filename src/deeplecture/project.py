"""Where the repository is, also from inside a DVC experiment's temporary copy.

State that must outlive one `dvc exp run --temp` or queued experiment (the MLflow store,
checkpoints) lives at this root: the temporary copy is deleted when the experiment ends.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

# `dvc exp run --temp` and queued experiments run in a copy of the repository under this folder.
_DVC_TEMP_MARKER = (".dvc", "tmp", "exps")
CHECKPOINTS_DIR = "checkpoints"


def project_root() -> Path:
    """The repository root, also from inside a DVC experiment's temporary copy."""
    start = Path(os.environ.get("DVC_ROOT") or _git_toplevel(Path.cwd()) or Path.cwd()).resolve()
    parts = start.parts
    for index in range(len(parts) - len(_DVC_TEMP_MARKER) + 1):
        if parts[index : index + len(_DVC_TEMP_MARKER)] == _DVC_TEMP_MARKER:
            return Path(*parts[:index])
    return start


def checkpoints_root() -> Path:
    """Where training checkpoints live: `checkpoints/` at the repository root, so a rerun of a
    killed temporary or queued experiment finds them."""
    return project_root() / CHECKPOINTS_DIR


def git_commit(folder: Path) -> str | None:
    """The commit checked out in `folder`, or None outside git."""
    return _git(folder, "rev-parse", "HEAD")


def _git_toplevel(folder: Path) -> Path | None:
    output = _git(folder, "rev-parse", "--show-toplevel")
    return Path(output) if output else None


def _git(folder: Path, *args: str) -> str | None:
    try:
        result = subprocess.run(
            ["git", *args], cwd=folder, capture_output=True, text=True, check=False, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None
