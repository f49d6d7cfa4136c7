"""Seeds of one variant trained together: N runs, one program, one model file and MLflow run each.

Order of events in `train_together`: one `TrainingRun` per seed (the variant's settings with that
seed; its own checkpoint and outputs) -> every output and batch checked, every checkpoint held ->
on JAX with the fast loop, each seed's model built after seeding with its own seed (or resumed),
then all trained through one compiled step (`loops.seeds`: vectorised over the stacked states on
an accelerator); on TensorFlow and PyTorch, or with `engine.loop: fit`, each seed trains alone in
turn, as the train stage would train it -> per seed, its MLflow run opens (or reopens), takes its
finished epochs from the checkpoint, and gets its model file and record (`training.finish`) ->
the checkpoints are cleared once every seed is finished, so a kill while finishing costs no
training. The stage then evaluates each file and logs it as its run's LoggedModel.

The runs open when training ends: a run cannot show its epochs live, but no run is ever left
RUNNING by a kill during the hours of training (a resumed run opens them then).
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable
from typing import Any

import keras

from deeplecture import tracking
from deeplecture.data.processed import ProcessedData
from deeplecture.distribution import SINGLE
from deeplecture.loops import run_seeds_together
from deeplecture.models import get_variant
from deeplecture.params import Params, ParamsError
from deeplecture.training import (
    TrainingOutputs,
    TrainingRun,
    check_not_diverged,
    check_run,
    epoch_callbacks,
    finish,
    fit,
    start_model,
    tracked,
)


def train_together(
    variant_name: str,
    params: Params,
    data: ProcessedData,
    outputs_of: Callable[[int], TrainingOutputs],
) -> list[dict[str, Any]]:
    """Train `variant_name` under each seed of `params.together.seeds`; return each seed's
    record, in that order. `outputs_of(seed)`: where that seed's files go.

    Raises what `training.train_variant` raises; `ParamsError` before any work when no seeds
    are named or the engine spans several devices.
    """
    seeds = params.together.seeds
    if not seeds:
        raise ParamsError(
            "together.seeds: null; name the seeds to train together (deeplecture-sweep run "
            "NAME --seeds N --together sets them)"
        )
    if params.engine.distribution != "none":
        raise ParamsError(
            f"engine.distribution: {params.engine.distribution}; seeds trained together share "
            "one device, use none"
        )
    variant = get_variant(variant_name)
    runs = [
        TrainingRun(
            variant,
            params,
            params.train[variant_name].model_copy(update={"seed": seed}),
            data,
            outputs_of(seed),
            SINGLE,
            together=True,
        )
        for seed in seeds
    ]
    for run in runs:
        check_run(run)
    with contextlib.ExitStack() as held:
        for run in runs:
            held.enter_context(run.checkpoint)
        tracking.use_project_store()  # a store that cannot be used fails before any work
        if keras.backend.backend() == "jax" and params.engine.loop == "fast":
            _train_vectorised(runs, params.together.strategy)
        else:
            for run in runs:
                start_model(run)
                fit(run, log_to_mlflow=False)
                run.strategy = "one by one"
        records = []
        for run in runs:
            with tracked(run):
                records.append(finish(run))
        for run in runs:
            run.checkpoint.clear()
    return records


def _train_vectorised(runs: list[TrainingRun], strategy: str) -> None:
    """Every seed's model, then the seeds trained through one compiled step; seeds resumed at
    different epochs (a kill between two seeds' checkpoints) train as groups, in turn."""
    for run in runs:
        start_model(run)
        run.strategy = strategy  # resumed complete: how it was asked to train
    unfinished = [run for run in runs if run.state.epochs_done < run.train.epochs]
    by_epoch = lambda run: run.state.epochs_done  # noqa: E731
    for initial_epoch, group in itertools.groupby(sorted(unfinished, key=by_epoch), by_epoch):
        group = list(group)
        first = group[0]
        used = run_seeds_together(
            [run.model for run in group],
            first.train,
            first.fit_set,
            first.validation_set,
            initial_epoch=initial_epoch,
            steps_per_call=first.params.engine.steps_per_call,
            seeds=[run.train.seed for run in group],
            callbacks=[epoch_callbacks(run, log_to_mlflow=False) for run in group],
            strategy=strategy,
            progress_name=f"{first.variant.name} x {len(group)} seeds",
        )
        print(f"trained {len(group)} seeds of {first.variant.name} together ({used})")
        for run in group:
            run.strategy = used
    for run in runs:
        check_not_diverged(run)
