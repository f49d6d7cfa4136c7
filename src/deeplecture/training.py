"""Training one variant as the lecture did, resumable and tracked.

Only `keras` is used here, so the same code trains with `KERAS_BACKEND=tensorflow`, `jax` or
`torch`. Order of events in `train_variant`: settings and data -> checkpoint (resume or fresh) ->
MLflow run -> the epochs (`engine.loop`: the fast path or `Model.fit`), checkpointing every
epoch -> best epoch's weights restored (`keep_best`) -> final model written atomically -> record.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import mlflow
import numpy as np

from deeplecture import tracking
from deeplecture.atomic import atomic_path, write_json
from deeplecture.checkpoints import Checkpoint, TrainingState, fingerprint
from deeplecture.data.processed import ProcessedData
from deeplecture.data.splits import ImageSplit
from deeplecture.fastpath.batches import shuffled_passes
from deeplecture.fastpath.loop import fit_fast
from deeplecture.models import get_variant
from deeplecture.params import EngineParams, Params, TrainParams
from deeplecture.runtime import describe_device, seed_everything

HISTORY_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite: no model is saved."""


@dataclass(frozen=True)
class TrainingOutputs:
    """Where a training stage writes (all paths given by dvc.yaml)."""

    model: Path
    record: Path
    history: Path
    checkpoint: Path


def lecture88_schedule(epoch: int, learning_rate: float) -> float:
    """The learning-rate schedule of Cifar10_CNN_88_Train.py, dead branch included.

    `epoch > 100` can never be reached because `epoch > 75` is tested first, so the lecture's
    intended 3e-4 never happens; we reproduce what the code did, not what it meant.
    """
    lr = 1e-3
    if epoch > 75:
        lr = 5e-4
    elif epoch > 100:  # noqa: SIM114 - unreachable on purpose: the lecture's code does this
        lr = 3e-4
    return lr


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


def endless_batches(
    split: ImageSplit, batch_size: int, seed: int
) -> Iterator[tuple[np.ndarray, ...]]:
    """`shuffled_passes` as (images, one-hot labels) batches, for `model.fit`."""
    onehot = split.onehot
    for index in shuffled_passes(len(split), batch_size, seed):
        yield split.images[index], onehot[index]


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
    """After each epoch: metrics to MLflow (step=epoch) and a resumable checkpoint.

    With `keep_best`, an epoch whose val_loss is strictly lower than every earlier one (as
    Keras' ModelCheckpoint(save_best_only=True) decides) becomes the state's best epoch.
    """

    def __init__(
        self, checkpoint: Checkpoint, state: TrainingState, started: float, keep_best: bool
    ) -> None:
        super().__init__()
        self.checkpoint, self.state, self.started = checkpoint, state, started
        self.keep_best = keep_best

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = {key: float(value) for key, value in (logs or {}).items()}
        if "learning_rate" not in logs:
            logs["learning_rate"] = float(
                keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)
            )
        mlflow.log_metrics(logs, step=epoch)
        if not all(math.isfinite(value) for value in logs.values()):
            return  # never checkpoint a diverged model; TerminateOnNaN stops the fit
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


def train_variant(
    variant_name: str, params: Params, data: ProcessedData, outputs: TrainingOutputs
) -> dict[str, Any]:
    """Train one variant at its params, resuming a matching checkpoint; return the record."""
    variant = get_variant(variant_name)
    train_params = params.train[variant_name]
    source = getattr(params.data, variant.dataset)
    engine = params.engine
    run_fingerprint = fingerprint(
        variant_name,
        train_params.model_dump(),
        engine.model_dump(),
        data.digest,
        keras.backend.backend(),
    )

    seed_everything(train_params.seed, engine.deterministic)
    checkpoint = Checkpoint(outputs.checkpoint)
    resumed = checkpoint.load(run_fingerprint)
    if resumed:
        model, state = resumed
        print(f"resuming {variant_name} after epoch {state.epochs_done} from {checkpoint.folder}")
    else:
        with dtype_policy(engine.precision):
            model = variant.build(data.scaling, train_params.augment)
        model = compile_model(model, train_params)
        state = TrainingState(fingerprint=run_fingerprint)

    fit_set, validation_set = fit_and_validation_sets(data, train_params)
    tags = tracking.run_tags(variant_name, variant.dataset, params.profile)
    with tracking.tracked_run(
        variant.dataset, f"{variant_name}-{params.profile}", tags, state.run_id
    ) as run:
        if state.run_id is None:
            state.run_id = run.info.run_id
            mlflow.log_params(
                {
                    **train_params.model_dump(),
                    **{f"engine_{key}": value for key, value in engine.model_dump().items()},
                    "variant": variant_name,
                    "profile": params.profile,
                    "data_source": source.effective_source,
                    "scaling": data.info["scaling"]["method"],
                    "train_images": len(fit_set),
                    "validation_images": len(validation_set),
                    "param_count": model.count_params(),
                }
            )
            tracking.log_dataset(
                fit_set.images,
                fit_set.labels,
                source.effective_source,
                name=f"{variant.dataset}-train",
                digest=data.digest,
            )
        _fit(model, train_params, engine, fit_set, validation_set, checkpoint, state)
        if train_params.keep_best:
            model.load_weights(checkpoint.best_weights(state))
        kept_epoch = state.best_epoch if train_params.keep_best else state.epochs_done - 1

        record = {
            "variant": variant_name,
            "run_id": state.run_id,
            "epochs": state.epochs_done,
            "kept_epoch": kept_epoch,  # 0-based, as history.csv and MLflow's steps
            "train_seconds": round(state.train_seconds, 2),
            "param_count": model.count_params(),
            "history": state.history,
            "data_digest": data.digest,
            "data_source": source.effective_source,
            "profile": params.profile,
            "backend": keras.backend.backend(),
            "engine": engine.model_dump(),
            "device": describe_device(),
            "keras_version": keras.__version__,
        }
        _save_model(model, outputs.model)
        write_json(outputs.record, record)
        _write_history_csv(outputs.history, state.history)
        mlflow.log_metrics(
            {
                "train_seconds": state.train_seconds,
                "epochs_completed": state.epochs_done,
                "kept_epoch": kept_epoch,
            }
        )
        tracking.log_keras_model(model, fit_set.images[:2])
    checkpoint.clear()
    return record


def _fit(
    model: keras.Model,
    params: TrainParams,
    engine: EngineParams,
    fit_set: ImageSplit,
    validation_set: ImageSplit,
    checkpoint: Checkpoint,
    state: TrainingState,
) -> None:
    if state.epochs_done >= params.epochs:
        return
    callbacks: list[keras.callbacks.Callback] = [
        keras.callbacks.TerminateOnNaN(),
        EpochEnd(checkpoint, state, time.perf_counter(), params.keep_best),
    ]
    if params.lr_schedule == "lecture88":
        callbacks.append(keras.callbacks.LearningRateScheduler(lecture88_schedule))
    # A resumed run continues with a new batch order: the seed moves on with the epochs done.
    run_epochs(
        model,
        params,
        engine,
        fit_set,
        validation_set,
        initial_epoch=state.epochs_done,
        batch_seed=params.seed + state.epochs_done,
        callbacks=callbacks,
    )
    if state.epochs_done < params.epochs:
        # Both loops only end early when TerminateOnNaN stopped them.
        checkpoint.clear()  # divergence is deterministic: resuming it would diverge again
        raise TrainingDiverged(
            f"loss became NaN or infinite in epoch {state.epochs_done + 1}; no model was saved "
            f"(learning_rate={params.learning_rate})"
        )


def run_epochs(
    model: keras.Model,
    params: TrainParams,
    engine: EngineParams,
    fit_set: ImageSplit,
    validation_set: ImageSplit,
    *,
    initial_epoch: int,
    batch_seed: int,
    callbacks: list[keras.callbacks.Callback],
) -> None:
    """Train the compiled `model` from `initial_epoch` to `params.epochs` with `engine.loop`.

    The one place that picks the loop: the pipeline and the benchmark both call it. `fit` is
    the reference: `Model.fit` as the lecture's scripts call it."""
    if engine.loop == "fast":
        fit_fast(
            model,
            fit_set,
            validation_set,
            batch_size=params.batch_size,
            epochs=params.epochs,
            initial_epoch=initial_epoch,
            steps_per_epoch=params.steps_per_epoch,
            steps_per_call=engine.steps_per_call,
            seed=batch_seed,
            callbacks=callbacks,
        )
        return
    common = {
        "epochs": params.epochs,
        "initial_epoch": initial_epoch,
        "validation_data": (validation_set.images, validation_set.onehot),
        "callbacks": callbacks,
        "verbose": 2,
    }
    if params.steps_per_epoch is None:
        model.fit(
            fit_set.images, fit_set.onehot, batch_size=params.batch_size, shuffle=True, **common
        )
    else:
        batches = endless_batches(fit_set, params.batch_size, seed=batch_seed)
        model.fit(batches, steps_per_epoch=params.steps_per_epoch, **common)


def _save_model(model: keras.Model, path: Path) -> None:
    with atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)


def _write_history_csv(path: Path, history: dict[str, list[float]]) -> None:
    keys = [key for key in HISTORY_KEYS if key in history]
    rows = ["epoch," + ",".join(keys)]
    for epoch in range(len(history.get("loss", []))):
        rows.append(f"{epoch}," + ",".join(f"{history[key][epoch]:.6g}" for key in keys))
    with atomic_path(path, suffix=".csv") as tmp:
        tmp.write_text("\n".join(rows) + "\n")
