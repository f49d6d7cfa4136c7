"""What an export folder holds, by format: the names are a contract of the `export` stage, read
by `measure_edge`, the report and `deeplecture-predict`.

    models/cifar10/edge/cnn88/
        model.onnx        ONNX, float32
        model.int8.onnx   ONNX, int8 (static quantization, calibrated on the training split)
        model.tflite      LiteRT (TensorFlow Lite flatbuffer), float32
        class_names.json  the names of the outputs, in order (also inside the ONNX files)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from deeplecture.atomic import write_text

# One document and one reader for class names, wherever they travel (inside a .keras file too).
from deeplecture.model_file import class_names_document, parse_class_names

# Format -> file name, in the order the report lists them.
FORMAT_FILES = {"onnx": "model.onnx", "onnx-int8": "model.int8.onnx", "litert": "model.tflite"}
CLASS_NAMES_FILE = "class_names.json"
# The key of the class names in an ONNX file's metadata_props.
ONNX_CLASS_NAMES_KEY = "deeplecture.class_names"
# What each suffix of an exported file is, for messages.
SUFFIX_KINDS = {".onnx": "ONNX model", ".tflite": "LiteRT (.tflite) model"}


def write_class_names(folder: Path, class_names: Sequence[str]) -> None:
    write_text(folder / CLASS_NAMES_FILE, class_names_document(class_names) + "\n")


def sidecar_class_names(model_path: Path, outputs: int | None = None) -> tuple[str, ...] | None:
    """The names in `class_names.json` beside an exported file (for `outputs` outputs, when
    given), or None if there is none; a one-line `ValueError` if it is not a class-names
    document."""
    sidecar = Path(model_path).parent / CLASS_NAMES_FILE
    if not sidecar.is_file():
        return None
    return parse_class_names(sidecar.read_bytes(), sidecar, outputs)
