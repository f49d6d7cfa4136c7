"""The training loops, in one package: which images each step sees (`batches`), how many steps
run in one compiled call on each backend (`runners`), the epochs of the fast loop (`fast`), and
`run_epochs`, the one entry point that picks `Model.fit` or the fast loop (`engine.loop`).

The orchestration around them (build, resume, track, record) is `deeplecture.training`.
"""

from __future__ import annotations

import keras

from deeplecture.data.splits import ImageSplit
from deeplecture.loops.batches import endless_batches, steps_in_epoch
from deeplecture.loops.fast import fit_fast
from deeplecture.params import EngineParams, TrainParams
from deeplecture.progress import StageProgress


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
    progress_name: str = "training",
) -> None:
    """Train the compiled `model` from `initial_epoch` to `params.epochs` with `engine.loop`.

    The one place that picks the loop: the pipeline and the benchmark both call it. `fit` is
    the reference: `Model.fit` as the lecture's scripts call it. Batches come from
    `shuffled_passes(batch_seed)` in both loops (`Model.fit` shuffles one pass an epoch itself
    when the variant has no `steps_per_epoch`). Both loops report through `StageProgress`
    (named `progress_name`): a bar on a terminal, a line every few seconds elsewhere."""
    progress = StageProgress(
        progress_name,
        epochs=params.epochs,
        initial_epoch=initial_epoch,
        steps=steps_in_epoch(len(fit_set), params.batch_size, params.steps_per_epoch),
        batch_size=params.batch_size,
    )
    callbacks = [*callbacks, progress]  # last: an epoch line shows what the others logged
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
        "verbose": 0,  # StageProgress reports
    }
    if params.steps_per_epoch is None:
        model.fit(
            fit_set.images, fit_set.onehot, batch_size=params.batch_size, shuffle=True, **common
        )
    else:
        batches = endless_batches(fit_set, params.batch_size, seed=batch_seed)
        model.fit(batches, steps_per_epoch=params.steps_per_epoch, **common)
