"""Training one variant as the lecture did, resumable and tracked.

Only `keras` is used here, so the same code trains with `KERAS_BACKEND=tensorflow`, `jax` or
`torch`. A `TrainingRun` describes one run (variant, its settings and seed, data, outputs,
checkpoint, MLflow run); `train_variant` takes it through these steps, in this order, each a
function of the run alone (`together.py` takes many runs through the same steps):
`check_run` (outputs writable, batches fit) -> `start_model` (seeded; the checkpoint's model, or
a new one) -> `tracked` (the MLflow run, reopened when resuming, checkpointed at once so that
even a kill in epoch 1 is resumed in the same run) -> `fit` (the epochs, `loops.run_epochs`: the
fast path or `Model.fit`, each epoch checkpointed before its metrics go to MLflow, so a failing
store never costs a finished epoch) -> `finish` (best epoch's weights restored with `keep_best`,
model written atomically, record; the evaluate stage logs the model).
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

from deeplecture import distribution, model_file, tracking
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
    Without `log_to_mlflow` (seeds trained together, whose runs open when training ends) the
    epochs reach MLflow from the checkpoint's history, as a resumed run's missed epochs do.
    """

    def __init__(
        self,
        checkpoint: Checkpoint,
        state: TrainingState,
        history: Path,
        started: float,
        keep_best: bool,
        log_to_mlflow: bool = True,
    ) -> None:
        super().__init__()
        self.checkpoint, self.state, self.history = checkpoint, state, history
        self.started, self.keep_best, self.log_to_mlflow = started, keep_best, log_to_mlflow

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
        if self.log_to_mlflow:
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


@dataclass
class TrainingRun:
    """One training run: a variant at one seed, what it trains on, where it writes, and, once
    started, its checkpoint's model and state. The single-run and the seeds-together paths
    share it, and each step below takes it alone."""

    variant: Variant
    params: Params  # the whole file, after the profile (profile, sweep, data, engine)
    train: TrainParams  # this run's settings: params.train[variant], its seed its own
    data: ProcessedData
    outputs: TrainingOutputs
    layout: Layout
    together: bool = False  # trained with other seeds in one program (deeplecture-sweep)
    # How: "alone", or with the seeds "vmap", "sequential" (loops.seeds) or "one by one"
    strategy: str = "alone"
    model: keras.Model | None = None
    state: TrainingState | None = None
    resumed: bool = False

    def __post_init__(self) -> None:
        self.fit_set, self.validation_set = fit_and_validation_sets(self.data, self.train)
        self.settings: dict[str, Any] = {
            "variant": self.variant.name,
            "train": self.train.model_dump(),
            "engine": self.params.engine.model_dump(),
            "data_digest": self.data.digest,
            "backend": keras.backend.backend(),
        }
        if self.layout.processes > 1:
            # Processes of one run on one machine must not share (and lock) a checkpoint.
            self.settings["process"] = f"{self.layout.process_id}/{self.layout.processes}"
        if self.together:
            # Trained through another program than a run alone: never resumed by one.
            self.settings["together"] = True
        self.checkpoint = Checkpoint(
            self.outputs.checkpoints, self.variant.name, fingerprint(self.settings)
        )

    @property
    def name(self) -> str:
        return f"{self.variant.name} seed {self.train.seed}" if self.together else self.variant.name

    @property
    def source(self) -> str:
        return getattr(self.params.data, self.variant.dataset).effective_source


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
    with distributed(params.engine) as layout:
        run = TrainingRun(variant, params, params.train[variant_name], data, outputs, layout)
        check_run(run)
        with run.checkpoint:
            tracking.use_project_store()  # a store that cannot be used fails before any work
            start_model(run)
            with tracked(run):
                fit(run)
                record = finish(run)
            run.checkpoint.clear()
        return record


@contextlib.contextmanager
def distributed(engine: EngineParams) -> Iterator[Layout]:
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


def check_run(run: TrainingRun) -> None:
    """Fail before any epoch where an output could not be written (found when the last epoch
    is done, a read-only folder would cost the whole training) or a batch does not fit."""
    for path in (
        run.outputs.model,
        run.outputs.record,
        run.outputs.history,
        run.checkpoint.folder / STATE_FILE,
    ):
        check_writable(path)
    check_batch_size(run.variant.name, run.train.batch_size, len(run.fit_set))
    distribution.check_batches(run.layout, len(run.fit_set), run.train.batch_size)
    distribution.check_batches(
        run.layout, len(run.validation_set), VALIDATION_BATCH_SIZE, "validation"
    )


def start_model(run: TrainingRun) -> None:
    """The run's model and state: its checkpoint's, or a new model built after seeding."""
    seed_everything(run.train.seed, run.params.engine.deterministic)
    resumed = run.checkpoint.load()
    if resumed:
        run.model, run.state = resumed
        run.resumed = True
        print(
            f"resuming {run.name} after epoch {run.state.epochs_done} from {run.checkpoint.folder}"
        )
        return
    run.model = build_model(run.variant, run.data.scaling, run.train, run.params.engine)
    run.state = TrainingState(fingerprint=run.checkpoint.fingerprint, settings=run.settings)


@contextlib.contextmanager
def tracked(run: TrainingRun) -> Iterator[str]:
    """The run's MLflow run for the block (reopened when the checkpoint names one), described
    and checkpointed at once when new, with every finished epoch it lacks; yields its id."""
    state, variant = run.state, run.variant
    tags = tracking.run_tags(variant.name, variant.dataset, run.params.profile)
    tags["device"] = _announce_device(run.name, run.layout)
    tags["distribution"] = run.params.engine.distribution
    if run.params.sweep:
        tags["sweep"] = run.params.sweep  # deeplecture-sweep collects a sweep's runs by this tag
    if run.together:
        tags["trained_together"] = run.strategy
    if run.resumed:
        tags["resumed_after_epoch"] = str(state.epochs_done)
    _close_abandoned_runs(run.checkpoint, run.settings)
    with tracking.tracked_run(
        variant.dataset, f"{variant.name}-{run.params.profile}", tags, state.run_id
    ) as mlflow_run:
        try:
            if state.run_id != mlflow_run.info.run_id:
                # A new run: describe it, and checkpoint at once, so that even a kill during
                # the first epoch is resumed in this run rather than leaving it RUNNING.
                state.run_id = mlflow_run.info.run_id
                _log_run_inputs(run)
                run.checkpoint.save(run.model, state)
            tracking.log_missing_epochs(state.run_id, state.history)
            yield state.run_id
        except tracking.TrackingUnavailable as error:
            # The run could not be closed through a failing store: whoever reruns closes it.
            state.unfinished_status = "FAILED"
            run.checkpoint.save_state(state)
            raise tracking.TrackingUnavailable(
                f"{error}; the {state.epochs_done} finished epochs are kept in "
                f"{run.checkpoint.folder}: rerun to resume"
            ) from error


def _announce_device(name: str, layout: Layout) -> str:
    """Say what trains (and, loudly, when a GPU sits unused); return the device's name."""
    device = describe_device()
    versions = describe_versions()
    backend = keras.backend.backend()
    spans = f" ({layout.describe()}, data parallel)" if layout.devices > 1 else ""
    print(f"training {name} on {device}{spans} with Keras {versions['keras']} on {backend}")
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


def _log_run_inputs(run: TrainingRun) -> None:
    """A new run's params (the values that train, after the profile) and its dataset."""
    engine, layout = run.params.engine, run.layout
    with tracking.store_calls("logging the run's params"):
        mlflow.log_params(
            {
                **run.train.model_dump(),
                **{f"engine_{key}": value for key, value in engine.model_dump().items()},
                "variant": run.variant.name,
                "profile": run.params.profile,
                "data_source": run.source,
                "scaling": run.data.info["scaling"]["method"],
                "train_images": len(run.fit_set),
                "validation_images": len(run.validation_set),
                "param_count": run.model.count_params(),
                "devices": layout.devices,  # every device of every process
                "processes": layout.processes,
            }
        )
        tracking.log_dataset(
            run.fit_set.images,
            run.fit_set.labels,
            run.source,
            name=f"{run.variant.dataset}-train",
            digest=run.data.digest,
        )


def finish(run: TrainingRun) -> dict[str, Any]:
    """Keep the right epoch's weights, write the outputs, log the model; return the record."""
    model, state, outputs = run.model, run.state, run.outputs
    if run.train.keep_best:
        model.load_weights(run.checkpoint.best_weights(state))
    kept_epoch = state.best_epoch if run.train.keep_best else state.epochs_done - 1
    record = {
        "variant": run.variant.name,
        "seed": run.train.seed,
        "run_id": state.run_id,
        "epochs": state.epochs_done,
        "kept_epoch": kept_epoch,  # 0-based, as history.csv and MLflow's steps
        "train_seconds": round(state.train_seconds, 2),
        "param_count": model.count_params(),
        "history": state.history,
        "data_digest": run.data.digest,
        "data_source": run.source,
        "profile": run.params.profile,
        "augmentation": run.train.augmentation,  # the report states what it changes
        "trained": run.strategy,
        "backend": keras.backend.backend(),
        "engine": run.params.engine.model_dump(),
        "device": describe_device(),
        "devices": run.layout.devices,
        "processes": run.layout.processes,
        "versions": describe_versions(),
    }
    model_file.save(model, outputs.model, run.data.info["class_names"])
    write_history_csv(outputs.history, state.history)  # also when a resume had no epoch left
    with tracking.store_calls("logging the run's totals"):
        mlflow.log_metrics(
            {
                "train_seconds": state.train_seconds,
                "epochs_completed": state.epochs_done,
                "kept_epoch": kept_epoch,
            }
        )
    # Last: a record means the run is complete. The evaluate stage logs the model file as the
    # run's LoggedModel (served_model.py), so the serving code is no dependency of training.
    write_json(outputs.record, record)
    return record


def epoch_callbacks(run: TrainingRun, log_to_mlflow: bool) -> list[keras.callbacks.Callback]:
    """What happens around the run's epochs: NaN stop, checkpoint and history (and MLflow), the
    lecture's learning-rate schedule."""
    callbacks: list[keras.callbacks.Callback] = [
        keras.callbacks.TerminateOnNaN(),
        EpochEnd(
            run.checkpoint,
            run.state,
            run.outputs.history,
            time.perf_counter(),
            run.train.keep_best,
            log_to_mlflow,
        ),
    ]
    if run.train.lr_schedule == "lecture88":
        base_rate = run.train.learning_rate
        callbacks.append(
            keras.callbacks.LearningRateScheduler(
                lambda epoch, _current: lecture88_schedule(epoch, base_rate)
            )
        )
    return callbacks


def fit(run: TrainingRun, log_to_mlflow: bool = True) -> None:
    """Train the run's model from its state's epochs to its settings' (alone)."""
    if run.state.epochs_done >= run.train.epochs:
        return
    # One batch stream for the whole run: a resumed run takes it up where its epoch starts.
    run_epochs(
        run.model,
        run.train,
        run.params.engine,
        run.fit_set,
        run.validation_set,
        initial_epoch=run.state.epochs_done,
        batch_seed=run.train.seed,
        callbacks=epoch_callbacks(run, log_to_mlflow),
        progress_name=run.name,
    )
    check_not_diverged(run)


def check_not_diverged(run: TrainingRun) -> None:
    """Both loops only end early when TerminateOnNaN stopped them."""
    if run.state.epochs_done < run.train.epochs:
        run.checkpoint.clear()  # divergence is deterministic: resuming it would diverge again
        raise TrainingDiverged(
            f"{run.name}: loss became NaN or infinite in epoch {run.state.epochs_done + 1}; no "
            f"model was saved (learning_rate={run.train.learning_rate})"
        )


def write_history_csv(path: Path, history: dict[str, list[float]]) -> None:
    """One row per finished epoch (0-based, as MLflow's steps), written atomically."""
    keys = [key for key in HISTORY_KEYS if key in history]
    rows = ["epoch," + ",".join(keys)]
    for epoch in range(len(history.get("loss", []))):
        rows.append(f"{epoch}," + ",".join(f"{history[key][epoch]:.6g}" for key in keys))
    with atomic_path(path, suffix=".csv") as tmp:
        tmp.write_text("\n".join(rows) + "\n")
