"""Writing Fashion-MNIST's gzip'd IDX files, for tests that need real ones of their own."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

_UBYTE = 0x08  # IDX type code for unsigned bytes, the only one Fashion-MNIST uses


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 `array` to `path` as a gzip'd IDX file (the inverse of read_idx)."""
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise ValueError(f"write_idx only writes uint8 arrays, got {array.dtype}")
    if not 1 <= array.ndim <= 255:
        raise ValueError(f"IDX stores 1 to 255 dimensions, got {array.ndim}")
    header = bytes((0, 0, _UBYTE, array.ndim)) + struct.pack(f">{array.ndim}I", *array.shape)
    # mtime=0 keeps the bytes identical across runs, so fixtures hash the same.
    data = gzip.compress(header + np.ascontiguousarray(array).tobytes(), mtime=0)
    Path(path).write_bytes(data)
