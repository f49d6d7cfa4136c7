"""Train one model twice from the same start, once with `Model.fit` and once with the fast path,
on the same batches, and compare: the fast path must train what `fit` trains.

Imported by the tests (TensorFlow, in process) and run as a script under another backend:
    KERAS_BACKEND=jax python tests/loop_equivalence.py cnn74:15:2 cnn88:1:1 [--device-loop]
prints one JSON line per VARIANT:STEPS_PER_EPOCH:EPOCHS. `--device-loop` makes JAX run its
on-device loop even on a CPU (the path a GPU takes), which it otherwise only uses on an
accelerator. Variant `probe` is a small network with batch normalization and no dropout.
`--save-model PATH` saves the last case's fast-trained model (and its validation probabilities).

The two loops run the same operations, but not in the same compiled program, so float rounding
differs in the last bits; training amplifies that step by step (TensorFlow, cnn84: 1e-5 after
one step, 3e-3 after fifteen). Networks without batch normalization come out bit for bit equal.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import keras
import numpy as np
from keras import layers

sys.path.insert(0, str(Path(__file__).parent))

from conftest import learnable_images  # noqa: E402
from deeplecture.data.splits import ImageSplit  # noqa: E402
from deeplecture.loops import runners  # noqa: E402
from deeplecture.loops.batches import endless_batches  # noqa: E402
from deeplecture.loops.fast import fit_fast  # noqa: E402
from deeplecture.models import get_variant  # noqa: E402
from deeplecture.scaling import Scaling  # noqa: E402

# 180 images in batches of 16: 11 full batches and a short one a pass. 15 steps an epoch run
# across a pass boundary, and calls of 4 steps leave a remainder: every kind of call happens.
BATCH_SIZE, STEPS_PER_CALL, SEED = 16, 4, 3
ROUNDING = 1e-5  # a weight that differs by more than this after a step did not just round


def halve_after_first_epoch(epoch: int, learning_rate: float) -> float:
    return 1e-3 if epoch == 0 else 5e-4


def _probe() -> keras.Model:
    # On PyTorch, Keras' unseeded Dropout draws from torch's global generator, from which
    # Model.fit's DataLoader draws too: the loops' dropout masks differ there, by design.
    inputs = keras.Input((32, 32, 3))
    h = layers.Rescaling(1 / 255)(inputs)
    h = layers.Conv2D(8, 3, activation="relu")(h)
    h = layers.BatchNormalization()(h)
    h = layers.Flatten()(h)
    return keras.Model(inputs, layers.Dense(10, activation="softmax")(h))


def _fresh_model(variant: str) -> keras.Model:
    # Same global seed, same build order: the same initial weights and dropout/augmentation seeds.
    keras.utils.set_random_seed(7)
    if variant == "probe":
        model = _probe()
    else:
        model = get_variant(variant).build(
            Scaling.divide255(3), "lecture" if variant == "cnn88" else "none"
        )
    model.compile(
        loss="categorical_crossentropy", optimizer=keras.optimizers.Adam(), metrics=["accuracy"]
    )
    return model


def train_both_ways(
    variant: str, steps_per_epoch: int, epochs: int, save_model: Path | None = None
) -> dict[str, object]:
    """Max weight difference and each loop's last-epoch logs, after the same training.

    `save_model`: also save the fast-trained model there, and its validation probabilities
    beside it (`<path>.npy`), for a check under another backend."""
    images, labels = learnable_images(200, seed=1)
    fit_set, validation_set = (
        ImageSplit(images[:180], labels[:180]),
        ImageSplit(images[180:], labels[180:]),
    )
    batch_size, seed = BATCH_SIZE, SEED
    schedule = keras.callbacks.LearningRateScheduler(halve_after_first_epoch)

    reference = _fresh_model(variant)
    history = reference.fit(
        endless_batches(fit_set, batch_size, seed),
        steps_per_epoch=steps_per_epoch,
        epochs=epochs,
        validation_data=(validation_set.images, validation_set.onehot),
        callbacks=[keras.callbacks.LearningRateScheduler(halve_after_first_epoch)],
        verbose=0,
    )
    fast = _fresh_model(variant)
    fast_logs = keras.callbacks.History()
    fit_fast(
        fast,
        fit_set,
        validation_set,
        batch_size=batch_size,
        epochs=epochs,
        initial_epoch=0,
        steps_per_epoch=steps_per_epoch,
        steps_per_call=STEPS_PER_CALL,
        seed=seed,
        callbacks=[schedule, fast_logs],
    )
    if save_model is not None:
        fast.save(save_model)
        np.save(f"{save_model}.npy", fast.predict(validation_set.images, verbose=0))
    differences = np.concatenate(
        [
            np.abs(keras.ops.convert_to_numpy(a) - keras.ops.convert_to_numpy(b)).ravel()
            for a, b in zip(reference.weights, fast.weights, strict=True)
        ]
    )
    result: dict[str, object] = {
        "backend": keras.backend.backend(),
        "case": f"{variant}:{steps_per_epoch}:{epochs}",
        "max_weight_difference": float(differences.max()),
        # Adam's step is lr · m/(√v + ε): a gradient near ε moves by up to the learning rate for a
        # rounding-level change, so "how many weights differ" says more than the largest one.
        "weights_differing": int((differences > ROUNDING).sum()),
        "weight_count": int(differences.size),
    }
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"):
        result[f"fit_{key}"] = float(history.history[key][-1])
        result[f"fast_{key}"] = float(fast_logs.history[key][-1])
    return result


class _DeviceLoopJaxRunner(runners.JaxRunner):
    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        self.loop_on_device = True


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="+", help="VARIANT:STEPS_PER_EPOCH:EPOCHS")
    parser.add_argument("--device-loop", action="store_true")
    parser.add_argument("--save-model", type=Path, help="save the last case's fast model here")
    args = parser.parse_args()
    if args.device_loop:
        runners.JaxRunner = _DeviceLoopJaxRunner  # what make_runner builds on the JAX backend
    for number, case in enumerate(args.cases, start=1):
        variant, steps, epochs = case.split(":")
        save = args.save_model if number == len(args.cases) else None
        print(json.dumps(train_both_ways(variant, int(steps), int(epochs), save)), flush=True)
