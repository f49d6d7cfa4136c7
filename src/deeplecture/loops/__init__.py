"""The training loops, in one package: which images each step sees (`batches`), how many steps
run in one compiled call on each backend (`runners`), the epochs of the fast loop (`fast`), the
same for many seeds through one compiled step on JAX (`seeds`), and the entry points
`run_epochs` (one model: `Model.fit` or the fast loop, by `engine.loop`) and `run_seeds_together`.

The orchestration around them (build, resume, track, record) is `deeplecture.training`.
"""

from __future__ import annotations

import keras

from deeplecture.data.splits import ImageSplit
from deeplecture.loops.batches import endless_batches, steps_in_epoch
from deeplecture.loops.fast import fit_fast
from deeplecture.params import EngineParams, TrainParams
from deeplecture.progress import StageProgress
from deeplecture.runtime import raise_if_stop_requested


class StopAtSafePoints(keras.callbacks.Callback):
    """Act on a recorded stop signal (`runtime.stop_requests_heard`) between the loop's calls:
    before the first epoch (after the step is compiled), after each call or step, each
    validation batch and each epoch. Last among the callbacks: the epoch that just finished is
    checkpointed and logged before the stop ends the loop."""

    def on_train_begin(self, logs: dict | None = None) -> None:
        raise_if_stop_requested()

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        raise_if_stop_requested()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        raise_if_stop_requested()

    def on_test_batch_end(self, batch: int, logs: dict | None = None) -> None:
        raise_if_stop_requested()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        raise_if_stop_requested()


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
    the reference: `Model.fit` as the lecture's scripts call it. Batches come from one stream,
    `shuffled_passes(batch_seed)`, in both loops, and a run resumed at `initial_epoch` takes
    them from where that epoch starts in the stream: it sees the batches an uninterrupted run
    sees (Keras' own shuffling would start over at every resume). Both loops report through
    `StageProgress` (named `progress_name`): a bar on a terminal, a line every few seconds
    elsewhere. A stop signal recorded meanwhile ends the loop at its next safe point."""
    progress = _stage_progress(progress_name, params, len(fit_set), initial_epoch, seeds=1)
    # Progress after the others: an epoch line shows what they logged; the stop last of all.
    callbacks = [*callbacks, progress, StopAtSafePoints()]
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
    batches = endless_batches(
        fit_set, params.batch_size, seed=batch_seed, start=initial_epoch * progress.steps
    )
    model.fit(
        batches,
        steps_per_epoch=progress.steps,
        epochs=params.epochs,
        initial_epoch=initial_epoch,
        validation_data=(validation_set.images, validation_set.onehot),
        callbacks=callbacks,
        shuffle=False,  # the stream is shuffled: Keras would only warn that it cannot
        verbose=0,  # StageProgress reports
    )


def run_seeds_together(
    models: list[keras.Model],
    params: TrainParams,
    fit_set: ImageSplit,
    validation_set: ImageSplit,
    *,
    initial_epoch: int,
    steps_per_call: int,
    seeds: list[int],
    callbacks: list[list[keras.callbacks.Callback]],
    strategy: str,
    progress_name: str,
) -> str:
    """Train the compiled `models` (one variant, seed i's model built after seeding with
    `seeds[i]`) together from `initial_epoch` to `params.epochs`, with the fast loop on JAX;
    return the strategy used (`loops.seeds`). `callbacks[i]` are seed i's. Each seed sees the
    batches of `shuffled_passes(seeds[i])` it would see alone; one progress line counts every
    seed's images, and a recorded stop signal ends the loop at its next safe point."""
    from deeplecture.loops.seeds import fit_fast_seeds  # JAX's: imported on JAX only

    progress = _stage_progress(
        progress_name, params, len(fit_set), initial_epoch, seeds=len(models)
    )
    first, *others = callbacks
    return fit_fast_seeds(
        models,
        fit_set,
        validation_set,
        batch_size=params.batch_size,
        epochs=params.epochs,
        initial_epoch=initial_epoch,
        steps_per_epoch=params.steps_per_epoch,
        steps_per_call=steps_per_call,
        seeds=seeds,
        callbacks=[[*first, progress, StopAtSafePoints()], *others],
        strategy=strategy,
    )


def _stage_progress(
    name: str, params: TrainParams, fit_images: int, initial_epoch: int, seeds: int
) -> StageProgress:
    """One progress line for the stage's remaining epochs; a step trains a batch of each of
    the `seeds`, so its images are counted for all of them."""
    return StageProgress(
        name,
        epochs=params.epochs,
        initial_epoch=initial_epoch,
        steps=steps_in_epoch(fit_images, params.batch_size, params.steps_per_epoch),
        batch_size=params.batch_size * seeds,
    )
