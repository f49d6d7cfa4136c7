"""From a `.keras` model to the files an edge device runs, with Keras 3's own `Model.export`:
`format="onnx"` (TensorFlow graph -> tf2onnx) and `format="litert"` (TensorFlow's TFLite
converter). Each file is written atomically, so a failed export leaves no partial model.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np

from deeplecture.atomic import atomic_path
from deeplecture.edge import files, quantize

# The exported input's name: what a runtime's caller feeds.
INPUT_NAME = "pixels"


def inference_model(model: keras.Model) -> keras.Model:
    """`model`'s forward pass alone, as its `predict` runs it.

    `Model.export` traces `call()` without `training=False`, and Keras' random augmentation
    layers (cnn88's) are then active: their ops would be in the exported graph (and ONNX has
    none of them). Calling the model with `training=False` inside a new one leaves them out.
    """
    inputs = keras.Input(model.input_shape[1:], name=INPUT_NAME)
    forward = keras.Model(inputs, model(inputs, training=False), name=model.name)
    # Export refuses a model never called; one image builds every traced shape.
    forward.predict(np.zeros((1, *model.input_shape[1:]), np.float32), verbose=0)
    return forward


def export_models(
    model: keras.Model,
    folder: Path,
    class_names: Sequence[str],
    calibration: np.ndarray | None,
) -> dict[str, Path]:
    """Write every format of `files.FORMAT_FILES` into `folder` (int8 only with `calibration`,
    raw training images), and the class names; return format -> file."""
    folder.mkdir(parents=True, exist_ok=True)
    forward = inference_model(model)
    written = {
        "onnx": _export(forward, folder / files.FORMAT_FILES["onnx"], "onnx"),
        "litert": _export(forward, folder / files.FORMAT_FILES["litert"], "litert"),
    }
    carry_class_names(written["onnx"], class_names)
    int8_path = folder / files.FORMAT_FILES["onnx-int8"]
    if calibration is None:
        int8_path.unlink(missing_ok=True)  # not asked for: no stale file from an earlier run
    else:
        quantize.quantize_int8(written["onnx"], int8_path, calibration)
        carry_class_names(int8_path, class_names)
        written["onnx-int8"] = int8_path
    files.write_class_names(folder, class_names)
    return {name: written[name] for name in files.FORMAT_FILES if name in written}


def _export(forward: keras.Model, path: Path, export_format: str) -> Path:
    # The temporary name keeps the suffix: the LiteRT exporter insists on ".tflite".
    with atomic_path(path, suffix=path.suffix) as tmp:
        forward.export(str(tmp), format=export_format, verbose=False)
    return path


def carry_class_names(path: Path, class_names: Sequence[str]) -> None:
    """Put the class names into the ONNX file's metadata, where ONNX Runtime reads them
    (`custom_metadata_map`): an ONNX file copied alone still names its outputs."""
    import onnx

    model = onnx.load(str(path))
    kept = [prop for prop in model.metadata_props if prop.key != files.ONNX_CLASS_NAMES_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    model.metadata_props.add(key=files.ONNX_CLASS_NAMES_KEY, value=json.dumps(list(class_names)))
    with atomic_path(path, suffix=".onnx") as tmp:
        onnx.save(model, str(tmp))


def calibration_sample(images: np.ndarray, count: int, seed: int) -> np.ndarray:
    """`count` training images (all if fewer), drawn without replacement with `seed`, in a
    fixed order: the same sample for the same split and settings."""
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(images), size=min(count, len(images)), replace=False))
    return images[chosen].astype(np.float32)
