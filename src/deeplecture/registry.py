"""MLflow's Model Registry: how an evaluated model is handed over.

Each evaluate stage logs the model file as a LoggedModel of the run that trained it, registers
that as a new version of the registered model `<dataset>-<variant>` (prefixed like the
experiments, tracking.experiment_name), and moves the alias named after the run's profile to
it: `models:/cifar10-cnn74@full` is always the newest model trained with the lecture's settings,
`@smoke` the newest smoke run.

On a class server, a name that another account may change (EDIT or MANAGE: it could move the
alias to a version of its own, and a model from code runs its code on whoever serves it) is
refused in one line before anything is registered (team/holders.py).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
from mlflow.entities.model_registry import ModelVersion

from deeplecture import served_model, tracking
from deeplecture.team import holders, names

if TYPE_CHECKING:
    import numpy as np


def registered_model_name(dataset: str, variant: str) -> str:
    return tracking.experiment_name(names.registered_model_base(dataset, variant))


def log_served_model(
    record: dict[str, Any], model_path: Path, example_images: np.ndarray
) -> str | None:
    """Log the evaluated model file as the LoggedModel of the run that trained it (`record`'s),
    the model MLflow serves and the registry versions; return its id. None, with a note, where
    that run is not in this store (training restored from DVC's cache, trained elsewhere) or
    the store fails: the evaluation's files are written already."""
    try:
        if tracking.find_run(record["run_id"]) is None:
            print(f"MLflow run {record['run_id']} is not in {tracking.tracking_uri()}: not logged")
            return None
        with tracking.store_calls("logging the model"):
            return served_model.log_model(
                model_path, record["variant"], example_images, record["run_id"]
            )
    except tracking.TrackingUnavailable as error:
        print(f"warning: model not logged to MLflow: {error}", file=sys.stderr)
        return None


def register(
    record: dict[str, Any], model_id: str, dataset: str, payload: dict[str, Any]
) -> ModelVersion | None:
    """Register the LoggedModel `model_id` of `record` (the training record) with its test
    metrics as version tags; point the profile's alias at it. None, with a warning, where the
    store refuses."""
    name = registered_model_name(dataset, record["variant"])
    tags = {
        "profile": record["profile"],
        "test_accuracy": f"{payload['test_accuracy']:.4f}",
        "lecture_accuracy": f"{payload['lecture_accuracy']:.2f}",
        "data_digest": record["data_digest"],
    }
    try:
        with tracking.store_calls(f"checking who holds the model {name}"):
            problem = held_elsewhere(name)
        if problem:
            print(f"warning: model not registered: {problem}", file=sys.stderr)
            return None
        with tracking.store_calls(f"registering the model {name}"):
            client = mlflow.MlflowClient()
            version = mlflow.register_model(f"models:/{model_id}", name, tags=tags)
            client.set_registered_model_alias(name, record["profile"], version.version)
    except tracking.TrackingUnavailable as error:
        print(f"warning: model not registered: {error}", file=sys.stderr)
        return None
    print(f"registered {name} version {version.version}, alias @{record['profile']}")
    return version


def held_elsewhere(name: str) -> str | None:
    """Why the registered model `name` must not be registered into: it exists on a class server
    and an account other than this one may change it. None where nobody else holds it, or the
    store has no accounts."""
    server = tracking.tracking_uri()
    if not server.startswith(("http://", "https://")):
        return None
    mine = holders.own_permissions(server)
    if mine is None or not holders.found(mlflow.MlflowClient().get_registered_model, name):
        return None
    me = os.environ.get("MLFLOW_TRACKING_USERNAME", "")
    if not mine["is_admin"]:
        own = {resource for resource, _ in holders.writes(mine["permissions"])}
        if not own & {("registered_model", name), ("registered_model", holders.ANY)}:
            return (
                f"the registered model {name} exists and another account holds it: yours "
                f"({me}) may not add versions to it; ask the teacher (deeplecture-accounts "
                "names its holder)"
            )
        return None
    others = holders.of(holders.write_holders(server), "registered_model", name, besides=me)
    if others:
        return (
            f"the registered model {name} is also held by {holders.describe(others)}, who could "
            "move its aliases to versions of their own: revoke that permission or delete the "
            "model (deeplecture-accounts lists such names), then rerun evaluate"
        )
    return None
