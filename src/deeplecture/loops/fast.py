"""`fit_fast`: the epochs of `model.fit`, driven over a step runner.

Same contract as `fit` for what the pipeline relies on: the same Keras callbacks are called at
the same points (`on_epoch_begin` before an epoch, so LearningRateScheduler works;
`on_train_batch_end` after each call, so TerminateOnNaN works; `on_epoch_end` with `loss`,
`accuracy`, `val_loss`, `val_accuracy` as the running means `fit` reports), and an epoch stopped
by a callback still ends with validation and `on_epoch_end`, as in `fit`.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np

from deeplecture.data.splits import ImageSplit
from deeplecture.loops.batches import epoch_batches, group_steps, shuffled_passes, steps_in_epoch
from deeplecture.loops.runners import make_runner

# Validation runs forward only, with batch normalization's moving statistics and no dropout, so
# its results do not depend on the batch size; large batches make it a few calls an epoch.
VALIDATION_BATCH_SIZE = 1024


def fit_fast(
    model: keras.Model,
    fit_set: ImageSplit,
    validation_set: ImageSplit,
    *,
    batch_size: int,
    epochs: int,
    initial_epoch: int,
    steps_per_epoch: int | None,
    steps_per_call: int,
    seed: int,
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> None:
    """Train `model` (compiled) from `initial_epoch` to `epochs` on `fit_set`.

    Batches come from `shuffled_passes(seed)`: one reshuffled pass an epoch, or
    `steps_per_epoch` batches that run on across passes (cnn88), as the fit path's generator;
    from `initial_epoch` on, the batches an uninterrupted run would see there.
    """
    runner = make_runner(model, fit_set.images, fit_set.onehot, batch_size, steps_per_call)
    callback_list = keras.callbacks.CallbackList(list(callbacks), model=model)
    steps = steps_in_epoch(len(fit_set), batch_size, steps_per_epoch)
    stream = shuffled_passes(len(fit_set), batch_size, seed, start=initial_epoch * steps)
    validation_labels = validation_set.onehot  # made once, not every epoch

    model.stop_training = False
    callback_list.on_train_begin()
    for epoch in range(initial_epoch, epochs):
        model.reset_metrics()
        callback_list.on_epoch_begin(epoch)
        logs: dict[str, float] = {}
        steps_done = 0
        for indices in group_steps(epoch_batches(stream, steps), batch_size, steps_per_call):
            runner.train(indices)
            steps_done += len(indices)
            logs = floats(model.get_metrics_result())
            callback_list.on_train_batch_end(steps_done - 1, logs)
            if model.stop_training:
                break
        logs.update(validation_logs(model, validation_set, validation_labels))
        callback_list.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    callback_list.on_train_end()


def validation_logs(
    model: keras.Model, validation_set: ImageSplit, labels: np.ndarray
) -> dict[str, float]:
    """The epoch's `val_` logs, as `Model.fit` names them; `labels`: the set's one-hot labels,
    made once by the caller."""
    validation = model.evaluate(
        validation_set.images,
        labels,
        batch_size=VALIDATION_BATCH_SIZE,
        verbose=0,
        return_dict=True,
    )
    return {f"val_{key}": value for key, value in floats(validation).items()}


def floats(logs: dict[str, object]) -> dict[str, float]:
    return {key: float(keras.ops.convert_to_numpy(value)) for key, value in logs.items()}
