"""Writing Fashion-MNIST's gzip'd IDX files, for tests that need real ones of their own: a tiny
Fashion-MNIST with a class visible in each image."""

from __future__ import annotations

import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np

from conftest import learnable_images
from deeplecture.data.fashion_mnist import FILES as FASHION_MNIST_FILES

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


def fashion_like(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(count, 28, 28) uint8 images with a bright class-specific square, and their labels: the
    conftest's learnable CIFAR-shaped images, cut to Fashion-MNIST's size and one channel."""
    images, labels = learnable_images(count, seed)
    return np.ascontiguousarray(images[:, :28, :28, 0]), labels


def write_idx_folder(folder: Path, train: int = 500, test: int = 100) -> dict[str, str]:
    """The four IDX files of a tiny Fashion-MNIST in `folder`; returns {file name: sha256:<hex>}."""
    (train_images, train_labels), (test_images, test_labels) = (
        fashion_like(train, seed=1),
        fashion_like(test, seed=2),
    )
    arrays = {
        "train_images": train_images,
        "train_labels": train_labels,
        "test_images": test_images,
        "test_labels": test_labels,
    }
    for role, name in FASHION_MNIST_FILES.items():
        write_idx(folder / name, arrays[role])
    return {
        name: "sha256:" + hashlib.sha256((folder / name).read_bytes()).hexdigest()
        for name in FASHION_MNIST_FILES.values()
    }
