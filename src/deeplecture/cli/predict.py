"""`deeplecture-predict`: the top classes of image files (or .npy batches) under a saved model:
a `.keras` file (Keras), or one exported by the `export` stage, `.onnx` (ONNX Runtime) or
`.tflite` (LiteRT), for which neither Keras nor TensorFlow is imported.

deeplecture-predict models/cifar10/cnn88.keras cat.jpg ship.png --top 3
deeplecture-predict models/cifar10/edge/cnn88/model.onnx batch.npy --json
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from deeplecture import model_file, predict
from deeplecture.cli import fail, positive_int
from deeplecture.cli.model_loading import load_model
from deeplecture.edge import runtime


def class_name_list(text: str) -> tuple[str, ...]:
    """argparse type: comma-separated class names, none of them empty."""
    names = tuple(name.strip() for name in text.split(","))
    if not all(names):
        raise argparse.ArgumentTypeError(f"empty class name in {text!r}")
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deeplecture-predict",
        description="Classify image files with a saved model (pixels go in raw: the model "
        "scales them itself).",
    )
    parser.add_argument(
        "model",
        type=Path,
        metavar="MODEL",
        help="a saved .keras model, or an exported .onnx or .tflite one (models/*/edge/)",
    )
    parser.add_argument(
        "images",
        type=Path,
        nargs="+",
        metavar="IMAGE",
        help="any image file Pillow reads (converted and resized to the model's input), "
        "or a .npy array of raw pixels (numbers in 0..255, any integer or float type): one "
        "image (H, W, C) or a batch (N, H, W, C)",
    )
    parser.add_argument(
        "--top", type=positive_int, default=3, help="classes shown per image (default 3)"
    )
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    parser.add_argument(
        "--class-names",
        type=class_name_list,
        metavar="A,B,...",
        help="names of the model's outputs in order (default: the names saved in the model "
        "file, or in class_names.json beside an exported one)",
    )
    return parser


def read_inputs(
    paths: list[Path], input_shape: tuple[int, int, int]
) -> tuple[list[tuple[Path, int | None]], np.ndarray]:
    """Every image of every file as one batch, and where each came from (file, index in a
    .npy batch or None)."""
    sources: list[tuple[Path, int | None]] = []
    parts: list[np.ndarray] = []
    for path in paths:
        if path.suffix.lower() == ".npy":
            batch = predict.load_batch(path, input_shape)
            sources += [(path, index) for index in range(len(batch))]
            parts.append(batch)
        else:
            sources.append((path, None))
            parts.append(predict.image_to_model_input(path, input_shape)[np.newaxis])
    return sources, np.concatenate(parts)


def render_text(sources: list[tuple[Path, int | None]], tops: list[list[tuple[str, float]]]) -> str:
    """Per image: its file (and index in a batch), then one indented line per class."""
    width = max(len(name) for top in tops for name, _ in top)
    lines = []
    for (path, index), top in zip(sources, tops, strict=True):
        lines.append(f"{path}" if index is None else f"{path}[{index}]")
        lines += [f"  {name:<{width}}  {100 * probability:6.2f} %" for name, probability in top]
    return "\n".join(lines)


def render_json(sources: list[tuple[Path, int | None]], tops: list[list[tuple[str, float]]]) -> str:
    """A list of {"file", "top": [{"class", "probability"}]}; images of a .npy batch also carry
    their "index"."""
    document = []
    for (path, index), top in zip(sources, tops, strict=True):
        entry: dict[str, object] = {"file": str(path)}
        if index is not None:
            entry["index"] = index
        entry["top"] = [{"class": name, "probability": value} for name, value in top]
        document.append(entry)
    return json.dumps(document, indent=2)


# A batch of raw pixels (N, H, W, C) -> class probabilities (N, classes)
Classifier = Callable[[np.ndarray], np.ndarray]


def load_classifier(path: Path) -> tuple[Classifier, tuple[int, int, int], tuple[str, ...] | None]:
    """How to get probabilities from `path`'s model, its (H, W, C), and the class names it
    carries. Exported files go to their edge runtime: Keras is imported for `.keras` only."""
    if runtime.is_exported(path):
        exported = runtime.load(path)
        return exported.predict, predict.model_image_shape(exported), exported.class_names()
    model = load_model(path)

    def probabilities(batch: np.ndarray) -> np.ndarray:
        return model.predict(batch, batch_size=runtime.CHUNK, verbose=0)

    names = model_file.class_names(path, outputs=model.output_shape[-1])
    return probabilities, predict.model_image_shape(model), names


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        probabilities_of, input_shape, saved_names = load_classifier(args.model)
        class_names = args.class_names or saved_names
        if class_names is None:
            raise ValueError(
                f"{args.model} does not name its classes (saved by an older version, or an "
                "exported file without class_names.json): pass them with --class-names A,B,..."
            )
        sources, batch = read_inputs(args.images, input_shape)
        tops = predict.top_classes(probabilities_of(batch), class_names, args.top)
    except (ValueError, OSError) as error:  # OSError: e.g. a file we may not read
        return fail(error)
    print(render_json(sources, tops) if args.json else render_text(sources, tops))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
