"""Stage `export@<variant>`: the evaluated `.keras` model as the files an edge device runs.

    python stages/export.py cnn74 --data data/processed/cifar10 \
        --model models/cifar10/cnn74.keras --out models/cifar10/edge/cnn74

Writes model.onnx and model.tflite (Keras' `Model.export`), model.int8.onnx (ONNX Runtime's
static quantization, calibrated on a fixed sample of the training split; `edge.int8`) and
class_names.json (src/deeplecture/edge/files.py). All take raw pixels, like the `.keras` file.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from deeplecture import cli
from deeplecture.cli.stage import run_stage
from deeplecture.params import Params


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    parser.add_argument("variant")
    parser.add_argument("--data", type=Path, required=True, help="preprocessed dataset folder")
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="the export folder")
    return run_stage(parser, argv, export)


def export(args: argparse.Namespace, params: Params) -> None:
    # The exporters trace TensorFlow graphs: the .keras file is backend-neutral, so this stage
    # runs on TensorFlow whatever backend trained the model.
    os.environ["KERAS_BACKEND"] = "tensorflow"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from deeplecture import evaluation, model_file
    from deeplecture.data import processed
    from deeplecture.edge import export

    edge = params.edge
    model = evaluation.load_model(args.model)
    class_names = model_file.class_names(args.model)
    if class_names is None:
        raise ValueError(f"{args.model} does not name its classes (saved by an older version)")
    calibration = None
    if edge.int8:
        train = processed.load_split(args.data, "train")
        calibration = export.calibration_sample(
            train.images, edge.calibration_images, edge.calibration_seed
        )
    try:
        written = export.export_models(model, args.out, class_names, calibration)
    except RuntimeError as error:  # a converter's refusal
        raise cli.Refused(error) from None
    for name, path in written.items():
        print(f"{args.variant}: {name} {path} ({path.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    raise SystemExit(main())
