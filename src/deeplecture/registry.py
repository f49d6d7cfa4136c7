"""MLflow's Model Registry: how an evaluated model is handed over.

Each evaluate stage registers the LoggedModel its training logged as a new version of the
registered model `<dataset>-<variant>` (prefixed like the experiments, tracking.experiment_name),
and moves the alias named after the run's profile to it: `models:/cifar10-cnn74@full` is always
the newest model trained with the lecture's settings, `@smoke` the newest smoke run.
"""

from __future__ import annotations

import sys
from typing import Any

import mlflow
from mlflow.entities.model_registry import ModelVersion

from deeplecture import tracking


def registered_model_name(dataset: str, variant: str) -> str:
    return tracking.experiment_name(f"{dataset}-{variant}")


def register(record: dict[str, Any], dataset: str, payload: dict[str, Any]) -> ModelVersion | None:
    """Register the model of `record` (the training record) with its test metrics as version
    tags; point the profile's alias at it. None, with a warning, where the store refuses."""
    model_id = record.get("model_id")
    if not model_id:  # a record made before models were logged by id
        print(f"note: {record['variant']} has no logged model id: not registered")
        return None
    name = registered_model_name(dataset, record["variant"])
    tags = {
        "profile": record["profile"],
        "test_accuracy": f"{payload['test_accuracy']:.4f}",
        "lecture_accuracy": f"{payload['lecture_accuracy']:.2f}",
        "data_digest": record["data_digest"],
    }
    try:
        with tracking.store_calls(f"registering the model {name}"):
            client = mlflow.MlflowClient()
            version = mlflow.register_model(f"models:/{model_id}", name, tags=tags)
            client.set_registered_model_alias(name, record["profile"], version.version)
    except tracking.TrackingUnavailable as error:
        print(f"warning: model not registered: {error}", file=sys.stderr)
        return None
    print(f"registered {name} version {version.version}, alias @{record['profile']}")
    return version
