"""From a `.keras` model to the files an edge device runs, with Keras 3's own `Model.export`:
`format="onnx"` (TensorFlow graph -> tf2onnx) and `format="litert"` (TensorFlow's TFLite
converter); int8 ONNX from the float one (quantize.py). Each file is written atomically, so a
failed export leaves no partial model.
"""

from __future__ import annotations

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
    raw training images), and the class names; return format -> file. Each file appears
    complete, its class names inside, or not at all."""
    folder.mkdir(parents=True, exist_ok=True)
    forward = inference_model(model)
    paths = {name: folder / file_name for name, file_name in files.FORMAT_FILES.items()}
    # The temporary names keep the suffix: the LiteRT exporter insists on ".tflite".
    with atomic_path(paths["onnx"], suffix=".onnx") as tmp:
        forward.export(str(tmp), format="onnx", verbose=False)
        carry_class_names(tmp, class_names)
    with atomic_path(paths["litert"], suffix=".tflite") as tmp:
        forward.export(str(tmp), format="litert", verbose=False)
    if calibration is None:
        paths.pop("onnx-int8").unlink(missing_ok=True)  # not asked for: no stale earlier file
    else:
        with atomic_path(paths["onnx-int8"], suffix=".onnx") as tmp:
            quantize.quantize_int8(paths["onnx"], tmp, calibration)
            carry_class_names(tmp, class_names)
    files.write_class_names(folder, class_names)
    return paths


def carry_class_names(path: Path, class_names: Sequence[str]) -> None:
    """Put the class names into the ONNX file's metadata, where ONNX Runtime reads them
    (`custom_metadata_map`): an ONNX file copied alone still names its outputs."""
    import onnx

    model = onnx.load(str(path))
    kept = [prop for prop in model.metadata_props if prop.key != files.ONNX_CLASS_NAMES_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    model.metadata_props.add(
        key=files.ONNX_CLASS_NAMES_KEY, value=files.class_names_document(class_names)
    )
    onnx.save(model, str(path))


def calibration_sample(images: np.ndarray, count: int, seed: int) -> np.ndarray:
    """`count` training images (all if fewer), drawn without replacement with `seed`, in a
    fixed order: the same sample for the same split and settings."""
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(images), size=min(count, len(images)), replace=False))
    return images[chosen].astype(np.float32)
