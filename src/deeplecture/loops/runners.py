"""Run many training steps in one call, on the backend Keras runs on, over device-resident data.

At batch 32 these networks are bound by per-step overhead, not arithmetic: `model.fit` pays a
host round trip, a data-pipeline hop and a dispatch for every step. A runner instead copies the
training images (uint8) and labels to the device once, and each call takes a (steps, batch)
array of indices and loops over it on the device: gather the batch, run the model's own
`train_step` (so loss, regularization, metrics and optimizer are exactly `fit`'s), repeat.

- JAX: one `jax.jit` of a `lax.fori_loop` over `Model.train_step`, Keras' stateless JAX step.
  The trip count is an argument, so every full-batch call has one shape: one compilation. (On
  a CPU, one compiled step per batch instead: see `JaxRunner`.)
- TensorFlow: one `tf.function` with a `tf.range` loop over the stateful `train_step`.
- PyTorch: no compiler of whole loops is used; the loop is Python, but batches are gathered on
  the device, so no host copy or data pipeline sits between steps.

Augmentation is a part of the model (cnn88), so it runs on the device inside the step too.
"""

from __future__ import annotations

from typing import Any, Protocol

import keras
import numpy as np

from deeplecture import distribution


class StepRunner(Protocol):
    def train(self, indices: np.ndarray) -> None:
        """Run one training step per row of `indices` (a (steps, batch) array of image
        indices); the model's variables hold the result when this returns."""


def make_runner(
    model: keras.Model,
    images: np.ndarray,
    onehot: np.ndarray,
    batch_size: int,
    steps_per_call: int,
) -> StepRunner:
    """The runner for the backend Keras runs on. `model` must be compiled."""
    # fit builds the model, its compiled loss and metrics and the optimizer on its first batch;
    # the runners compile the step before any batch, so everything must exist already.
    model._symbolic_build(data_batch=(images[:1], onehot[:1]))
    backend = keras.backend.backend()
    if backend == "jax":
        return JaxRunner(model, images, onehot, batch_size, steps_per_call)
    if backend == "tensorflow":
        return TensorFlowRunner(model, images, onehot, batch_size, steps_per_call)
    if backend == "torch":
        return TorchRunner(model, images, onehot)
    raise ValueError(f"no fast training path for the {backend!r} backend; use engine.loop: fit")


def pad_rows(indices: np.ndarray, batch_size: int, steps_per_call: int) -> np.ndarray:
    """Full-batch calls padded to `steps_per_call` rows, so they all share one compiled shape
    (the padding rows are never run); a short batch keeps its own (1, size) shape."""
    indices = indices.astype(np.int32)
    if indices.shape[1] != batch_size or len(indices) == steps_per_call:
        return indices
    padding = np.zeros((steps_per_call - len(indices), batch_size), dtype=np.int32)
    return np.concatenate([indices, padding])


class _CompiledLoopRunner:
    """A runner whose calls are compiled programs over a (steps, batch) index array."""

    def __init__(
        self,
        model: keras.Model,
        images: np.ndarray,
        onehot: np.ndarray,
        batch_size: int,
        steps_per_call: int,
    ) -> None:
        self.model, self.batch_size, self.steps_per_call = model, batch_size, steps_per_call
        self.input_dtype = model.inputs[0].dtype
        self._compile(images, onehot)

    def _compile(self, images: np.ndarray, onehot: np.ndarray) -> None:
        raise NotImplementedError

    def padded(self, indices: np.ndarray) -> np.ndarray:
        return pad_rows(indices, self.batch_size, self.steps_per_call)


class JaxRunner(_CompiledLoopRunner):
    """Under `engine.distribution: data_parallel` the resident data is replicated on every
    device (of every process), and each gathered batch is constrained to be split along its
    first axis: each device runs the step on its part, and XLA all-reduces the gradients."""

    def _compile(self, images: np.ndarray, onehot: np.ndarray) -> None:
        import jax

        model, input_dtype = self.model, self.input_dtype
        placement = distribution.shardings()
        if placement is None:
            self._put, split = jax.device_put, None
        else:
            replicated, split = placement
            # From the host copy every process holds: also for devices of other processes.
            self._put = lambda array: jax.make_array_from_callback(
                array.shape, replicated, lambda index: array[index]
            )
        self.images, self.onehot = self._put(images), self._put(onehot)

        def gather(images: Any, onehot: Any, row: Any) -> tuple[Any, Any]:
            batch = (images[row].astype(input_dtype), onehot[row])
            if split is None:
                return batch
            return tuple(jax.lax.with_sharding_constraint(part, split) for part in batch)

        def step(state: Any, images: Any, onehot: Any, row: Any) -> Any:
            _, state = model.train_step(state, gather(images, onehot, row))
            return state

        def run(state: Any, images: Any, onehot: Any, indices: Any, count: Any) -> Any:
            body = lambda i, state: step(state, images, onehot, indices[i])  # noqa: E731
            return jax.lax.fori_loop(0, count, body, state)

        # The state is donated: its buffers are reused for the result, not copied.
        self._run = jax.jit(run, donate_argnums=0)
        self._step = jax.jit(step, donate_argnums=0)
        self._gather = jax.jit(gather)
        # XLA's CPU backend runs convolutions inside a loop about 10x slower than the same
        # steps dispatched one by one (benchmarks/jax_cpu_loop.py: cnn84, batch 32, 1.95 s
        # against 0.19 s a step, jax 0.10.2, 2 cores), so on a CPU the loop stays in Python;
        # the data stays resident either way.
        self.loop_on_device = jax.devices()[0].platform != "cpu"

    def train(self, indices: np.ndarray) -> None:
        model = self.model
        variables = (
            model.trainable_variables,
            model.non_trainable_variables,  # includes dropout's and augmentation's seeds
            model.optimizer.variables,
            model.metrics_variables,
        )
        state = tuple([v.value for v in group] for group in variables)
        if self.loop_on_device:
            count = np.int32(len(indices))
            padded = self._put(self.padded(indices))
            state = self._run(state, self.images, self.onehot, padded, count)
        else:
            for row in indices:
                state = self._step(state, self.images, self.onehot, self._put(row.astype(np.int32)))
        for group, values in zip(variables, state, strict=True):
            for variable, value in zip(group, values, strict=True):
                variable.assign(value)

    def gathered_batch(self, row: np.ndarray) -> tuple[Any, Any]:
        """The (images, one-hot labels) batch one step trains on, placed as the step places it."""
        return self._gather(self.images, self.onehot, self._put(row.astype(np.int32)))


class TensorFlowRunner(_CompiledLoopRunner):
    def _compile(self, images: np.ndarray, onehot: np.ndarray) -> None:
        import tensorflow as tf

        model, input_dtype = self.model, self.input_dtype
        images, onehot = tf.constant(images), tf.constant(onehot)

        @tf.function(jit_compile=bool(model.jit_compile))
        def run(indices: tf.Tensor, count: tf.Tensor) -> None:
            for i in tf.range(count):
                batch = tf.cast(tf.gather(images, indices[i]), input_dtype)
                model.train_step((batch, tf.gather(onehot, indices[i])))

        self._run = run

    def train(self, indices: np.ndarray) -> None:
        self._run(self.padded(indices), np.int32(len(indices)))


class TorchRunner:
    def __init__(self, model: keras.Model, images: np.ndarray, onehot: np.ndarray) -> None:
        import torch

        self.model, self._torch = model, torch
        self.images = keras.ops.convert_to_tensor(images)  # on Keras' device (the GPU if any)
        self.onehot = keras.ops.convert_to_tensor(onehot)
        self.input_dtype = getattr(torch, model.inputs[0].dtype)

    def train(self, indices: np.ndarray) -> None:
        torch, model = self._torch, self.model
        model.train()  # as fit does: torch layers see training mode
        for row in torch.as_tensor(indices, device=self.images.device):
            model.train_step((self.images[row].to(self.input_dtype), self.onehot[row]))
        model.eval()
