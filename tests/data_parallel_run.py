"""Train cnn74 a few steps with one of the loops, on one device or data parallel, and print
what a test compares: per-epoch losses, the final weights' sums, and how a batch is placed.

Run as a script, because JAX fixes its device count when it starts:
    XLA_FLAGS=--xla_force_host_platform_device_count=2 KERAS_BACKEND=jax \
        python tests/data_parallel_run.py --loop fast --distribution data_parallel
prints one JSON line. `--device-loop` runs JAX's on-device loop (`lax.fori_loop`, the path a GPU
takes) even on a CPU.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import keras
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from conftest import learnable_images  # noqa: E402
from deeplecture import distribution  # noqa: E402
from deeplecture.data.splits import ImageSplit  # noqa: E402
from deeplecture.loops import run_epochs, runners  # noqa: E402
from deeplecture.loops.runners import make_runner  # noqa: E402
from deeplecture.models import get_variant  # noqa: E402
from deeplecture.params import EngineParams, TrainParams  # noqa: E402
from deeplecture.scaling import Scaling  # noqa: E402
from deeplecture.training import build_model  # noqa: E402

# 160 fit images in batches of 32: 5 full steps an epoch, split 16/16 on two devices.
FIT_IMAGES, BATCH_SIZE, EPOCHS, SEED = 160, 32, 2, 7


class Losses(keras.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.epochs: list[dict[str, float]] = []

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.epochs.append({key: float(value) for key, value in (logs or {}).items()})


class _DeviceLoopJaxRunner(runners.JaxRunner):
    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        self.loop_on_device = True


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--loop", choices=["fast", "fit"], required=True)
    parser.add_argument("--distribution", choices=["none", "data_parallel"], required=True)
    parser.add_argument("--device-loop", action="store_true")
    args = parser.parse_args()
    if args.device_loop:
        runners.JaxRunner = _DeviceLoopJaxRunner  # what make_runner builds on the JAX backend

    engine = EngineParams(
        loop=args.loop, steps_per_call=2, precision="float32", deterministic=True,
        distribution=args.distribution,
    )  # fmt: skip
    train = TrainParams(
        lecture_accuracy=0.74, epochs=EPOCHS, batch_size=BATCH_SIZE, learning_rate=1e-3,
        lr_schedule="constant", validation="split", augmentation="none",
        # steps_per_epoch makes fit draw the fast loop's batches (loops/batches.py)
        steps_per_epoch=FIT_IMAGES // BATCH_SIZE, seed=SEED, keep_best=False,
    )  # fmt: skip
    layout = distribution.start(engine)
    keras.utils.set_random_seed(SEED)
    images, labels = learnable_images(FIT_IMAGES + 40, seed=1)
    fit_set = ImageSplit(images[:FIT_IMAGES], labels[:FIT_IMAGES])
    validation_set = ImageSplit(images[FIT_IMAGES:], labels[FIT_IMAGES:])
    model = build_model(get_variant("cnn74"), Scaling.divide255(3), train, engine)
    losses = Losses()
    run_epochs(
        model, train, engine, fit_set, validation_set,
        initial_epoch=0, batch_seed=SEED, callbacks=[losses],
    )  # fmt: skip
    report = {
        "devices": layout.devices,
        "epochs": losses.epochs,
        "weights": [float(np.asarray(w).sum()) for w in model.get_weights()],
    }
    if args.loop == "fast":
        runner = make_runner(model, fit_set.images, fit_set.onehot, BATCH_SIZE, 2)
        batch, onehot = runner.gathered_batch(np.arange(BATCH_SIZE))
        report["batch_shards"] = sorted(
            (str(shard.device), list(shard.data.shape)) for shard in batch.addressable_shards
        )
        report["variable_shards"] = [
            list(shard.data.shape)
            for shard in model.trainable_variables[0].value.addressable_shards
        ]
    print(json.dumps(report))


if __name__ == "__main__":
    main()
