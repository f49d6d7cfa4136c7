"""Train N seeds of one variant together (`loops.seeds`) and each alone, from the same start, and
measure how far apart they end; and each alone from a start one ulp away: the control, what a
rounding-level difference does by itself.

Run under JAX (tests/test_together.py runs it in a child process):
    KERAS_BACKEND=jax python tests/together_equivalence.py cnn74 cnn88 tiny [--device-loop tiny]
prints one JSON line per variant. `--device-loop VARIANT` also trains that variant's seeds
vmapped inside one `lax.fori_loop` a call (the program an accelerator runs; on a CPU its
convolutions run ~10x slower, so the tests take `tiny`, a small network with every kind of state).

Per variant, from the same three seeded models (their whole state restored between runs):
- `probe`: the first step's augmented images and dropout masks, drawn from each seed's state as
  the vmapped step draws them (the runner's stacked state under `jax.vmap`) and as alone;
- `training`: two epochs of `fit_fast_seeds` ("vmap", "sequential", and "nudged": from the
  nudged start) against `fit_fast` alone: the batches every call got, the state after the first
  call (the first step: the networks run one step a call) and at the end, each epoch's logs.
The control runs "sequential", which the same measurement shows is bit for bit `fit_fast`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import layers

sys.path.insert(0, str(Path(__file__).parent))

from conftest import learnable_images  # noqa: E402
from deeplecture.augmentation import LectureAugmentation  # noqa: E402
from deeplecture.data.splits import ImageSplit  # noqa: E402
from deeplecture.loops import runners, seeds  # noqa: E402
from deeplecture.loops.batches import shuffled_passes  # noqa: E402
from deeplecture.loops.fast import fit_fast  # noqa: E402
from deeplecture.models import get_variant  # noqa: E402
from deeplecture.runtime import seed_everything  # noqa: E402
from deeplecture.scaling import Scaling  # noqa: E402

SEEDS = (11, 12, 13)
VALIDATION, BATCH_SIZE, EPOCHS = 40, 16, 2


def _loop_shape(variant: str) -> tuple[int, int]:
    """(training images, steps a call). The networks: 32 images, two full batches an epoch,
    one step a call, so the state after the first call is the first step's; every batch shape
    costs a compilation, so no short batch. `tiny`: 40 images, calls of (2, 16) and (1, 8), so
    the loop's grouping of short batches and the device loop's padding are exercised."""
    return (40, 2) if variant == "tiny" else (32, 1)


ROUNDING = 1e-5  # a weight that differs by more than this did not just round


def halve_after_first_epoch(epoch: int, learning_rate: float) -> float:
    return 1e-3 if epoch == 0 else 5e-4


def _tiny() -> keras.Model:
    # Augmentation, batch normalization and dropout: every kind of state, at a small cost.
    inputs = keras.Input((32, 32, 3))
    h = LectureAugmentation()(inputs)
    h = layers.Rescaling(1 / 255)(h)
    h = layers.Conv2D(8, 3, activation="relu")(h)
    h = layers.BatchNormalization()(h)
    h = layers.Dropout(0.3)(h)
    h = layers.Flatten()(h)
    return keras.Model(inputs, layers.Dense(10, activation="softmax")(h))


def _build(variant: str, seed: int) -> keras.Model:
    seed_everything(seed)  # as the train stage: the seed picks weights and random streams
    if variant == "tiny":
        model = _tiny()
    else:
        augmentation = "lecture" if variant == "cnn88" else "none"
        model = get_variant(variant).build(Scaling.divide255(3), augmentation)
    model.compile(
        loss="categorical_crossentropy", optimizer=keras.optimizers.Adam(), metrics=["accuracy"]
    )
    return model


def _snapshot(model: keras.Model) -> list[list[np.ndarray]]:
    return [[np.array(v.value) for v in group] for group in seeds._variable_groups(model)]


def _restore(model: keras.Model, snapshot: list[list[np.ndarray]], nudge: bool = False) -> None:
    """Put `model` back in its `snapshot` state; `nudge`: every trainable weight one ulp up."""
    groups = seeds._variable_groups(model)
    for index, (group, values) in enumerate(zip(groups, snapshot, strict=True)):
        for variable, value in zip(group, values, strict=True):
            variable.assign(np.nextafter(value, np.inf) if nudge and index == 0 else value)


def _weight_difference(a: list[np.ndarray], b: list[np.ndarray]) -> dict[str, Any]:
    """Trainable weights: the largest difference, the first convolution's (issue 23's figure),
    and how many differ by more than rounding."""
    differences = np.concatenate([np.abs(x - y).ravel() for x, y in zip(a, b, strict=True)])
    first_conv = next(i for i, x in enumerate(a) if x.ndim == 4)
    return {
        "max": float(differences.max()),
        "first_conv": float(np.abs(a[first_conv] - b[first_conv]).max()),
        "differing": int((differences > ROUNDING).sum()),
        "count": int(differences.size),
    }


def _state_difference(a: list[list[np.ndarray]], b: list[list[np.ndarray]]) -> dict[str, Any]:
    """The rest of the state: integer variables (seed states, the step count) must match
    exactly; float ones (batch statistics, optimizer moments, metrics) to rounding."""
    integers_equal, float_max = True, 0.0
    for group_a, group_b in zip(a[1:], b[1:], strict=True):
        for x, y in zip(group_a, group_b, strict=True):
            if np.issubdtype(x.dtype, np.integer):
                integers_equal &= bool(np.array_equal(x, y))
            elif x.size:
                float_max = max(float_max, float(np.abs(x - y).max()))
    return {"integers_equal": integers_equal, "float_max": float_max}


def _probe(models: list[keras.Model], images: np.ndarray, rows: np.ndarray) -> dict[str, Any]:
    """The first step's random draws, from each seed's state: vmapped over the runner's
    stacked state with `models[0]`'s layers (as its step runs), and each seed alone."""
    import jax
    import jax.numpy as jnp

    onehot = np.eye(10, dtype="float32")[:1]
    runner = seeds.JaxSeedsRunner(models, images, onehot, BATCH_SIZE, 1, "vmap")

    def draws(model: keras.Model, non_trainable: list, batch: Any) -> dict[str, Any]:
        # A random layer's draw depends only on its own seed state and the shape: called alone
        # from the state the step starts from, it draws what it draws inside the step.
        positions = {id(v): i for i, v in enumerate(model.non_trainable_variables)}
        out = {}
        for number, layer in enumerate(model.layers):  # by position: names differ by model
            state = [non_trainable[positions[id(v)]] for v in layer.non_trainable_variables]
            if isinstance(layer, LectureAugmentation):
                out["augmented"] = layer.stateless_call([], state, batch, training=True)[0]
            elif isinstance(layer, layers.Dropout):
                ones = jnp.ones((batch.shape[0], *layer.input.shape[1:]))
                kept = layer.stateless_call([], state, ones, training=True)[0] != 0
                out[f"mask{number}"] = kept
        return out

    batches = images[rows].astype("float32")  # (seeds, batch, 32, 32, 3), as the step gathers
    first = models[0]
    together = jax.jit(jax.vmap(lambda nt, b: draws(first, nt, b)))(
        runner.stacked_state()[1], batches
    )
    alone = [
        jax.jit(lambda nt, b, m=model: draws(m, nt, b))(seeds._state_of(model)[1], batches[i])
        for i, model in enumerate(models)
    ]
    seed_pairs = [(i, j) for i in range(len(models)) for j in range(i + 1, len(models))]
    return {
        "identical": {
            key: all(np.array_equal(together[key][i], alone[i][key]) for i in range(len(models)))
            for key in alone[0]
        },
        # each seed draws its own: no two seeds share a mask or an augmentation
        "distinct": {
            key: not any(np.array_equal(alone[i][key], alone[j][key]) for i, j in seed_pairs)
            for key in alone[0]
        },
        "kept_fraction": {
            key: float(np.mean(alone[0][key])) for key in alone[0] if key.startswith("mask")
        },
    }


class _Recording:
    """Mixed into a runner: keeps every index array it is given to train."""

    calls: list[np.ndarray]

    def train(self, indices: np.ndarray) -> None:
        self.calls.append(np.array(indices))
        super().train(indices)  # type: ignore[misc]


class _AfterFirstCall(keras.callbacks.Callback):
    """The model's whole state after its first call (its first step, at one step a call)."""

    state: list[list[np.ndarray]] | None = None

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self.state is None:
            self.state = _snapshot(self.model)


def _train(
    how: str,
    models: list[keras.Model],
    fit_set: ImageSplit,
    validation_set: ImageSplit,
    steps_per_call: int,
) -> dict[str, Any]:
    """Two epochs `how`: "alone" (`fit_fast`, each seed in turn) or `fit_fast_seeds` with
    strategy "vmap", "sequential" or "device-loop" (vmap, looping on the device). Returns each
    seed's calls (the index arrays its runner got), its state after the first call and at the
    end, and its per-epoch logs."""
    histories = [keras.callbacks.History() for _ in models]
    first_calls = [_AfterFirstCall() for _ in models]
    callbacks = [
        [keras.callbacks.LearningRateScheduler(halve_after_first_epoch), history, first]
        for history, first in zip(histories, first_calls, strict=True)
    ]
    settings = {
        "batch_size": BATCH_SIZE,
        "epochs": EPOCHS,
        "initial_epoch": 0,
        "steps_per_epoch": None,
        "steps_per_call": steps_per_call,
    }
    made: list = []

    class Runner(_Recording, runners.JaxRunner if how == "alone" else seeds.JaxSeedsRunner):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.loop_on_device = self.loop_on_device or how == "device-loop"
            self.calls = []
            made.append(self)

    # The loops build their runner by these names (as tests/loop_equivalence.py swaps JaxRunner).
    module, name = (runners, "JaxRunner") if how == "alone" else (seeds, "JaxSeedsRunner")
    original = getattr(module, name)
    setattr(module, name, Runner)
    try:
        if how == "alone":
            for model, seed, own in zip(models, SEEDS, callbacks, strict=True):
                fit_fast(model, fit_set, validation_set, seed=seed, callbacks=own, **settings)
            calls = [run.calls for run in made]
        else:
            strategy = "vmap" if how == "device-loop" else how
            used = seeds.fit_fast_seeds(
                models, fit_set, validation_set, seeds=SEEDS, callbacks=callbacks,
                strategy=strategy, **settings,
            )  # fmt: skip
            assert used == strategy, used
            calls = [[call[i] for call in made[0].calls] for i in range(len(models))]
    finally:
        setattr(module, name, original)
    return {
        "calls": calls,
        "first_call": [first.state for first in first_calls],
        "state": [_snapshot(model) for model in models],
        "logs": [history.history for history in histories],
        # written back from the trained state: the scheduler's last rate reached it
        "learning_rate": [float(model.optimizer.learning_rate.numpy()) for model in models],
    }


def _compare(trained: dict[str, Any], alone: dict[str, Any]) -> list[dict[str, Any]]:
    """Per seed: the batches, the state after the first call and at the end, the logs."""
    results = []
    for i in range(len(SEEDS)):
        mine, theirs = trained["state"][i], alone["state"][i]
        calls, their_calls = trained["calls"][i], alone["calls"][i]
        first, their_first = trained["first_call"][i], alone["first_call"][i]
        result = {
            "same_batches": len(calls) == len(their_calls)
            and all(np.array_equal(a, b) for a, b in zip(calls, their_calls, strict=False)),
            "bit_equal": all(
                np.array_equal(a, b)
                for group_a, group_b in zip(mine, theirs, strict=True)
                for a, b in zip(group_a, group_b, strict=True)
            ),
            "first_call": {
                **_weight_difference(first[0], their_first[0]),
                **_state_difference(first, their_first),
            },
            **_weight_difference(mine[0], theirs[0]),
            **_state_difference(mine, theirs),
        }
        result["state_learning_rate"] = trained["learning_rate"][i]
        result["alone_state_learning_rate"] = alone["learning_rate"][i]
        for key in ("accuracy", "val_accuracy", "loss", "val_loss", "learning_rate"):
            result[key] = trained["logs"][i][key]
            result[f"alone_{key}"] = alone["logs"][i][key]
        results.append(result)
    return results


def measure(variant: str, device_loop: bool) -> dict[str, Any]:
    started = time.perf_counter()
    fit, steps_per_call = _loop_shape(variant)
    images, labels = learnable_images(fit + VALIDATION, seed=1)
    fit_set = ImageSplit(images[:fit], labels[:fit])
    validation_set = ImageSplit(images[fit:], labels[fit:])
    models = [_build(variant, seed) for seed in SEEDS]
    for model in models:  # optimizer and metrics variables exist from here on
        model._symbolic_build(data_batch=(images[:1], fit_set.onehot[:1]))
    starts = [_snapshot(model) for model in models]
    first_rows = np.stack([next(shuffled_passes(fit, BATCH_SIZE, seed)) for seed in SEEDS])

    result: dict[str, Any] = {"variant": variant, "seeds": list(SEEDS)}
    result["first_batches_distinct"] = len({tuple(rows) for rows in first_rows}) == len(SEEDS)
    result["probe"] = _probe(models, fit_set.images, first_rows)
    hows = ["alone", "vmap", "sequential", "nudged", *(["device-loop"] if device_loop else [])]
    runs = {}
    for how in hows:
        for model, start in zip(models, starts, strict=True):
            _restore(model, start, nudge=how == "nudged")
        strategy = "sequential" if how == "nudged" else how  # sequential: bit for bit alone
        runs[how] = _train(strategy, models, fit_set, validation_set, steps_per_call)
    result["training"] = {how: _compare(runs[how], runs["alone"]) for how in hows[1:]}
    # how far the first call moved each seed's weights alone: what "not written back" would show
    result["first_call_moved"] = [
        _weight_difference(after[0], start[0])
        for after, start in zip(runs["alone"]["first_call"], starts, strict=True)
    ]
    result["steps_per_call"] = steps_per_call
    result["fit_count"], result["validation_count"] = fit, VALIDATION
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="+", help="cnn74, cnn79, cnn84, cnn88 or tiny")
    parser.add_argument("--device-loop", action="append", default=[], metavar="VARIANT")
    args = parser.parse_args()
    import jax

    # Every runner compiles its own step, but the programs repeat (each seed alone, each run):
    # a compilation cache for this process serves each from its first compilation.
    with tempfile.TemporaryDirectory() as cache:
        jax.config.update("jax_compilation_cache_dir", cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
        for variant in args.variants:
            print(json.dumps(measure(variant, variant in args.device_loop)), flush=True)


if __name__ == "__main__":
    main()
