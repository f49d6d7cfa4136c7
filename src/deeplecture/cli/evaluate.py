"""`deeplecture-evaluate`: score a saved model on a preprocessed split, from the files alone.

The lecture's `Cifar10_CNN_*_Test.py`: load the model file, `evaluate` on the test set, print
the loss and accuracy. Nothing of the training code runs.

    deeplecture-evaluate models/cifar10/cnn74.keras --data data/processed/cifar10
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from deeplecture.cli import fail, load_model, positive_int
from deeplecture.data import processed
from deeplecture.data.splits import NUM_CLASSES, ImageSplit
from deeplecture.predict import model_image_shape

if TYPE_CHECKING:  # keras loads with the model, so `--help` and usage errors answer at once
    import keras

SPLITS = ("train", "validation", "test")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deeplecture-evaluate",
        description="Test loss and accuracy of a saved model on a preprocessed split.",
    )
    parser.add_argument("model", type=Path, metavar="MODEL", help="a saved .keras model")
    parser.add_argument(
        "--data",
        type=Path,
        required=True,
        help="a preprocessed dataset folder, e.g. data/processed/cifar10",
    )
    parser.add_argument("--split", choices=SPLITS, default="test", help="default: test")
    parser.add_argument("--batch-size", type=positive_int, default=256, help="default: 256")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    return parser


def check_fits(model: keras.Model, data: ImageSplit, path: Path) -> None:
    """The model must take the split's images and give one output per class."""
    expected, found = model_image_shape(model), tuple(data.images.shape[1:])
    if expected != found:
        raise ValueError(f"model takes images of shape {expected}, but {path} holds {found}")
    outputs = model.output_shape[-1]
    if outputs != NUM_CLASSES:
        raise ValueError(f"model has {outputs} outputs, the data has {NUM_CLASSES} classes")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        data = processed.load_split(args.data, args.split)
        model = load_model(args.model)
        from deeplecture import evaluation  # after load_model: it quiets TensorFlow first

        check_fits(model, data, args.data / f"{args.split}.npz")
        if not model.compiled:
            # Saved without compile(): score it the way the lecture compiles every model.
            model.compile(loss="categorical_crossentropy", metrics=["accuracy"])
        result = evaluation.evaluate(model, data, batch_size=args.batch_size)
    except (ValueError, OSError) as error:
        return fail(error)
    except KeyError as error:  # evaluate() reads the "accuracy" metric the model was compiled with
        return fail(f"model reports no {error} metric; compile it with metrics=['accuracy']")
    if args.json:
        document = {
            "model": str(args.model),
            "data": str(args.data),
            "split": args.split,
            "images": len(data),
            "loss": result.test_loss,
            "accuracy": result.test_accuracy,
        }
        print(json.dumps(document, indent=2))
    else:
        # The lecture's printout: print('Test loss:', score[0]); print('Test accuracy:', score[1])
        label = args.split.capitalize()
        print(f"{label} loss:", result.test_loss)
        print(f"{label} accuracy:", result.test_accuracy)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
