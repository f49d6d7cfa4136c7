"""Training one variant as the lecture did, resumable and tracked.

Only `keras` is used here, so the same code trains with `KERAS_BACKEND=tensorflow`, `jax` or
`torch`. Order of events in `train_variant`: settings and data -> checkpoint (resume or fresh) ->
MLflow run (reopened when resuming), checkpointed at once so that even a kill in epoch 1 is
resumed in the same run -> the epochs (`engine.loop`: the fast path or `Model.fit`), each one
checkpointed before its metrics go to MLflow, so a failing store never costs a finished epoch ->
best epoch's weights restored (`keep_best`) -> final model written atomically -> record.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import mlflow
import numpy as np

from deeplecture import distribution, model_file, served_model, tracking
from deeplecture.atomic import atomic_path, check_writable, write_json
from deeplecture.checkpoints import (
    STATE_FILE,
    Checkpoint,
    TrainingState,
    changed_settings,
    fingerprint,
)
from deeplecture.data.processed import ProcessedData
from deeplecture.data.splits import ImageSplit
from deeplecture.distribution import Layout
from deeplecture.loops import run_epochs
from deeplecture.loops.fast import VALIDATION_BATCH_SIZE
from deeplecture.models import Variant, get_variant
from deeplecture.params import EngineParams, Params, ParamsError, TrainParams
from deeplecture.runtime import (
    describe_device,
    describe_versions,
    gpu_unused_warning,
    seed_everything,
)
from deeplecture.scaling import Scaling

HISTORY_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite: no model is saved."""


@dataclass(frozen=True)
class TrainingOutputs:
    """Where a training stage writes: the outputs dvc.yaml names, and the checkpoints' root
    (`checkpoints/` at the repository root; each variant and settings gets a folder in it)."""

    model: Path
    record: Path
    history: Path
    checkpoints: Path


def lecture88_schedule(epoch: int, base_rate: float) -> float:
    """The learning-rate schedule of Cifar10_CNN_88_Train.py, dead branch included, scaled to
    `base_rate` (train.cnn88.learning_rate): 1x, then 0.5x after epoch 75. At the lecture's
    1e-3 that is its 1e-3, then 5e-4.

    `epoch > 100` can never be reached because `epoch > 75` is tested first, so the lecture's
    intended 0.3x (3e-4) never happens; we reproduce what the code did, not what it meant.
    """
    rate = base_rate
    if epoch > 75:
        rate = 0.5 * base_rate
    elif epoch > 100:  # noqa: SIM114 - unreachable on purpose: the lecture's code does this
        rate = 0.3 * base_rate
    return rate


def build_model(
    variant: Variant, scaling: Scaling, params: TrainParams, engine: EngineParams
) -> keras.Model:
    """The variant's network for this data's scaling, in the engine's precision, compiled as
    the lecture compiles it: what the pipeline trains, and what the benchmark's pipeline arm
    trains."""
    with dtype_policy(engine.precision):
        model = variant.build(scaling, params.augmentation)
    return compile_model(model, params)


def compile_model(model: keras.Model, params: TrainParams) -> keras.Model:
    model.compile(
        loss="categorical_crossentropy",
        optimizer=keras.optimizers.Adam(learning_rate=params.learning_rate),
        metrics=["accuracy"],
    )
    return model


def fit_and_validation_sets(
    data: ProcessedData, params: TrainParams
) -> tuple[ImageSplit, ImageSplit]:
    """The lecture's split per variant: `split` trains on the fit split and validates on the
    validation tail (CIFAR-10: the last 10 %; Fashion-MNIST: the last 5,000); `test` (cnn88's
    script) trains on all training images and "validates" on the test set."""
    if params.validation == "split":
        return data.train, data.validation
    combined = ImageSplit(
        np.concatenate([data.train.images, data.validation.images]),
        np.concatenate([data.train.labels, data.validation.labels]),
    )
    return combined, data.test


def check_batch_size(variant_name: str, batch_size: int, fit_images: int) -> None:
    """Refuse a batch larger than the images it is drawn from: every batch would be the whole
    split (fewer, larger steps than asked for) while the run records the batch size asked for."""
    if batch_size > fit_images:
        raise ParamsError(
            f"train.{variant_name}.batch_size: {batch_size} is larger than the {fit_images} "
            f"images it trains on; use at most {fit_images}"
        )


@contextlib.contextmanager
def dtype_policy(name: str) -> Iterator[None]:
    """Build models under the Keras dtype policy `name` ("float32", "mixed_bfloat16")."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


class EpochEnd(keras.callbacks.Callback):
    """After each epoch: a resumable checkpoint and the history file, then the metrics to
    MLflow (step=epoch).

    In that order: if the store fails, the epoch is already saved and a rerun resumes after it
    (logging the metrics it missed); if the process is killed between the two, likewise. The
    history file is rewritten every epoch so that `dvc plots show` and the VS Code extension
    draw the curves while the stage runs.
    With `keep_best`, an epoch whose val_loss is strictly lower than every earlier one (as
    Keras' ModelCheckpoint(save_best_only=True) decides) becomes the state's best epoch.
    """

    def __init__(
        self,
        checkpoint: Checkpoint,
        state: TrainingState,
        history: Path,
        started: float,
        keep_best: bool,
    ) -> None:
        super().__init__()
        self.checkpoint, self.state, self.history = checkpoint, state, history
        self.started, self.keep_best = started, keep_best

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = {key: float(value) for key, value in (logs or {}).items()}
        if "learning_rate" not in logs:
            logs["learning_rate"] = float(
                keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)
            )
        if all(math.isfinite(value) for value in logs.values()):
            self._checkpoint(epoch, logs)
        # A diverged epoch is logged (the user sees the NaN) but never checkpointed;
        # TerminateOnNaN stops the loop.
        tracking.log_epoch(logs, epoch)

    def _checkpoint(self, epoch: int, logs: dict[str, float]) -> None:
        for key, value in logs.items():
            self.state.history.setdefault(key, []).append(value)
        self.state.epochs_done = epoch + 1
        self.state.train_seconds += time.perf_counter() - self.started
        self.started = time.perf_counter()
        best = self.state.best_val_loss
        new_best = self.keep_best and (best is None or logs["val_loss"] < best)
        if new_best:
            self.state.best_epoch, self.state.best_val_loss = epoch, logs["val_loss"]
        self.checkpoint.save(self.model, self.state, new_best=new_best)
        write_history_csv(self.history, self.state.history)


def train_variant(
    variant_name: str, params: Params, data: ProcessedData, outputs: TrainingOutputs
) -> dict[str, Any]:
    """Train one variant at its params, resuming its checkpoint if one exists; return the record.

    Raises `TrackingUnavailable` (store down, read-only or damaged; finished epochs are kept),
    `CheckpointBusy` (the same settings are training in another process), `TrainingDiverged`,
    or, before any work, `NotWritable` (an output's folder takes no file) or `ParamsError` (a
    batch larger than the images it is drawn from).
    """
    variant = get_variant(variant_name)
    with _distributed(params.engine) as layout:
        settings = {
            "variant": variant_name,
            "train": params.train[variant_name].model_dump(),
            "engine": params.engine.model_dump(),
            "data_digest": data.digest,
            "backend": keras.backend.backend(),
        }
        if layout.processes > 1:
            # Processes of one run on one machine must not share (and lock) a checkpoint.
            settings["process"] = f"{layout.process_id}/{layout.processes}"
        checkpoint = Checkpoint(outputs.checkpoints, variant_name, fingerprint(settings))
        check_outputs_writable(outputs, checkpoint)
        with checkpoint:
            return _train_in(variant, params, data, outputs, checkpoint, settings, layout)


def check_outputs_writable(outputs: TrainingOutputs, checkpoint: Checkpoint) -> None:
    """Fail before any epoch, naming the path, where an output could not be written: found
    when the last epoch is done, a read-only folder would cost the whole training."""
    for path in (outputs.model, outputs.record, outputs.history, checkpoint.folder / STATE_FILE):
        check_writable(path)


@contextlib.contextmanager
def _distributed(engine: EngineParams) -> Iterator[Layout]:
    """`engine.distribution` in force for the block. A process other than the chief logs to a
    throwaway store of its own: the run's one MLflow run is the chief's."""
    layout = distribution.start(engine)
    try:
        if layout.is_chief:
            yield layout
            return
        with (
            tempfile.TemporaryDirectory(prefix="deeplecture-process-") as folder,
            _environment("MLFLOW_TRACKING_URI", f"sqlite:///{Path(folder) / 'mlflow.db'}"),
        ):
            yield layout
    finally:
        if engine.distribution != "none":
            distribution.stop()


@contextlib.contextmanager
def _environment(name: str, value: str) -> Iterator[None]:
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


def _train_in(
    variant: Variant,
    params: Params,
    data: ProcessedData,
    outputs: TrainingOutputs,
    checkpoint: Checkpoint,
    settings: dict[str, Any],
    layout: Layout,
) -> dict[str, Any]:
    train_params, engine = params.train[variant.name], params.engine
    tracking.use_project_store()  # a store that cannot be used fails before any work
    fit_set, validation_set = fit_and_validation_sets(data, train_params)
    check_batch_size(variant.name, train_params.batch_size, len(fit_set))
    distribution.check_batches(layout, len(fit_set), train_params.batch_size)
    distribution.check_batches(layout, len(validation_set), VALIDATION_BATCH_SIZE, "validation")
    seed_everything(train_params.seed, engine.deterministic)
    resumed = checkpoint.load()
    if resumed:
        model, state = resumed
        print(f"resuming {variant.name} after epoch {state.epochs_done} from {checkpoint.folder}")
    else:
        model = build_model(variant, data.scaling, train_params, engine)
        state = TrainingState(fingerprint=checkpoint.fingerprint, settings=settings)

    tags = tracking.run_tags(variant.name, variant.dataset, params.profile)
    tags["device"] = _announce_device(variant.name, layout)
    tags["distribution"] = engine.distribution
    if params.sweep:
        tags["sweep"] = params.sweep  # deeplecture-sweep collects a sweep's runs by this tag
    if resumed:
        tags["resumed_after_epoch"] = str(state.epochs_done)
    _close_abandoned_runs(checkpoint, settings)
    with tracking.tracked_run(
        variant.dataset, f"{variant.name}-{params.profile}", tags, state.run_id
    ) as run:
        try:
            if state.run_id != run.info.run_id:
                # A new run: describe it, and checkpoint at once, so that even a kill during
                # the first epoch is resumed in this run rather than leaving it RUNNING.
                state.run_id = run.info.run_id
                _log_run_inputs(variant, params, data, fit_set, validation_set, model, layout)
                checkpoint.save(model, state)
            tracking.log_missing_epochs(state.run_id, state.history)
            _fit(
                model,
                train_params,
                engine,
                fit_set,
                validation_set,
                checkpoint,
                state,
                outputs.history,
            )
            record = _finish(
                variant, model, params, data, outputs, checkpoint, state, fit_set, layout
            )
        except tracking.TrackingUnavailable as error:
            # The run could not be closed through a failing store: whoever reruns closes it.
            state.unfinished_status = "FAILED"
            checkpoint.save_state(state)
            raise tracking.TrackingUnavailable(
                f"{error}; the {state.epochs_done} finished epochs are kept in "
                f"{checkpoint.folder}: rerun to resume"
            ) from error
    checkpoint.clear()
    return record


def _announce_device(variant_name: str, layout: Layout) -> str:
    """Say what trains (and, loudly, when a GPU sits unused); return the device's name."""
    device = describe_device()
    versions = describe_versions()
    backend = keras.backend.backend()
    spans = f" ({layout.describe()}, data parallel)" if layout.devices > 1 else ""
    print(f"training {variant_name} on {device}{spans} with Keras {versions['keras']} on {backend}")
    warning = gpu_unused_warning(device)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    return device


def _close_abandoned_runs(checkpoint: Checkpoint, settings: dict[str, Any]) -> None:
    """Close the MLflow runs of checkpoints whose process died (SIGKILL, a lost store) and say
    what differs in this variant's, so none stays RUNNING and none is silently ignored."""
    for folder, state in checkpoint.abandoned_siblings():
        if state.run_id and tracking.close_abandoned_run(state.run_id, state.unfinished_status):
            print(
                f"MLflow run {state.run_id} of {folder} was still RUNNING: marked "
                f"{state.unfinished_status}"
            )
        if state.settings.get("variant") == settings["variant"]:
            changes = "; ".join(changed_settings(state.settings, settings)) or "unknown"
            print(
                f"note: {folder} holds {state.epochs_done} epochs made with other settings "
                f"({changes}); kept for a rerun of those, delete it to free the space"
            )


def _log_run_inputs(
    variant: Variant,
    params: Params,
    data: ProcessedData,
    fit_set: ImageSplit,
    validation_set: ImageSplit,
    model: keras.Model,
    layout: Layout,
) -> None:
    """A new run's params (the values that train, after the profile) and its dataset."""
    train_params, engine = params.train[variant.name], params.engine
    source = getattr(params.data, variant.dataset)
    with tracking.store_calls("logging the run's params"):
        mlflow.log_params(
            {
                **train_params.model_dump(),
                **{f"engine_{key}": value for key, value in engine.model_dump().items()},
                "variant": variant.name,
                "profile": params.profile,
                "data_source": source.effective_source,
                "scaling": data.info["scaling"]["method"],
                "train_images": len(fit_set),
                "validation_images": len(validation_set),
                "param_count": model.count_params(),
                "devices": layout.devices,  # every device of every process
                "processes": layout.processes,
            }
        )
        tracking.log_dataset(
            fit_set.images,
            fit_set.labels,
            source.effective_source,
            name=f"{variant.dataset}-train",
            digest=data.digest,
        )


def _finish(
    variant: Variant,
    model: keras.Model,
    params: Params,
    data: ProcessedData,
    outputs: TrainingOutputs,
    checkpoint: Checkpoint,
    state: TrainingState,
    fit_set: ImageSplit,
    layout: Layout,
) -> dict[str, Any]:
    """Keep the right epoch's weights, write the outputs, log the model; return the record."""
    train_params = params.train[variant.name]
    if train_params.keep_best:
        model.load_weights(checkpoint.best_weights(state))
    kept_epoch = state.best_epoch if train_params.keep_best else state.epochs_done - 1
    record = {
        "variant": variant.name,
        "run_id": state.run_id,
        "epochs": state.epochs_done,
        "kept_epoch": kept_epoch,  # 0-based, as history.csv and MLflow's steps
        "train_seconds": round(state.train_seconds, 2),
        "param_count": model.count_params(),
        "history": state.history,
        "data_digest": data.digest,
        "data_source": getattr(params.data, variant.dataset).effective_source,
        "profile": params.profile,
        "augmentation": train_params.augmentation,  # the report states what it changes
        "backend": keras.backend.backend(),
        "engine": params.engine.model_dump(),
        "device": describe_device(),
        "devices": layout.devices,
        "processes": layout.processes,
        "versions": describe_versions(),
    }
    model_file.save(model, outputs.model, data.info["class_names"])
    write_history_csv(outputs.history, state.history)  # also when a resume had no epoch left
    with tracking.store_calls("logging the trained model"):
        mlflow.log_metrics(
            {
                "train_seconds": state.train_seconds,
                "epochs_completed": state.epochs_done,
                "kept_epoch": kept_epoch,
            }
        )
        # The evaluate stage links its test metrics to this LoggedModel and registers it.
        with distribution.local():  # the saved file, loaded back in this process only
            record["model_id"] = served_model.log_model(
                outputs.model, variant.name, fit_set.images[:2]
            )
    write_json(outputs.record, record)  # last: a record always names a logged model
    return record


def _fit(
    model: keras.Model,
    params: TrainParams,
    engine: EngineParams,
    fit_set: ImageSplit,
    validation_set: ImageSplit,
    checkpoint: Checkpoint,
    state: TrainingState,
    history: Path,
) -> None:
    if state.epochs_done >= params.epochs:
        return
    callbacks: list[keras.callbacks.Callback] = [
        keras.callbacks.TerminateOnNaN(),
        EpochEnd(checkpoint, state, history, time.perf_counter(), params.keep_best),
    ]
    if params.lr_schedule == "lecture88":
        base_rate = params.learning_rate
        callbacks.append(
            keras.callbacks.LearningRateScheduler(
                lambda epoch, _current: lecture88_schedule(epoch, base_rate)
            )
        )
    # One batch stream for the whole run: a resumed run takes it up where its epoch starts.
    run_epochs(
        model,
        params,
        engine,
        fit_set,
        validation_set,
        initial_epoch=state.epochs_done,
        batch_seed=params.seed,
        callbacks=callbacks,
        progress_name=state.settings["variant"],
    )
    if state.epochs_done < params.epochs:
        # Both loops only end early when TerminateOnNaN stopped them.
        checkpoint.clear()  # divergence is deterministic: resuming it would diverge again
        raise TrainingDiverged(
            f"loss became NaN or infinite in epoch {state.epochs_done + 1}; no model was saved "
            f"(learning_rate={params.learning_rate})"
        )


def write_history_csv(path: Path, history: dict[str, list[float]]) -> None:
    """One row per finished epoch (0-based, as MLflow's steps), written atomically."""
    keys = [key for key in HISTORY_KEYS if key in history]
    rows = ["epoch," + ",".join(keys)]
    for epoch in range(len(history.get("loss", []))):
        rows.append(f"{epoch}," + ",".join(f"{history[key][epoch]:.6g}" for key in keys))
    with atomic_path(path, suffix=".csv") as tmp:
        tmp.write_text("\n".join(rows) + "\n")
