"""The one MLflow helper: where the store is, and how a run is opened, tagged and closed.

Conventions (DESIGN.md): a SQLite store `mlflow.db` at the repository root unless
`MLFLOW_TRACKING_URI` says otherwise; one experiment per dataset; each training run tagged with
its variant, the git commit and the DVC experiment name.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keras
import mlflow
import mlflow.keras
import numpy as np
import psutil
from filelock import FileLock
from mlflow.entities import Metric, RunStatus
from mlflow.exceptions import MlflowException

from deeplecture.runtime import TrainingInterrupted

STORE_FILE = "mlflow.db"
SQLITE_BUSY_TIMEOUT_S = 60
_HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}
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


class TrackingUnavailable(RuntimeError):
    """The MLflow store cannot be reached; raised before any training starts."""


def tracking_uri() -> str:
    """`MLFLOW_TRACKING_URI` if set, else the SQLite store at the repository root (absolute).

    The default store waits up to a minute for a lock (SQLite's default is 5 s), so that
    experiments run in parallel (`dvc queue start -j 2`) queue up instead of failing with
    "database is locked".
    """
    return (
        os.environ.get("MLFLOW_TRACKING_URI")
        or f"sqlite:///{project_root() / STORE_FILE}?timeout={SQLITE_BUSY_TIMEOUT_S}"
    )


def use_project_store() -> str:
    """Point the mlflow client at the project's store, check it answers, return its URI."""
    uri = tracking_uri()
    if uri.startswith(("http://", "https://")):
        # mlflow's defaults retry a dead server for minutes; fail within seconds instead.
        for name, value in _HTTP_DEFAULTS.items():
            os.environ.setdefault(name, value)
    mlflow.set_tracking_uri(uri)
    lock = (
        FileLock(project_root() / f".{STORE_FILE}.lock")
        if uri.startswith("sqlite:")
        else contextlib.nullcontext()
    )
    try:
        # The first query creates a new SQLite store's tables: under a file lock, so that two
        # parallel experiments do not both try to create them.
        with lock:
            mlflow.MlflowClient().search_experiments(max_results=1)
    except Exception as error:  # requests, sqlalchemy and mlflow each raise their own types
        raise TrackingUnavailable(
            f"the MLflow store {uri} did not answer ({type(error).__name__}: {error}); "
            "start that server, or unset MLFLOW_TRACKING_URI to use the local store "
            f"{STORE_FILE} at the repository root"
        ) from error
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
        "keras_backend": keras.backend.backend(),  # what Keras runs on, set by env or config
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
    invocation = _dvc_invocation()
    if invocation:
        tags["dvc_invocation"] = invocation
    return tags


def _dvc_invocation() -> str | None:
    """An id shared by every stage of one `dvc repro` / `dvc exp run`: the DVC process's start
    time and pid. Filtering on it in the MLflow UI shows the runs of that one pipeline run."""
    if not os.environ.get("DVC_ROOT"):
        return None
    with contextlib.suppress(psutil.Error):
        for process in psutil.Process().parents():
            if any(Path(part).name == "dvc" for part in process.cmdline()[:2]):
                started = time.strftime("%Y%m%dT%H%M%S", time.localtime(process.create_time()))
                return f"{started}-{process.pid}"
    return None


@contextlib.contextmanager
def tracked_run(
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


def log_curve(key: str, values: np.ndarray) -> None:
    """Log a whole curve to the active run as one metric with step = index, in batches."""
    run_id = mlflow.active_run().info.run_id
    timestamp = int(time.time() * 1000)
    metrics = [Metric(key, float(value), timestamp, step) for step, value in enumerate(values)]
    client = mlflow.MlflowClient()
    for start in range(0, len(metrics), 1000):  # the store accepts at most 1000 per batch
        client.log_batch(run_id, metrics=metrics[start : start + 1000])


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
    # Each backend's name is also its package's name.
    requirements = [f"keras=={keras.__version__}", _requirement(keras.backend.backend())]
    mlflow.keras.log_model(model, name="model", signature=signature, pip_requirements=requirements)


def find_run(run_id: str) -> mlflow.entities.Run | None:
    """The run with this id in the project's store, or None if this store does not have it."""
    use_project_store()
    try:
        return mlflow.get_run(run_id)
    except MlflowException:
        return None


def log_test_metrics(run_id: str, payload: dict[str, Any], metrics_path: Path) -> bool:
    """Add the test metrics to the run that trained the model; False if that is not possible.

    Never creates a run: when the training stage was restored from DVC's cache, its run lives
    in whichever store it was trained with, and an empty duplicate here would only mislead.
    An unreachable store is reported, not fatal: the metrics file is already written.
    """
    try:
        run = find_run(run_id)
    except TrackingUnavailable as error:
        print(f"warning: test metrics not logged to MLflow: {error}", file=sys.stderr)
        return False
    if run is None:
        print(f"MLflow run {run_id} is not in {tracking_uri()}: test metrics not logged")
        return False
    client = mlflow.MlflowClient()
    for key in ("test_accuracy", "test_loss", "lecture_accuracy", "accuracy_gap"):
        client.log_metric(run_id, key, payload[key])
    for name, value in payload["per_class_accuracy"].items():
        client.log_metric(run_id, f"test_accuracy.{name}", value)
    client.log_artifact(run_id, str(metrics_path), artifact_path="evaluation")
    return True


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
