"""Exported models run by the edge runtimes alone: ONNX Runtime for `.onnx`, the LiteRT
interpreter for `.tflite`. Neither Keras nor TensorFlow is imported here, nor by anything this
module imports: this is what a small device installs (`pip install ".[edge]"`).

Both take raw 0..255 pixels, like the `.keras` file they came from (its scaling layer is part of
the exported graph), and give one probability row per image.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from deeplecture.edge.files import (
    ONNX_CLASS_NAMES_KEY,
    SUFFIX_KINDS,
    parse_class_names,
    sidecar_class_names,
)

# Images per runtime call when predicting a large batch: the batch size the throughput is
# measured at, and a bounded amount of activation memory.
CHUNK = 256


class EdgeModel:
    """An exported image classifier: `input_shape` is (None, H, W, C) and `output_shape`
    (None, classes) like a Keras model's, so code that checks a model's shapes reads both."""

    format: str  # the export stage's name of its format: onnx, litert
    path: Path
    input_shape: tuple[None, int, int, int]
    output_shape: tuple[None, int]

    def predict(self, batch: np.ndarray, chunk: int = CHUNK) -> np.ndarray:
        """Class probabilities (N, classes) of a float32 batch (N, H, W, C) of raw pixels, run
        `chunk` images at a time."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        parts = [self.run(batch[start : start + chunk]) for start in range(0, len(batch), chunk)]
        return np.concatenate(parts)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """One runtime call on a contiguous float32 batch; what the latency figures time."""
        raise NotImplementedError

    def class_names(self) -> tuple[str, ...] | None:
        """The names carried by the file, else those in `class_names.json` beside it; a
        `ValueError` if they are not one distinct name per output."""
        return sidecar_class_names(self.path, self.output_shape[1])


def is_exported(path: Path) -> bool:
    """Whether `path` names an exported model (by suffix), not a `.keras` file."""
    return Path(path).suffix.lower() in SUFFIX_KINDS


def load(path: Path) -> EdgeModel:
    """The exported model at `path`; a one-line `ValueError` naming a missing, truncated or
    foreign file, or a model that does not take one fixed-size image batch."""
    path = Path(path)
    suffix = path.suffix.lower()
    kind = SUFFIX_KINDS.get(suffix)
    if kind is None:
        raise ValueError(f"{path}: not an exported model (expected {', '.join(SUFFIX_KINDS)})")
    if path.is_dir():
        raise ValueError(f"{path} is a folder; expected an exported {kind} file")
    if not path.is_file():
        raise ValueError(f"model file not found: {path}")
    return OnnxModel(path) if suffix == ".onnx" else LiteRTModel(path)


# What ONNX Runtime says of a file that is not a whole ONNX protobuf (truncated, empty, other).
_NOT_ONNX = ("INVALID_PROTOBUF", "Protobuf parsing failed", "No graph was found")


class OnnxModel(EdgeModel):
    format = "onnx"

    def __init__(self, path: Path) -> None:
        ort = _import("onnxruntime", "ONNX Runtime")
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: warnings would interleave with our output
        try:
            self.session = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # ORT's own exception types, one per failure kind
            raise _load_error(path, "ONNX", error, _NOT_ONNX) from None
        self.path = path
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ValueError(f"{path}: {len(inputs)} inputs and {len(outputs)} outputs, expected 1")
        model_input = inputs[0]
        if model_input.type != "tensor(float)":
            raise ValueError(f"{path}: input of type {model_input.type}, expected tensor(float)")
        self.input_name = model_input.name
        self.input_shape = _image_batch_shape(path, model_input.shape)
        self.output_shape = _class_batch_shape(path, outputs[0].shape)

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch})[0]

    def class_names(self) -> tuple[str, ...] | None:
        carried = self.session.get_modelmeta().custom_metadata_map.get(ONNX_CLASS_NAMES_KEY)
        if carried is None:
            return super().class_names()
        source = f"{self.path} (its metadata {ONNX_CLASS_NAMES_KEY})"
        return parse_class_names(carried, source, self.output_shape[1])


# What the LiteRT interpreter says of a file that is not a whole flatbuffer model.
_NOT_LITERT = ("not a valid Flatbuffer", "mmap of size 0")


class LiteRTModel(EdgeModel):
    format = "litert"

    def __init__(self, path: Path) -> None:
        interpreter_module = _import("ai_edge_litert.interpreter", "the LiteRT runtime")
        try:
            # The interpreter verifies the whole flatbuffer first: a truncated file is refused.
            with _native_stderr_silenced():
                self.interpreter = interpreter_module.Interpreter(model_path=str(path))
        except (ValueError, RuntimeError) as error:
            raise _load_error(path, "LiteRT", error, _NOT_LITERT) from None
        self.path = path
        inputs = self.interpreter.get_input_details()
        outputs = self.interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ValueError(f"{path}: {len(inputs)} inputs and {len(outputs)} outputs, expected 1")
        if inputs[0]["dtype"] != np.float32:
            raise ValueError(f"{path}: input of type {inputs[0]['dtype']}, expected float32")
        self.input_index = inputs[0]["index"]
        self.output_index = outputs[0]["index"]
        signature = [int(size) for size in inputs[0]["shape_signature"]]  # numpy ints
        self.input_shape = _image_batch_shape(path, signature)
        self.output_shape = _class_batch_shape(
            path, [int(size) for size in outputs[0]["shape_signature"]]
        )
        self._allocated_batch = 0

    def run(self, batch: np.ndarray) -> np.ndarray:
        if len(batch) != self._allocated_batch:
            # Resizing reallocates every tensor: done once per batch size, not per call.
            self.interpreter.resize_tensor_input(self.input_index, list(batch.shape))
            with _native_stderr_silenced():
                self.interpreter.allocate_tensors()
            self._allocated_batch = len(batch)
        self.interpreter.set_tensor(self.input_index, batch)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output_index).copy()


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """LiteRT's C++ core prints "INFO: Created TensorFlow Lite XNNPACK delegate" on the process's
    stderr, where only our one error line belongs; its errors reach us as exceptions anyway."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _load_error(path: Path, kind: str, error: Exception, incomplete_signs: tuple) -> ValueError:
    """The one-line error for a file a runtime refused: incomplete (truncated, empty, another
    kind of file), or the runtime's own reason."""
    message = " ".join(str(error).split())
    if any(sign in message for sign in incomplete_signs):
        return ValueError(
            f"{path} is not a complete {kind} model (truncated, or not {kind} at all)"
        )
    return ValueError(f"cannot load {kind} model {path}: {message}")


def _image_batch_shape(path: Path, shape: list) -> tuple[None, int, int, int]:
    """(None, H, W, C) from a runtime's input shape, whose batch axis may be a name or -1."""
    fixed = shape[1:]
    if len(shape) != 4 or not all(isinstance(size, int) and size > 0 for size in fixed):
        raise ValueError(
            f"{path}: model input {tuple(shape)} is not one fixed-size image batch (N, H, W, C)"
        )
    return (None, *(int(size) for size in fixed))


def _class_batch_shape(path: Path, shape: list) -> tuple[None, int]:
    """(None, classes) from a runtime's output shape, whose batch axis may be a name or -1."""
    if len(shape) != 2 or not (isinstance(shape[1], int) and shape[1] > 0):
        raise ValueError(
            f"{path}: model output {tuple(shape)} is not one probability row per image (N, classes)"
        )
    return (None, int(shape[1]))


def _import(module: str, what: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ValueError(f"{what} is not installed: pip install '.[edge]'") from None
