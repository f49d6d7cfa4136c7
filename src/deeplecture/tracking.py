"""The one MLflow helper: where the store is, and how a run is opened, tagged and closed.

Conventions (DESIGN.md): a SQLite store `mlflow.db` at the repository root unless
`MLFLOW_TRACKING_URI` says otherwise; one experiment per dataset; each training run tagged with
its variant, the git commit and the DVC experiment name.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path

import keras
import mlflow
import mlflow.keras
import numpy as np
from mlflow.entities import RunStatus
from mlflow.exceptions import MlflowException

from deeplecture.runtime import TrainingInterrupted

STORE_FILE = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"
# `dvc exp run --temp` and queued experiments run in a copy of the repository under this folder;
# a store written there would vanish with it.
_DVC_TEMP_MARKER = (".dvc", "tmp", "exps")


def project_root() -> Path:
    """The repository root, also from inside a DVC experiment's temporary copy."""
    start = Path(os.environ.get("DVC_ROOT") or _git_toplevel(Path.cwd()) or Path.cwd()).resolve()
    parts = start.parts
    for index in range(len(parts) - len(_DVC_TEMP_MARKER) + 1):
        if parts[index : index + len(_DVC_TEMP_MARKER)] == _DVC_TEMP_MARKER:
            return Path(*parts[:index])
    return start


def tracking_uri() -> str:
    """`MLFLOW_TRACKING_URI` if set, else the SQLite store at the repository root (absolute)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root() / STORE_FILE}"


def use_project_store() -> str:
    """Point the mlflow client at the project's store and return its URI."""
    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    return uri


def ensure_experiment(name: str) -> str:
    """Return the id of experiment `name`, creating it with an absolute artifact folder."""
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    # Without an explicit location, a SQLite store puts artifacts under ./mlruns of whatever
    # folder the first run happened in, e.g. a DVC temp copy that is deleted afterwards.
    location = (project_root() / ARTIFACTS_DIR / name).as_uri()
    try:
        return mlflow.create_experiment(name, artifact_location=location)
    except MlflowException:
        # Another process created it between our lookup and our create.
        return mlflow.get_experiment_by_name(name).experiment_id


def run_tags(variant: str, dataset: str, profile: str) -> dict[str, str]:
    """Tags that let the MLflow UI group and compare runs across variants and experiments."""
    tags = {
        "variant": variant,
        "dataset": dataset,
        "profile": profile,
        "keras_backend": os.environ.get("KERAS_BACKEND", "tensorflow"),
    }
    commit = _git_commit(project_root())
    if commit:
        tags["git_commit"] = commit
        tags["mlflow.source.git.commit"] = commit
    for env_name, tag in (
        ("DVC_EXP_NAME", "dvc_exp_name"),
        ("DVC_EXP_BASELINE_REV", "dvc_baseline_rev"),
    ):
        if os.environ.get(env_name):
            tags[tag] = os.environ[env_name]
    return tags


@contextlib.contextmanager
def training_run(
    experiment: str, run_name: str, tags: dict[str, str], resume_run_id: str | None = None
) -> Iterator[mlflow.ActiveRun]:
    """Open (or reopen, to resume) a run and always close it with a truthful status.

    FINISHED on success, KILLED when the process was interrupted (SIGTERM, Ctrl-C), FAILED on any
    other exception: a run is never left RUNNING.
    """
    use_project_store()
    experiment_id = ensure_experiment(experiment)
    run = _reopen(resume_run_id) if resume_run_id else None
    if run is None:
        run = mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags)
    try:
        yield run
    except (TrainingInterrupted, KeyboardInterrupt):
        mlflow.end_run(RunStatus.to_string(RunStatus.KILLED))
        raise
    except BaseException:
        mlflow.end_run(RunStatus.to_string(RunStatus.FAILED))
        raise
    mlflow.end_run(RunStatus.to_string(RunStatus.FINISHED))


def log_dataset(
    images: np.ndarray, labels: np.ndarray, source: str, name: str, digest: str
) -> None:
    """Record the training data as the run's input, with the pipeline's content digest."""
    with warnings.catch_warnings():
        # mlflow cannot tell whether a plain path is a local file or an artifact; either is fine.
        warnings.simplefilter("ignore", UserWarning)
        dataset = mlflow.data.from_numpy(
            images, targets=labels, source=source, name=name, digest=digest[:36]
        )
    mlflow.log_input(dataset, context="training")


def log_keras_model(model: keras.Model, example_images: np.ndarray) -> None:
    """Log the model with the Keras flavor, loadable by `mlflow.keras.load_model`."""
    signature = mlflow.models.infer_signature(
        example_images, model.predict(example_images, verbose=0)
    )
    backend = keras.backend.backend()
    backend_package = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}[backend]
    requirements = [f"keras=={keras.__version__}", _requirement(backend_package)]
    mlflow.keras.log_model(model, name="model", signature=signature, pip_requirements=requirements)


def find_run(run_id: str) -> mlflow.entities.Run | None:
    """The run with this id in the project's store, or None if this store does not have it."""
    use_project_store()
    try:
        return mlflow.get_run(run_id)
    except MlflowException:
        return None


def _reopen(run_id: str) -> mlflow.ActiveRun | None:
    if find_run(run_id) is None:
        return None
    return mlflow.start_run(run_id=run_id)


def _requirement(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"{package}=={version(package)}"
    except PackageNotFoundError:
        return package


def _git_toplevel(folder: Path) -> Path | None:
    output = _git(folder, "rev-parse", "--show-toplevel")
    return Path(output) if output else None


def _git_commit(folder: Path) -> str | None:
    return _git(folder, "rev-parse", "HEAD")


def _git(folder: Path, *args: str) -> str | None:
    try:
        result = subprocess.run(
            ["git", *args], cwd=folder, capture_output=True, text=True, check=False, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None
