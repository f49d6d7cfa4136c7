"""int8 ONNX models by ONNX Runtime's own static quantization, calibrated on training images.

Static: the activations' ranges are fixed once, from a calibration sample run through the float
model (min/max per tensor), so the int8 model needs no range computation at run time. Weights
are quantized per output channel (signed int8), activations to unsigned int8: the U8S8 pairing
ONNX Runtime recommends for x86-64 CPUs. QDQ format: quantize/dequantize pairs around each
operator, which the runtime fuses into integer kernels where it has them. The final softmax is
left in float.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnxruntime
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

# Images per calibration call: bounds the memory of the collected activations per call.
CALIBRATION_BATCH = 32


class _CalibrationBatches(CalibrationDataReader):
    """The calibration sample, batch by batch, as the quantizer asks for it."""

    def __init__(self, input_name: str, images: np.ndarray) -> None:
        self._batches = iter(
            {input_name: images[start : start + CALIBRATION_BATCH]}
            for start in range(0, len(images), CALIBRATION_BATCH)
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def _softmax_nodes(path: Path) -> list[str]:
    import onnx

    return [node.name for node in onnx.load(str(path)).graph.node if node.op_type == "Softmax"]


def quantize_int8(float_path: Path, int8_path: Path, calibration: np.ndarray) -> None:
    """Write the int8 version of the ONNX model at `float_path` to `int8_path`; `calibration`:
    raw training images (N, H, W, C), never the test split."""
    if len(calibration) == 0:
        raise ValueError("int8 quantization needs at least one calibration image")
    input_name = onnxruntime.InferenceSession(str(float_path)).get_inputs()[0].name
    with tempfile.TemporaryDirectory(dir=int8_path.parent, prefix=".quantize.") as scratch:
        # Shape inference and graph clean-up first, as ONNX Runtime's docs advise: the
        # quantizer needs every tensor's shape to place the quantize/dequantize pairs.
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(float_path), str(prepared))
        quantize_static(
            str(prepared),
            str(int8_path),
            _CalibrationBatches(input_name, np.ascontiguousarray(calibration, np.float32)),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            # The softmax stays float: its outputs are probabilities to print and compare,
            # and 8 bits of them would no longer sum to 1.
            nodes_to_exclude=_softmax_nodes(prepared),
        )
