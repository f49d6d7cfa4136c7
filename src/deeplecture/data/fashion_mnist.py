"""Read (and, for tests and fixtures, write) Fashion-MNIST's gzip'd IDX files.

The pipeline's two calls, as every dataset's reader module has them (catalog/entries.py):
`check` (the download stage, on the verified files) and `read` (the preprocess stage).
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from deeplecture.catalog.fashion_mnist import FASHION_MNIST
from deeplecture.data.splits import ImageSplit

CLASS_NAMES = FASHION_MNIST.class_names
# The four gzip'd IDX files, by role: train_images, train_labels, test_images, test_labels.
FILES = FASHION_MNIST.files


# IDX type code for unsigned bytes; the only one Fashion-MNIST uses.
_UBYTE = 0x08
_IMAGE_SHAPE = (28, 28)


class IdxFormatError(ValueError):
    """An IDX file (or a pair of them) is not what Fashion-MNIST should be."""


def read_idx(path: Path, *, expected_ndim: int) -> np.ndarray:
    """Return the uint8 array stored in the gzip'd IDX file at `path`.

    Raises IdxFormatError, naming the file, when it is not gzip, its header is
    not an unsigned-byte IDX header with `expected_ndim` dimensions, or its
    payload is not exactly as long as the dimensions say.
    """
    path = Path(path)
    try:
        # The largest file is ~26 MB unpacked, so one in-memory decompress is fine.
        raw = gzip.decompress(path.read_bytes())
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise IdxFormatError(f"{path}: not a valid gzip file ({exc})") from exc

    if len(raw) < 4:
        raise IdxFormatError(f"{path}: only {len(raw)} bytes, too short for an IDX magic number")
    zero0, zero1, dtype_code, ndim = raw[:4]
    if zero0 != 0 or zero1 != 0:
        raise IdxFormatError(
            f"{path}: bad IDX magic number {raw[:4].hex()} (first two bytes must be zero)"
        )
    if dtype_code != _UBYTE:
        raise IdxFormatError(
            f"{path}: IDX type code 0x{dtype_code:02x}, expected 0x{_UBYTE:02x} (unsigned byte)"
        )
    if ndim != expected_ndim:
        raise IdxFormatError(f"{path}: {ndim} dimensions, expected {expected_ndim}")

    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise IdxFormatError(f"{path}: header cut short, {ndim} dimension sizes are missing")
    dims = struct.unpack(f">{ndim}I", raw[4:header_len])
    expected_bytes = int(np.prod(dims, dtype=np.int64))
    actual_bytes = len(raw) - header_len
    if actual_bytes != expected_bytes:
        raise IdxFormatError(
            f"{path}: payload is {actual_bytes} bytes, expected {expected_bytes} "
            f"for shape {tuple(dims)}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header_len).reshape(dims)


def _read_split(folder: Path, images_name: str, labels_name: str) -> tuple[np.ndarray, np.ndarray]:
    """Read one split's images and labels and check that they belong together."""
    images_path = folder / images_name
    labels_path = folder / labels_name
    images = read_idx(images_path, expected_ndim=3)
    labels = read_idx(labels_path, expected_ndim=1)

    if images.shape[1:] != _IMAGE_SHAPE:
        raise IdxFormatError(
            f"{images_path}: images are {images.shape[1]}x{images.shape[2]}, expected 28x28"
        )
    if len(images) != len(labels):
        raise IdxFormatError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels"
        )
    bad = np.flatnonzero(labels >= len(CLASS_NAMES))
    if bad.size:
        first = int(bad[0])
        raise IdxFormatError(
            f"{labels_path}: label {int(labels[first])} at index {first} is outside "
            f"0..{len(CLASS_NAMES) - 1}"
        )
    return images, labels


def read_fashion_mnist(
    folder: Path,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Return ((train_images, train_labels), (test_images, test_labels)) from `folder`.

    Images are (N, 28, 28) uint8 and labels (N,) uint8 in 0..9. Raises
    FileNotFoundError naming a missing file and IdxFormatError for bad contents.
    """
    folder = Path(folder)
    # Check all four up front so a half-downloaded folder fails before any parsing.
    for name in FILES.values():
        if not (folder / name).is_file():
            raise FileNotFoundError(f"Fashion-MNIST file {name} not found in {folder}")
    train = _read_split(folder, FILES["train_images"], FILES["train_labels"])
    test = _read_split(folder, FILES["test_images"], FILES["test_labels"])
    return train, test


def check(folder: Path, source: str) -> str:
    """Decode the four files in `folder` (fetched from `source`) once; an `IdxFormatError`
    names what is wrong."""
    train, test = read_fashion_mnist(folder)
    return f"{len(train[1])} training and {len(test[1])} test images"


def read(folder: Path, settings: Any) -> tuple[ImageSplit, ImageSplit]:
    """(train, test) for the preprocess stage, images (N, 28, 28, 1) as every model takes them;
    `settings` (`preprocess.fashion_mnist`) changes nothing here."""
    (train_images, train_labels), (test_images, test_labels) = read_fashion_mnist(folder)
    return (
        ImageSplit(train_images[..., np.newaxis], train_labels),
        ImageSplit(test_images[..., np.newaxis], test_labels),
    )
