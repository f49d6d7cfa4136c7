"""`deeplecture-evaluate`: score a saved model on a preprocessed split, from the files alone.

The lecture's `Cifar10_CNN_*_Test.py`: load the model file, `evaluate` on the test set, print
the loss and accuracy. Nothing of the training code runs. The model is a `.keras` file (Keras),
or one exported by the `export` stage, `.onnx` (ONNX Runtime) or `.tflite` (LiteRT), scored
without Keras: the lecture's test scripts are forward only, and so is an edge device.

    deeplecture-evaluate models/cifar10/cnn74.keras --data data/processed/cifar10
    deeplecture-evaluate models/cifar10/edge/cnn74/model.onnx --data data/processed/cifar10
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from deeplecture.cli import fail, positive_int
from deeplecture.cli.model_loading import load_model
from deeplecture.data import processed
from deeplecture.data.splits import NUM_CLASSES, ImageSplit
from deeplecture.edge import runtime
from deeplecture.predict import ImageModel, model_image_shape

if TYPE_CHECKING:  # keras loads with the model, so `--help` and usage errors answer at once
    import keras

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Score:
    """What the command reports of one model file, whatever its format."""

    format: str  # keras, onnx or litert: what ran the forward pass
    loss: float  # categorical crossentropy; a .keras model's includes its weight penalty
    accuracy: float
    param_count: int | None  # the Keras model's; None for an exported graph (README)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deeplecture-evaluate",
        description="Test loss and accuracy of a saved model on a preprocessed split.",
    )
    parser.add_argument(
        "model",
        type=Path,
        metavar="MODEL",
        help="a saved .keras model, or an exported .onnx or .tflite one (models/*/edge/), "
        "scored without Keras",
    )
    parser.add_argument(
        "--data",
        type=Path,
        required=True,
        help="a preprocessed dataset folder, data/processed/<dataset>",
    )
    parser.add_argument("--split", choices=SPLITS, default="test", help="default: test")
    parser.add_argument("--batch-size", type=positive_int, default=256, help="default: 256")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    return parser


def check_fits(model: keras.Model | ImageModel, data: ImageSplit, path: Path) -> None:
    """The model must take the split's images and give one output per class."""
    expected, found = model_image_shape(model), tuple(data.images.shape[1:])
    if expected != found:
        raise ValueError(f"model takes images of shape {expected}, but {path} holds {found}")
    outputs = model.output_shape[-1]
    if outputs != NUM_CLASSES:
        raise ValueError(f"model has {outputs} outputs, the data has {NUM_CLASSES} classes")


def score_exported(path: Path, data: ImageSplit, source: Path, batch_size: int) -> Score:
    """An exported file under its edge runtime: probabilities scored as Keras scores them, with
    neither Keras nor TensorFlow imported."""
    from deeplecture import evaluation  # Keras-free at import: only its loader imports Keras

    model = runtime.load(path)
    check_fits(model, data, source)
    probabilities = model.predict(data.images, chunk=batch_size)
    result = evaluation.score_probabilities(probabilities, data)
    return Score(model.format, result.test_loss, result.test_accuracy, None)


def score_keras(path: Path, data: ImageSplit, source: Path, batch_size: int) -> Score:
    """A `.keras` file under Keras' own `evaluate`, as the lecture's test scripts run it."""
    model = load_model(path)
    from deeplecture import evaluation

    check_fits(model, data, source)
    if not model.compiled:
        # Saved without compile(): score it the way the lecture compiles every model.
        model.compile(loss="categorical_crossentropy", metrics=["accuracy"])
    try:
        result = evaluation.evaluate(model, data, batch_size=batch_size)
    except KeyError as error:  # evaluate() reads the "accuracy" metric the model was compiled with
        raise ValueError(
            f"model reports no {error} metric; compile it with metrics=['accuracy']"
        ) from None
    return Score("keras", result.test_loss, result.test_accuracy, model.count_params())


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    score = score_exported if runtime.is_exported(args.model) else score_keras
    try:
        data = processed.load_split(args.data, args.split)
        result = score(args.model, data, args.data / f"{args.split}.npz", args.batch_size)
    except (ValueError, OSError) as error:
        return fail(error)
    if args.json:
        document = {
            "model": str(args.model),
            "format": result.format,
            "data": str(args.data),
            "split": args.split,
            "images": len(data),
            "loss": result.loss,
            "accuracy": result.accuracy,
            "param_count": result.param_count,
        }
        print(json.dumps(document, indent=2))
    else:
        # The lecture's printout: print('Test loss:', score[0]); print('Test accuracy:', score[1])
        label = args.split.capitalize()
        print(f"{label} loss:", result.loss)
        print(f"{label} accuracy:", result.accuracy)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
