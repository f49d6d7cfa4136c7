"""Seeds of one variant trained together on JAX: N models, one compiled step.

Each model is one seed's: the same architecture, built after seeding with its own seed, so its
own initial weights and its own dropout and augmentation seed states. Keras' JAX `train_step` is
stateless: it maps a state (trainable, non-trainable, optimizer and metrics variables) and a
batch to the next state, and works for any state of the model's structure, so `models[0]`'s step
trains every seed. Two strategies, the same batches and random streams for each seed as alone:

- "vmap": the N states stacked along a leading seed axis and the step vectorised over it
  (`jax.vmap`), each seed its own batch of the device-resident data: one program for all seeds,
  which keeps an accelerator busy where one seed at batch 32 leaves it idle. From the same
  state its forward pass is bit for bit the seed's alone (batch statistics, augmentation, masks);
  the backward pass of a convolution over stacked weights is a batched convolution that sums in
  another order, so gradients differ by rounding (1e-7 to 3e-6 relative) and the weights agree
  with the seeds' alone as closely as a one-ulp nudge of the start does (tests/test_together.py).
- "sequential": one compiled step of one seed, applied to each seed's state in turn: compiled
  once for all seeds, and bit for bit what each seed computes alone with `runners.JaxRunner`.
  On a CPU vmap loses (2 cores, cnn84, batch 32, one step of all N = 1/2/4 seeds: 0.19/0.87/
  1.59 s vmapped against 0.16/0.36/0.67 s one seed after another), so "auto" takes it there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from deeplecture.data.splits import ImageSplit
from deeplecture.loops.batches import epoch_batches, group_steps, shuffled_passes, steps_in_epoch
from deeplecture.loops.fast import floats, validation_logs
from deeplecture.loops.runners import pad_rows

STRATEGIES = ("auto", "vmap", "sequential")


def _state_of(model: keras.Model) -> tuple[list[Any], ...]:
    """The model's training state as `train_step` takes it, in its order."""
    return tuple([v.value for v in group] for group in _variable_groups(model))


def _variable_groups(model: keras.Model) -> tuple[list[keras.Variable], ...]:
    return (
        model.trainable_variables,
        model.non_trainable_variables,  # includes dropout's and augmentation's seed states
        model.optimizer.variables,  # includes the learning rate a scheduler sets
        model.metrics_variables,
    )


class JaxSeedsRunner:
    """N models of one variant (same architecture, each built after seed_everything(its seed),
    compiled) trained through ONE compiled step."""

    def __init__(
        self,
        models: Sequence[keras.Model],
        images: np.ndarray,
        onehot: np.ndarray,
        batch_size: int,
        steps_per_call: int,
        strategy: str = "auto",
    ) -> None:
        backend = keras.backend.backend()
        if backend != "jax":
            raise ValueError(f"seeds train together on JAX only, not on {backend!r}")
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy {strategy!r} is not one of {', '.join(STRATEGIES)}")
        if not models:
            raise ValueError("no models to train together")
        import jax

        self.models = list(models)
        self.batch_size, self.steps_per_call = batch_size, steps_per_call
        for model in self.models:
            # As runners.make_runner: everything the step touches must exist before it compiles.
            model._symbolic_build(data_batch=(images[:1], onehot[:1]))
        shapes = [[tuple(v.shape) for v in model.weights] for model in self.models]
        if any(other != shapes[0] for other in shapes[1:]):
            raise ValueError("models trained together must share one architecture")
        on_accelerator = jax.devices()[0].platform != "cpu"
        if strategy == "auto":
            strategy = "vmap" if on_accelerator else "sequential"
        self.strategy = strategy
        # As JaxRunner: XLA's CPU backend runs convolutions inside a loop ~10x slower than
        # steps dispatched one by one, so the loop runs on the device only on an accelerator.
        self.loop_on_device = on_accelerator
        self._compile(images, onehot)

    def _compile(self, images: np.ndarray, onehot: np.ndarray) -> None:
        import jax

        model, input_dtype = self.models[0], self.models[0].inputs[0].dtype
        self.images, self.onehot = jax.device_put(images), jax.device_put(onehot)

        # The same gather and step as runners.JaxRunner: "sequential" runs JaxRunner's program.
        def step(state: Any, images: Any, onehot: Any, row: Any) -> Any:
            _, state = model.train_step(state, (images[row].astype(input_dtype), onehot[row]))
            return state

        # Each seed its own state and its own batch (row); the data is shared.
        seeds_step = jax.vmap(step, in_axes=(0, None, None, 0))

        def run(state: Any, images: Any, onehot: Any, indices: Any, count: Any) -> Any:
            # indices: (steps, seeds, batch); the state's leaves carry the seed axis first.
            body = lambda i, state: seeds_step(state, images, onehot, indices[i])  # noqa: E731
            return jax.lax.fori_loop(0, count, body, state)

        # The state is donated: its buffers are reused for the result, not copied.
        self._step = jax.jit(step, donate_argnums=0)
        self._seeds_step = jax.jit(seeds_step, donate_argnums=0)
        self._run = jax.jit(run, donate_argnums=0)

    def train(self, indices: np.ndarray) -> None:
        """indices: (N, steps, batch) int array, seed i's rows in indices[i]; each model's
        variables hold its result."""
        indices = np.asarray(indices)
        if indices.ndim != 3 or len(indices) != len(self.models):
            raise ValueError(
                f"indices of shape {indices.shape}; want (seeds={len(self.models)}, steps, batch)"
            )
        if self.strategy == "sequential":
            for model, rows in zip(self.models, indices, strict=True):
                self._train_alone(model, rows)
        else:
            self._train_vmapped(indices)

    def _train_alone(self, model: keras.Model, rows: np.ndarray) -> None:
        import jax

        state = _state_of(model)
        for row in rows:
            state = self._step(
                state, self.images, self.onehot, jax.device_put(row.astype(np.int32))
            )
        for group, values in zip(_variable_groups(model), state, strict=True):
            for variable, value in zip(group, values, strict=True):
                variable.assign(value)

    def stacked_state(self) -> tuple[list[Any], ...]:
        """The seeds' states, each leaf stacked along a leading seed axis, as "vmap" trains them.

        Made anew from the models' variables at every call, so a scheduler's new learning rate
        (an optimizer variable) reaches the state."""
        import jax
        import jax.numpy as jnp

        return jax.tree.map(lambda *leaves: jnp.stack(leaves), *map(_state_of, self.models))

    def _train_vmapped(self, indices: np.ndarray) -> None:
        import jax
        import jax.numpy as jnp

        state = self.stacked_state()
        by_step = np.swapaxes(indices, 0, 1)  # (steps, seeds, batch): one row a step
        if self.loop_on_device:
            padded = np.stack(
                [pad_rows(rows, self.batch_size, self.steps_per_call) for rows in indices]
            )
            count = np.int32(len(by_step))
            state = self._run(
                state, self.images, self.onehot, jax.device_put(np.swapaxes(padded, 0, 1)), count
            )
        else:
            for rows in by_step:
                state = self._seeds_step(
                    state, self.images, self.onehot, jax.device_put(rows.astype(np.int32))
                )
        for group_index, stacked in enumerate(state):
            for seed, model in enumerate(self.models):
                group = _variable_groups(model)[group_index]
                for variable, leaf in zip(group, stacked, strict=True):
                    # A copy of its own: a slice may share the stacked buffer, which the next
                    # call donates (seen: deleted buffers under a later evaluate).
                    variable.assign(jnp.copy(leaf[seed]))


def fit_fast_seeds(
    models: Sequence[keras.Model],
    fit_set: ImageSplit,
    validation_set: ImageSplit,
    *,
    batch_size: int,
    epochs: int,
    initial_epoch: int,
    steps_per_epoch: int | None,
    steps_per_call: int,
    seeds: Sequence[int],
    callbacks: Sequence[Sequence[keras.callbacks.Callback]],
    strategy: str = "auto",
) -> str:
    """`fit_fast` for N models at once; return the strategy used ("vmap" or "sequential").

    Seed i's batches are `shuffled_passes(len(fit_set), batch_size, seeds[i])` from
    `initial_epoch` on: exactly those it sees alone. `callbacks[i]` are seed i's, called where
    `fit_fast` calls them. When any model's `stop_training` is set (TerminateOnNaN) the epoch's
    calls stop, every seed still validates and ends the epoch, and training ends there.
    """
    if not len(models) == len(seeds) == len(callbacks):
        raise ValueError(
            f"{len(models)} models, {len(seeds)} seeds and {len(callbacks)} callback lists"
        )
    runner = JaxSeedsRunner(
        models, fit_set.images, fit_set.onehot, batch_size, steps_per_call, strategy
    )
    callback_lists = [
        keras.callbacks.CallbackList(list(own), model=model)
        for model, own in zip(models, callbacks, strict=True)
    ]
    steps = steps_in_epoch(len(fit_set), batch_size, steps_per_epoch)
    streams = [
        shuffled_passes(len(fit_set), batch_size, seed, start=initial_epoch * steps)
        for seed in seeds
    ]
    validation_labels = validation_set.onehot  # made once, not every epoch

    for model in models:
        model.stop_training = False
    for callback_list in callback_lists:
        callback_list.on_train_begin()
    for epoch in range(initial_epoch, epochs):
        for model, callback_list in zip(models, callback_lists, strict=True):
            model.reset_metrics()
            callback_list.on_epoch_begin(epoch)
        logs: list[dict[str, float]] = [{} for _ in models]
        steps_done = 0
        # One variant, one fit set: every seed's short batches fall at the same positions,
        # so the seeds' calls have the same shapes and stack.
        calls = zip(
            *(group_steps(epoch_batches(s, steps), batch_size, steps_per_call) for s in streams),
            strict=True,
        )
        for call in calls:
            runner.train(np.stack(call))
            steps_done += len(call[0])
            for seed, (model, callback_list) in enumerate(zip(models, callback_lists, strict=True)):
                logs[seed] = floats(model.get_metrics_result())
                callback_list.on_train_batch_end(steps_done - 1, logs[seed])
            if any(model.stop_training for model in models):
                break
        for model, callback_list, seed_logs in zip(models, callback_lists, logs, strict=True):
            seed_logs.update(validation_logs(model, validation_set, validation_labels))
            callback_list.on_epoch_end(epoch, seed_logs)
        if any(model.stop_training for model in models):
            break
    for callback_list in callback_lists:
        callback_list.on_train_end()
    return runner.strategy
