"""Process-level concerns of a training run: seeds, signals and a description of the hardware."""

from __future__ import annotations

import contextlib
import os
import platform
import signal
from collections.abc import Iterator

import keras


class TrainingInterrupted(Exception):
    """The process was asked to stop (SIGTERM); the run is marked KILLED, its checkpoint kept."""


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into `TrainingInterrupted`, so cleanup runs as for Ctrl-C.

    Without this, `kill` ends Python at once: the MLflow run would stay RUNNING forever.
    """

    def handler(signum: int, frame: object) -> None:
        raise TrainingInterrupted(f"received signal {signal.Signals(signum).name}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and the backend; on TensorFlow also make its kernels deterministic.

    Same seed, same data, same machine: the same weights (checked by the tests on CPU).
    """
    keras.utils.set_random_seed(seed)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def describe_device() -> str:
    """A short description of what trains the model: the accelerator if any, else the CPU."""
    backend = keras.backend.backend()
    with contextlib.suppress(Exception):
        if backend == "jax":
            import jax

            device = jax.devices()[0]
            if device.platform != "cpu":
                return device.device_kind
        elif backend == "torch":
            import torch

            if torch.cuda.is_available():
                return torch.cuda.get_device_name(0)
        elif backend == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            if gpus:
                return tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
    return f"CPU ({platform.machine()}, {os.cpu_count()} cores)"
