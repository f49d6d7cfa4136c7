"""Training for real on tiny data: outputs, MLflow run, determinism, divergence and resume."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import mlflow
import mlflow.pyfunc
import numpy as np
import pytest

from conftest import (
    CONTRACT_METRIC_KEYS,
    InjectedCrash,
    crash_after_epoch,
    training_outputs,
    write_params,
)
from deeplecture import evaluation, registry, served_model, tracking
from deeplecture.atomic import NotWritable
from deeplecture.data import processed
from deeplecture.params import ParamsError, load_params
from deeplecture.training import (
    TrainingDiverged,
    TrainingOutputs,
    lecture88_schedule,
    train_variant,
)

TINY = {"train.cnn74.epochs": 3, "train.cnn74.batch_size": 16}


def _saved_state(outputs: TrainingOutputs) -> dict:
    (state,) = outputs.checkpoints.glob("*/state.json")  # one checkpoint: this variant's
    return json.loads(state.read_text())


def _runs(experiment: str = "cifar10") -> list[mlflow.entities.Run]:
    return mlflow.search_runs(experiment_names=[experiment], output_format="list")


def test_training_writes_model_record_history_and_a_complete_mlflow_run(
    tmp_path: Path, tiny_data: Path, mlflow_store: str
) -> None:
    params = load_params(write_params(tmp_path, TINY))
    data = processed.load(tiny_data)
    outputs = training_outputs(tmp_path / "out")
    record = train_variant("cnn74", params, data, outputs)

    assert keras.saving.load_model(outputs.model).count_params() == 1_639_914
    assert record["epochs"] == 3 and record["train_seconds"] > 0
    assert (
        outputs.history.read_text().splitlines()[0]
        == "epoch,loss,accuracy,val_loss,val_accuracy,learning_rate"
    )
    assert len(outputs.history.read_text().splitlines()) == 1 + 3
    assert not list(outputs.checkpoints.glob("*/*"))  # a finished run leaves no checkpoint

    (run,) = _runs()
    assert run.info.status == "FINISHED" and run.info.run_id == record["run_id"]
    assert run.data.tags["variant"] == "cnn74"
    assert run.data.params["epochs"] == "3" and run.data.params["learning_rate"] == "0.001"
    history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "val_accuracy")
    assert [metric.step for metric in history] == [0, 1, 2]
    (dataset_input,) = run.inputs.dataset_inputs
    assert dataset_input.dataset.digest == data.digest[:36]
    # Training logs no model: the evaluate stage logs the file into this run, named after the
    # variant, classifying image files by class name.
    models = {"experiment_ids": [run.info.experiment_id], "output_format": "list"}
    assert mlflow.search_logged_models(**models) == [] and "model_id" not in record
    model_id = registry.log_served_model(record, outputs.model, data.test.images[:2])
    (logged,) = mlflow.search_logged_models(**models)
    assert logged.name == "cnn74" and logged.model_id == model_id
    assert logged.source_run_id == run.info.run_id and logged.status == "READY"
    after = mlflow.get_run(run.info.run_id)
    assert after.info.status == "FINISHED"  # not reopened
    assert [output.model_id for output in after.outputs.model_outputs] == [model_id]
    served = mlflow.pyfunc.load_model(f"models:/{model_id}")
    answer = served.predict(served_model.request_frame(data.test.images[:3]))
    assert set(answer["class"]) <= set(data.info["class_names"])
    probabilities = answer[list(data.info["class_names"])].to_numpy()
    expected = keras.saving.load_model(outputs.model).predict(data.test.images[:3], verbose=0)
    np.testing.assert_allclose(probabilities, expected, atol=1e-6)
    assert served.metadata.get_input_schema().input_names() == ["image"]


def test_evaluate_reports_what_a_fresh_evaluation_of_the_file_gives(
    tmp_path: Path, tiny_data: Path, mlflow_store: str
) -> None:
    params = load_params(write_params(tmp_path, TINY))
    data = processed.load(tiny_data)
    outputs = training_outputs(tmp_path / "out")
    record = train_variant("cnn74", params, data, outputs)

    result = evaluation.evaluate(evaluation.load_model(outputs.model), data.test)
    payload = evaluation.metrics_payload(result, record, 0.74)
    per_class = evaluation.per_class_accuracy(result, tuple(data.info["class_names"]))
    fresh = keras.saving.load_model(outputs.model).evaluate(
        data.test.images, data.test.onehot, verbose=0, return_dict=True
    )
    assert payload["test_accuracy"] == pytest.approx(fresh["accuracy"], abs=1e-6)
    assert payload["test_loss"] == pytest.approx(fresh["loss"], rel=1e-5)
    predicted = (
        keras.saving.load_model(outputs.model).predict(data.test.images, verbose=0).argmax(1)
    )
    assert payload["test_accuracy"] == pytest.approx(
        np.mean(predicted == data.test.labels), abs=1e-6
    )
    assert payload["test_accuracy"] > 0.3  # the tiny classes are learnable: well above chance (0.1)
    for key in CONTRACT_METRIC_KEYS:
        assert key in payload

    metrics_path = tmp_path / "metrics.json"
    metrics_path.write_text(json.dumps(payload))
    test_set = ("cifar10-test", data.digest[:36])
    model_id = registry.log_served_model(record, outputs.model, data.test.images[:2])
    assert tracking.log_test_metrics(record, model_id, payload, per_class, metrics_path, test_set)
    (run,) = _runs()  # added to the training run, no new run
    assert run.data.metrics["test_accuracy"] == pytest.approx(payload["test_accuracy"])
    assert run.data.metrics["test_accuracy.class3"] == pytest.approx(per_class["class3"])
    # ... and linked to the model they score, on the test set named by its digest.
    logged = mlflow.get_logged_model(model_id)
    linked = {metric.key: metric for metric in logged.metrics}
    assert linked["test_accuracy"].value == pytest.approx(payload["test_accuracy"])
    assert linked["test_accuracy"].dataset_name == "cifar10-test"
    assert linked["test_accuracy"].dataset_digest == data.digest[:36]
    unknown = {**record, "run_id": "0" * 32}
    assert registry.log_served_model(unknown, outputs.model, data.test.images[:2]) is None
    assert (
        tracking.log_test_metrics(unknown, model_id, payload, per_class, metrics_path, test_set)
        is False
    )
    assert len(_runs()) == 1


def test_same_seed_same_data_gives_the_same_model(
    tmp_path: Path, tiny_data: Path, mlflow_store: str
) -> None:
    params = load_params(write_params(tmp_path, {"train.cnn74.epochs": 1}))
    data = processed.load(tiny_data)
    weights = []
    for attempt in ("a", "b"):
        outputs = training_outputs(tmp_path / attempt)
        train_variant("cnn74", params, data, outputs)
        weights.append(keras.saving.load_model(outputs.model).get_weights())
    for first, second in zip(*weights, strict=True):
        np.testing.assert_array_equal(first, second)


def test_a_diverging_loss_fails_the_run_and_saves_no_model(
    tmp_path: Path, tiny_data: Path, mlflow_store: str
) -> None:
    params = load_params(
        write_params(tmp_path, {"train.cnn74.epochs": 2, "train.cnn74.learning_rate": 1e9})
    )
    outputs = training_outputs(tmp_path / "out")
    with pytest.raises(TrainingDiverged, match="NaN"):
        train_variant("cnn74", params, processed.load(tiny_data), outputs)
    assert not outputs.model.exists() and not outputs.record.exists()
    assert not list(outputs.checkpoints.glob("*/*"))
    assert [run.info.status for run in _runs()] == ["FAILED"]


def test_a_crashed_run_resumes_from_its_last_epoch_in_the_same_mlflow_run(
    tmp_path: Path, tiny_data: Path, mlflow_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = load_params(write_params(tmp_path, TINY))
    data = processed.load(tiny_data)
    outputs = training_outputs(tmp_path / "out")
    with monkeypatch.context() as patch:
        crash_after_epoch(patch, epochs=2)
        with pytest.raises(InjectedCrash):
            train_variant("cnn74", params, data, outputs)
    assert not outputs.model.exists()
    state = _saved_state(outputs)
    assert state["epochs_done"] == 2
    assert [run.info.status for run in _runs()] == ["FAILED"]

    record = train_variant("cnn74", params, data, outputs)
    (run,) = _runs()  # the same run, reopened: no orphan
    assert run.info.status == "FINISHED" and run.info.run_id == state["run_id"] == record["run_id"]
    assert record["epochs"] == 3 and len(record["history"]["loss"]) == 3
    assert record["history"]["loss"][:2] == state["history"]["loss"]
    steps = [m.step for m in mlflow.MlflowClient().get_metric_history(run.info.run_id, "loss")]
    assert steps == [0, 1, 2]


def test_a_resumed_run_carries_the_tags_of_the_attempt_that_finished_it(
    tmp_path: Path, tiny_data: Path, mlflow_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = load_params(write_params(tmp_path, TINY))
    data = processed.load(tiny_data)
    outputs = training_outputs(tmp_path / "out")
    monkeypatch.setenv("DVC_EXP_NAME", "killed-attempt")
    with monkeypatch.context() as patch:
        crash_after_epoch(patch, epochs=2)
        with pytest.raises(InjectedCrash):
            train_variant("cnn74", params, data, outputs)
    monkeypatch.setenv("DVC_EXP_NAME", "finishing-attempt")
    train_variant("cnn74", params, data, outputs)
    (run,) = _runs()
    assert run.data.tags["dvc_exp_name"] == "finishing-attempt"
    assert run.data.tags["resumed_after_epoch"] == "2"


def test_a_stop_between_checkpoint_and_mlflow_logs_each_epoch_once(
    tmp_path: Path, tiny_data: Path, mlflow_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed after epoch 2 was checkpointed but before its metrics reached MLflow: the resumed
    run logs epoch 2 from the checkpoint, and no epoch twice."""
    params = load_params(write_params(tmp_path, TINY))
    data = processed.load(tiny_data)
    outputs = training_outputs(tmp_path / "out")
    original = tracking.log_epoch

    def stop_before_logging_epoch_2(logs: dict, epoch: int) -> None:
        if epoch == 1:
            raise InjectedCrash("stopped between checkpoint and MLflow")
        original(logs, epoch)

    with monkeypatch.context() as patch:
        patch.setattr(tracking, "log_epoch", stop_before_logging_epoch_2)
        with pytest.raises(InjectedCrash):
            train_variant("cnn74", params, data, outputs)
    state = _saved_state(outputs)
    assert state["epochs_done"] == 2

    train_variant("cnn74", params, data, outputs)
    (run,) = _runs()
    losses = mlflow.MlflowClient().get_metric_history(run.info.run_id, "loss")
    assert sorted(m.step for m in losses) == [0, 1, 2]
    assert next(m.value for m in losses if m.step == 1) == state["history"]["loss"][1]


def test_a_checkpoint_for_other_settings_is_never_resumed(
    tmp_path: Path, tiny_data: Path, mlflow_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = processed.load(tiny_data)
    outputs = training_outputs(tmp_path / "out")
    with monkeypatch.context() as patch:
        crash_after_epoch(patch, epochs=2)
        with pytest.raises(InjectedCrash):
            train_variant("cnn74", load_params(write_params(tmp_path, TINY)), data, outputs)

    changed = load_params(write_params(tmp_path, {**TINY, "train.cnn74.learning_rate": 5e-4}))
    train_variant("cnn74", changed, data, outputs)
    runs = _runs()
    assert sorted(run.info.status for run in runs) == ["FAILED", "FINISHED"]
    finished = next(run for run in runs if run.info.status == "FINISHED")
    losses = mlflow.MlflowClient().get_metric_history(finished.info.run_id, "loss")
    assert [m.step for m in losses] == [0, 1, 2]  # trained from epoch 0 in a run of its own


def test_evaluating_again_reuses_the_logged_model_and_drops_an_interrupted_one(
    tmp_path: Path, tiny_data: Path, mlflow_store: str
) -> None:
    """A rerun of evaluate for the same model file and serving code logs nothing twice; a
    LoggedModel left PENDING by an attempt stopped while logging is deleted, and said so."""
    params = load_params(write_params(tmp_path, TINY))
    data = processed.load(tiny_data)
    outputs = training_outputs(tmp_path / "out")
    record = train_variant("cnn74", params, data, outputs)
    (run,) = _runs()
    models = {"experiment_ids": [run.info.experiment_id], "output_format": "list"}
    interrupted = mlflow.initialize_logged_model(
        name="cnn74", source_run_id=run.info.run_id, experiment_id=run.info.experiment_id
    )  # created, as log_model creates it, and never finished
    assert [model.status for model in mlflow.search_logged_models(**models)] == ["PENDING"]

    first = registry.log_served_model(record, outputs.model, data.test.images[:2])
    again = registry.log_served_model(record, outputs.model, data.test.images[:2])

    (model,) = mlflow.search_logged_models(**models)
    assert first == again == model.model_id != interrupted.model_id
    assert (model.name, model.status, model.source_run_id) == ("cnn74", "READY", run.info.run_id)


def test_a_batch_larger_than_the_images_it_draws_from_is_refused_before_any_work(
    tmp_path: Path, tiny_data: Path, mlflow_store: str
) -> None:
    """180 images to fit (cnn74); cnn88 fits on all 200 (train + validation, its quirk)."""
    data = processed.load(tiny_data)
    outputs = training_outputs(tmp_path / "out")
    for variant, batch_size, images in (("cnn74", 1_000_000_000, 180), ("cnn88", 201, 200)):
        params = load_params(write_params(tmp_path, {f"train.{variant}.batch_size": batch_size}))
        expected = (
            f"train.{variant}.batch_size: {batch_size} is larger than the {images} images "
            f"it trains on"
        )
        with pytest.raises(ParamsError, match=expected):
            train_variant(variant, params, data, training_outputs(tmp_path / "out", variant))
    assert _runs() == [] and not list(outputs.checkpoints.glob("*/*"))
    assert not outputs.model.exists()

    # The limit itself trains: one step an epoch, recorded as what trained.
    limit = {"train.cnn74.epochs": 1, "train.cnn74.batch_size": 180}
    params = load_params(write_params(tmp_path, limit))
    record = train_variant("cnn74", params, data, outputs)
    (run,) = _runs()
    assert run.data.params["batch_size"] == "180" == str(len(data.train))
    assert record["epochs"] == 1


def test_an_output_that_cannot_be_written_fails_before_the_first_epoch(
    tmp_path: Path, tiny_data: Path, mlflow_store: str
) -> None:
    """The record's folder is a file: found after training, that cost every epoch."""
    blocker = tmp_path / "records"
    blocker.write_text("a file where the record's folder should be\n")
    outputs = TrainingOutputs(
        model=tmp_path / "out" / "cnn74.keras",
        record=blocker / "cnn74.train.json",
        history=tmp_path / "out" / "cnn74.history.csv",
        checkpoints=tmp_path / "checkpoints",
    )
    params = load_params(write_params(tmp_path, TINY))
    with pytest.raises(NotWritable, match=f"{blocker / 'cnn74.train.json'} cannot be written"):
        train_variant("cnn74", params, processed.load(tiny_data), outputs)
    assert _runs() == []  # no MLflow run opened, so none left RUNNING
    assert not outputs.model.exists() and not (tmp_path / "out").exists()
    assert not list(outputs.checkpoints.glob("*/*"))  # no epoch trained


def test_the_lecture88_schedule_and_its_dead_branch() -> None:
    assert lecture88_schedule(0, 1e-3) == 1e-3
    assert lecture88_schedule(75, 1e-3) == 1e-3
    assert lecture88_schedule(76, 1e-3) == 5e-4
    assert lecture88_schedule(124, 1e-3) == 5e-4  # "> 100: 3e-4" never runs


def test_the_lecture88_schedule_follows_the_learning_rate_param() -> None:
    """train.cnn88.learning_rate trains what it says: the schedule scales with it."""
    assert lecture88_schedule(0, 2e-3) == 2e-3
    assert lecture88_schedule(76, 2e-3) == 1e-3
