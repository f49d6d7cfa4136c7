"""The Fashion-MNIST IDX reader: a round trip, then each way a file can be wrong."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from deeplecture.data.fashion_mnist import (
    CLASS_NAMES,
    FILES,
    IdxFormatError,
    read_fashion_mnist,
    read_idx,
)
from idx_factory import write_idx


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 28, 28), dtype=np.uint8)


def _write_dataset(folder: Path, n_train: int = 5, n_test: int = 3) -> dict[str, np.ndarray]:
    """Write a tiny but well-formed Fashion-MNIST folder and return what was written."""
    arrays = {
        "train_images": _images(n_train, seed=1),
        "train_labels": np.arange(n_train, dtype=np.uint8) % 10,
        "test_images": _images(n_test, seed=2),
        "test_labels": (9 - np.arange(n_test, dtype=np.uint8)) % 10,
    }
    for key, array in arrays.items():
        write_idx(folder / FILES[key], array)
    return arrays


def _write_raw_idx(path: Path, magic: bytes, dims: tuple[int, ...], payload: bytes) -> None:
    """Write a gzip'd IDX file byte by byte, so a test can break any part of it."""
    header = magic + struct.pack(f">{len(dims)}I", *dims)
    path.write_bytes(gzip.compress(header + payload))


def test_class_names_are_the_ten_fashion_mnist_classes() -> None:
    assert len(CLASS_NAMES) == 10
    assert CLASS_NAMES[0] == "T-shirt/top"
    assert CLASS_NAMES[9] == "Ankle boot"


def test_round_trip_preserves_pixels_labels_and_shapes(tmp_path: Path) -> None:
    written = _write_dataset(tmp_path)

    (train_x, train_y), (test_x, test_y) = read_fashion_mnist(tmp_path)

    assert train_x.shape == (5, 28, 28) and train_x.dtype == np.uint8
    assert train_y.shape == (5,) and train_y.dtype == np.uint8
    assert test_x.shape == (3, 28, 28)
    assert test_y.shape == (3,)
    np.testing.assert_array_equal(train_x, written["train_images"])
    np.testing.assert_array_equal(train_y, written["train_labels"])
    np.testing.assert_array_equal(test_x, written["test_images"])
    np.testing.assert_array_equal(test_y, written["test_labels"])


def test_write_idx_produces_the_canonical_header(tmp_path: Path) -> None:
    path = tmp_path / "labels.gz"
    write_idx(path, np.array([3, 1, 4], dtype=np.uint8))

    raw = gzip.decompress(path.read_bytes())

    # Magic 0x00000801 then the one dimension, 3, as a big-endian uint32.
    assert raw == bytes([0, 0, 8, 1, 0, 0, 0, 3, 3, 1, 4])


def test_wrong_magic_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "bad-magic.gz"
    _write_raw_idx(path, bytes([1, 0, 8, 1]), (2,), bytes([0, 1]))

    with pytest.raises(IdxFormatError, match="bad-magic.gz.*magic"):
        read_idx(path, expected_ndim=1)


def test_wrong_dtype_code_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "float-labels.gz"
    # 0x0D is IDX's float32 code; Fashion-MNIST only uses unsigned bytes.
    _write_raw_idx(path, bytes([0, 0, 0x0D, 1]), (2,), bytes(8))

    with pytest.raises(IdxFormatError, match="float-labels.gz.*0x0d"):
        read_idx(path, expected_ndim=1)


def test_images_file_where_labels_expected_is_rejected(tmp_path: Path) -> None:
    _write_dataset(tmp_path)
    # Swap a labels file for an images file: the shape of mistake a mislabelled download makes.
    (tmp_path / FILES["train_images"]).replace(tmp_path / FILES["train_labels"])
    write_idx(tmp_path / FILES["train_images"], _images(5))

    with pytest.raises(IdxFormatError, match=f"{FILES['train_labels']}.*3 dimensions.*1"):
        read_fashion_mnist(tmp_path)


def test_truncated_payload_reports_expected_and_actual_bytes(tmp_path: Path) -> None:
    path = tmp_path / "short-images.gz"
    _write_raw_idx(path, bytes([0, 0, 8, 3]), (2, 28, 28), bytes(2 * 28 * 28 - 100))

    with pytest.raises(IdxFormatError, match="short-images.gz") as info:
        read_idx(path, expected_ndim=3)
    assert "1468" in str(info.value) and "1568" in str(info.value)


def test_truncated_gzip_stream_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "cut.gz"
    write_idx(path, _images(2))
    path.write_bytes(path.read_bytes()[:-20])

    with pytest.raises(IdxFormatError, match="cut.gz.*gzip"):
        read_idx(path, expected_ndim=3)


def test_plain_uncompressed_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "plain-labels.gz"
    # A valid IDX file that nobody gzip'd, as some mirrors serve them.
    path.write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 2, 0, 1]))

    with pytest.raises(IdxFormatError, match="plain-labels.gz.*gzip"):
        read_idx(path, expected_ndim=1)


def test_image_label_count_mismatch_is_rejected(tmp_path: Path) -> None:
    _write_dataset(tmp_path)
    write_idx(tmp_path / FILES["test_labels"], np.zeros(2, dtype=np.uint8))

    with pytest.raises(IdxFormatError) as info:
        read_fashion_mnist(tmp_path)
    message = str(info.value)
    assert FILES["test_images"] in message and FILES["test_labels"] in message
    assert "3 images" in message and "2 labels" in message


def test_label_out_of_range_names_file_index_and_value(tmp_path: Path) -> None:
    _write_dataset(tmp_path)
    write_idx(tmp_path / FILES["train_labels"], np.array([0, 9, 10, 11, 2], dtype=np.uint8))

    with pytest.raises(IdxFormatError, match=f"{FILES['train_labels']}.*label 10 at index 2"):
        read_fashion_mnist(tmp_path)


def test_images_of_wrong_size_are_rejected(tmp_path: Path) -> None:
    _write_dataset(tmp_path)
    write_idx(tmp_path / FILES["test_images"], np.zeros((3, 32, 32), dtype=np.uint8))

    with pytest.raises(IdxFormatError, match=f"{FILES['test_images']}.*32x32"):
        read_fashion_mnist(tmp_path)


def test_missing_file_names_it(tmp_path: Path) -> None:
    _write_dataset(tmp_path)
    (tmp_path / FILES["test_labels"]).unlink()

    with pytest.raises(FileNotFoundError, match=FILES["test_labels"]):
        read_fashion_mnist(tmp_path)


def test_write_idx_refuses_non_uint8(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="uint8"):
        write_idx(tmp_path / "x.gz", np.zeros(3, dtype=np.float32))
