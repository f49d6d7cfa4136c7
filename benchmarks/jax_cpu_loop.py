"""Why the JAX runner keeps its loop in Python on a CPU: time one training step a call against
the same steps inside one compiled `lax.fori_loop`, on the backend's first device.

    KERAS_BACKEND=jax python benchmarks/jax_cpu_loop.py [--variant cnn84] [--steps 8]

Prints seconds per step each way and their ratio (loop over single steps; above 1: the compiled
loop is slower). Both ways run the same `JaxRunner` step function on device-resident data.
"""

from __future__ import annotations

import argparse
import time

import jax
import keras
import numpy as np

from deeplecture.loops.runners import JaxRunner, make_runner
from deeplecture.models import get_variant
from deeplecture.scaling import Scaling


def seconds_per_step(runner: JaxRunner, indices: np.ndarray, on_device: bool) -> float:
    runner.loop_on_device = on_device
    runner.train(indices)  # compile
    started = time.perf_counter()
    runner.train(indices)
    jax.block_until_ready(runner.model.trainable_variables[0].value)
    return (time.perf_counter() - started) / len(indices)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="cnn84")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    if keras.backend.backend() != "jax":
        raise SystemExit("error: run with KERAS_BACKEND=jax")

    rng = np.random.default_rng(0)
    count = args.steps * args.batch_size
    images = rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
    onehot = np.eye(10, dtype="float32")[rng.integers(0, 10, count)]
    model = get_variant(args.variant).build(Scaling.divide255(3), "none")
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    runner = make_runner(model, images, onehot, args.batch_size, args.steps)
    indices = np.arange(count).reshape(args.steps, args.batch_size)

    single = seconds_per_step(runner, indices, on_device=False)
    looped = seconds_per_step(runner, indices, on_device=True)
    print(f"{args.variant}, batch {args.batch_size}, {jax.devices()[0].device_kind}, "
          f"jax {jax.__version__}")  # fmt: skip
    print(f"one compiled step a call:  {single:.3f} s a step")
    print(f"compiled fori_loop:        {looped:.3f} s a step")
    print(f"loop / single:             {looped / single:.1f}x")


if __name__ == "__main__":
    main()
