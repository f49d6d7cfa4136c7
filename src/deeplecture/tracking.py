"""The one MLflow helper: where the store is, and how a run is opened, tagged and closed.

Conventions (DESIGN.md): a SQLite store `mlflow.db` at the repository root unless
`MLFLOW_TRACKING_URI` says otherwise; one experiment per dataset, its name prefixed by
`DEEPLECTURE_EXPERIMENT_PREFIX` when set (a student's own experiments on a class server); each
training run tagged with its variant, the git commit and the DVC experiment name.

Every call that training makes to the store goes through `store_calls`, so a store that stops
answering, turns read-only or is damaged becomes one `TrackingUnavailable` naming the store and
what to do, whatever library (requests, SQLAlchemy, sqlite3, mlflow) raised underneath.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keras
import mlflow
import numpy as np
import psutil
from filelock import FileLock, Timeout
from mlflow.entities import Metric, RunStatus
from mlflow.exceptions import MlflowException

from deeplecture.project import git_commit, project_root
from deeplecture.runtime import TrainingInterrupted, raise_if_stop_requested

STORE_FILE = "mlflow.db"
PREFIX_VARIABLE = "DEEPLECTURE_EXPERIMENT_PREFIX"
_PREFIX_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
SQLITE_BUSY_TIMEOUT_S = 60
_LOCK_ROUND_S = 0.5  # how long a stop signal may wait for the store's creation lock
_HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}
ARTIFACTS_DIR = "mlartifacts"
_MAX_BATCH = 1000  # metrics per log_batch call: the store accepts no more
# What SQLite says when the file, its folder (the journal goes there) or the disk refuses a write.
_WRITE_FAILURES = (
    "readonly", "read-only", "permission denied", "unable to open database file", "disk i/o",
)  # fmt: skip


class TrackingUnavailable(RuntimeError):
    """The MLflow store cannot be reached, written or read; the message names it and what to do."""


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


def experiment_name(base: str) -> str:
    """`base` (a dataset, or `foundations`) prefixed by `DEEPLECTURE_EXPERIMENT_PREFIX` if set:
    `alice` sends runs to `alice-cifar10`, and registers models as `alice-cifar10-cnn74`."""
    prefix = experiment_prefix()
    return f"{prefix}-{base}" if prefix else base


def experiment_prefix() -> str:
    """`DEEPLECTURE_EXPERIMENT_PREFIX`, checked: it becomes part of experiment and model names."""
    prefix = os.environ.get(PREFIX_VARIABLE, "")
    if prefix and not _PREFIX_PATTERN.fullmatch(prefix):
        raise TrackingUnavailable(
            f"{PREFIX_VARIABLE}={prefix!r}: use letters, digits, '_', '.' and '-' only "
            "(it becomes part of experiment and model names)"
        )
    return prefix


def use_project_store() -> str:
    """Point the mlflow client at the project's store, check it answers, return its URI."""
    # MLflow reports usage to an outside host unless told not to; a class's runs stay in class.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    # Its artifact transfer bars would cut into the stage's own progress lines (progress.py).
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    experiment_prefix()  # a malformed prefix fails before any work
    uri = tracking_uri()
    if uri.startswith(("http://", "https://")):
        # mlflow's defaults retry a dead server for minutes; fail within seconds instead.
        for name, value in _HTTP_DEFAULTS.items():
            os.environ.setdefault(name, value)
    mlflow.set_tracking_uri(uri)
    # MLflow logs every SQL error with its whole traceback before raising it; `store_calls`
    # reports the same error in one line, so that log would only bury the message.
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    if uri.startswith("sqlite:"):
        _check_sqlite_writable(_sqlite_path(uri))
    # The first query creates a new SQLite store's tables: under a file lock, so that two
    # parallel experiments do not both try to create them.
    with _store_creation_lock(uri), store_calls("opening it"):
        mlflow.MlflowClient().search_experiments(max_results=1)
    return uri


@contextlib.contextmanager
def _store_creation_lock(uri: str) -> Iterator[None]:
    """The lock held while a SQLite store is first queried; none for a server.

    Waited for in short rounds with a safe point between them: the other holder may take long,
    and a stop signal must not wait for it."""
    if not uri.startswith("sqlite:"):
        yield
        return
    lock = FileLock(project_root() / f".{STORE_FILE}.lock")
    while True:
        raise_if_stop_requested()
        with contextlib.suppress(Timeout):
            lock.acquire(timeout=_LOCK_ROUND_S)
            break
    try:
        yield
    finally:
        lock.release()


@contextlib.contextmanager
def store_calls(doing: str) -> Iterator[None]:
    """Turn any failure of the store inside the block into one `TrackingUnavailable` that names
    the store, what failed and what to do. `doing` says what the block was doing.

    A stop signal (SIGTERM, Ctrl-C) never cuts a store call in half (it would leave the store
    unable to mark the run KILLED): it is only recorded, and acted on at the next safe point
    (`runtime.stop_requests_heard`)."""
    try:
        yield
    except (TrainingInterrupted, KeyboardInterrupt, TrackingUnavailable):
        raise
    except Exception as error:  # requests, sqlalchemy, sqlite3 and mlflow each raise their own
        raise TrackingUnavailable(describe_store_failure(tracking_uri(), error, doing)) from error


def describe_store_failure(uri: str, error: BaseException, doing: str) -> str:
    """One line: which store, what went wrong while `doing` what, and the way out."""
    reason = _root_reason(error)
    if not uri.startswith("sqlite:"):
        code = getattr(error, "error_code", None)
        if code == "UNAUTHENTICATED":
            return (
                f"the MLflow server {uri} refused your credentials while {doing} ({reason}); "
                "check MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
            )
        if code == "PERMISSION_DENIED":
            return (
                f"the MLflow server {uri} does not let your account do this while {doing} "
                f"({reason}); to log to experiments of your own, set {PREFIX_VARIABLE} "
                "(e.g. to your user name)"
            )
        if isinstance(_root(error), OSError | TimeoutError):  # refused, reset, timed out
            problem = "did not answer"
        else:
            problem = "refused the request"
        return (
            f"the MLflow store {uri} {problem} while {doing} ({reason}); start that server or "
            f"check its address and your credentials, or unset MLFLOW_TRACKING_URI to use the "
            f"local store {STORE_FILE} at the repository root"
        )
    path = _sqlite_path(uri)
    text = reason.lower()
    if any(word in text for word in _WRITE_FAILURES):
        problem = "cannot be written"
        fix = f"make {path} and its folder writable, with room on the disk"
    elif any(word in text for word in ("not a database", "malformed", "no such table")):
        problem = "is damaged"
        fix = f"move it aside (mv {path} {path}.damaged) so that a rerun starts a new store"
    elif "locked" in text:
        problem = "stayed locked by another process"
        fix = "wait for the other run, or stop it"
    else:
        problem, fix = "failed", f"check {path}"
    return (
        f"the MLflow store {path} {problem} while {doing} ({reason}); {fix}, "
        "or set MLFLOW_TRACKING_URI to another store"
    )


def _check_sqlite_writable(path: Path) -> None:
    # SQLite writes a journal beside the file, so its folder must be writable too. Checked up
    # front: otherwise the first write, well into the run, fails deep inside SQLAlchemy.
    for target in (path, path.parent) if path.exists() else (path.parent,):
        if target.exists() and not os.access(target, os.W_OK):
            raise TrackingUnavailable(
                f"the MLflow store {path} cannot be written ({target} is read-only); make it "
                "writable, or set MLFLOW_TRACKING_URI to another store"
            )


def _sqlite_path(uri: str) -> Path:
    return Path(uri.removeprefix("sqlite:///").split("?", 1)[0])


def _root(error: BaseException) -> BaseException:
    seen = {id(error)}
    while (error.__cause__ or error.__context__) is not None:
        error = error.__cause__ or error.__context__
        if id(error) in seen:
            break
        seen.add(id(error))
    return error


def _root_reason(error: BaseException) -> str:
    """The innermost cause, on one line and short: what actually went wrong."""
    root = _root(error)
    text = " ".join(str(root).split())
    return f"{type(root).__name__}: {text[:200]}"


def ensure_experiment(name: str) -> str:
    """Return the id of experiment `name`, creating it where its store keeps artifacts."""
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    # Without an explicit location, a SQLite store puts artifacts under ./mlruns of whatever
    # folder the first run happened in, e.g. a DVC temp copy that is deleted afterwards: they go
    # beside the store's file instead. A server chooses its own (proxied, `mlflow-artifacts:`):
    # a path of this machine is no place for a class's artifacts.
    uri = tracking_uri()
    location = (
        (_sqlite_path(uri).parent / ARTIFACTS_DIR / name).as_uri()
        if uri.startswith("sqlite:")
        else None
    )
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
    commit = git_commit(project_root())
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
    """Open (or reopen, to resume) a run in `experiment_name(experiment)` and always close it
    with a truthful status.

    FINISHED on success, KILLED when the process was interrupted (SIGTERM, Ctrl-C), FAILED on any
    other exception. A reopened run gets this attempt's `tags` (its DVC experiment, invocation,
    commit). When the store itself failed, closing the run is tried once and may fail too: the
    caller keeps the run id, so a rerun resumes it or closes it.
    """
    raise_if_stop_requested()  # stopped before: no run to open
    use_project_store()
    try:
        with store_calls("starting the run"):
            experiment_id = ensure_experiment(experiment_name(experiment))
            run = _reopen(resume_run_id) if resume_run_id else None
            if run is None:
                run = mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags)
            else:
                mlflow.set_tags(tags)
        raise_if_stop_requested()  # stopped while the run opened: it is closed KILLED
        yield run
        # The last safe point of the run: a stop that arrived after the block's own safe points
        # (its final writes, its model upload) still makes the run KILLED, never FINISHED.
        raise_if_stop_requested()
    except (TrainingInterrupted, KeyboardInterrupt):
        _end_run(RunStatus.KILLED)
        raise
    except BaseException:
        _end_run(RunStatus.FAILED)
        raise
    with store_calls("closing the run"):
        mlflow.end_run(RunStatus.to_string(RunStatus.FINISHED))


def _end_run(status: int) -> None:
    # Already failing: a store that is down must not replace the real error with its own.
    # mlflow.end_run forgets the active run before it calls the store, so nothing retries later.
    with contextlib.suppress(Exception):
        mlflow.end_run(RunStatus.to_string(status))


def log_epoch(logs: dict[str, float], epoch: int) -> None:
    """One epoch's metrics to the active run, at step `epoch`."""
    with store_calls(f"logging epoch {epoch + 1}"):
        mlflow.log_metrics(logs, step=epoch)


def log_missing_epochs(run_id: str, history: dict[str, list[float]]) -> int:
    """Log the epochs of `history` whose metrics the run lacks (an attempt stopped between its
    checkpoint and its MLflow call); return how many. Epochs already there are not repeated."""
    client = mlflow.MlflowClient()
    with store_calls("catching up the finished epochs"):
        logged = {metric.step for metric in client.get_metric_history(run_id, "loss")}
        timestamp = int(time.time() * 1000)
        missing = [epoch for epoch in range(len(history.get("loss", []))) if epoch not in logged]
        metrics = [
            Metric(key, values[epoch], timestamp, epoch)
            for epoch in missing
            for key, values in history.items()
        ]
        for start in range(0, len(metrics), _MAX_BATCH):
            client.log_batch(run_id, metrics=metrics[start : start + _MAX_BATCH])
    return len(missing)


def close_abandoned_run(run_id: str, status: str) -> bool:
    """Mark `run_id` `status` if it is still RUNNING although its process is gone; True if so."""
    with store_calls("closing an abandoned run"):
        run = find_run(run_id)
        if run is None or run.info.status != "RUNNING":
            return False
        mlflow.MlflowClient().set_terminated(run_id, status)
    return True


def log_curve(key: str, values: np.ndarray) -> None:
    """Log a whole curve to the active run as one metric with step = index, in batches."""
    run_id = mlflow.active_run().info.run_id
    timestamp = int(time.time() * 1000)
    metrics = [Metric(key, float(value), timestamp, step) for step, value in enumerate(values)]
    client = mlflow.MlflowClient()
    for start in range(0, len(metrics), _MAX_BATCH):
        client.log_batch(run_id, metrics=metrics[start : start + _MAX_BATCH])


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


def find_run(run_id: str) -> mlflow.entities.Run | None:
    """The run with this id in the project's store, or None if this store does not have it."""
    use_project_store()
    with store_calls("looking up a run"):
        try:
            return mlflow.get_run(run_id)
        except MlflowException as error:
            if error.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise  # the store failing, not the run missing


def log_test_metrics(
    record: dict[str, Any],
    model_id: str | None,
    payload: dict[str, Any],
    per_class: dict[str, float],
    metrics_path: Path,
    test_set: tuple[str, str],
) -> bool:
    """Add the test metrics to the run that trained the model, each linked to its LoggedModel
    `model_id` and to the test set (`test_set`: name, digest); False if that is not possible.

    Never creates a run: when the training stage was restored from DVC's cache, its run lives
    in whichever store it was trained with, and an empty duplicate here would only mislead.
    A store that cannot be used is reported, not fatal: the metrics file is already written.
    """
    run_id = record["run_id"]
    dataset_name, dataset_digest = test_set
    try:
        run = find_run(run_id)
        if run is None:
            print(f"MLflow run {run_id} is not in {tracking_uri()}: test metrics not logged")
            return False
        client = mlflow.MlflowClient()
        link = {
            "model_id": model_id,
            "dataset_name": dataset_name,
            "dataset_digest": dataset_digest,
        }
        with store_calls("logging the test metrics"):
            for key in ("test_accuracy", "test_loss", "lecture_accuracy", "accuracy_gap",
                        "test_images"):  # fmt: skip
                client.log_metric(run_id, key, payload[key], **link)
            for name, value in per_class.items():
                client.log_metric(run_id, f"test_accuracy.{name}", value, **link)
            client.log_artifact(run_id, str(metrics_path), artifact_path="evaluation")
    except TrackingUnavailable as error:
        print(f"warning: test metrics not logged to MLflow: {error}", file=sys.stderr)
        return False
    return True


def _reopen(run_id: str) -> mlflow.ActiveRun | None:
    if find_run(run_id) is None:
        return None
    return mlflow.start_run(run_id=run_id)
