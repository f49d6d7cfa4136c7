"""Decoding CIFAR-10 archives: binary records and image folders into HWC uint8 arrays."""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from archive_factory import (
    TEST_BATCH,
    TRAIN_BATCHES,
    encode_batch,
    encode_image,
    make_binary_archive,
    make_image_folder_archive,
    random_images,
)
from deeplecture.data.cifar10 import (
    CLASS_NAMES,
    IMAGE_SHAPE,
    ImageSplit,
    detect_format,
    read_cifar10_archive,
)

REAL_ARCHIVE = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg.tar.gz"


def read(archive: Path, seed: int = 0) -> tuple[ImageSplit, ImageSplit]:
    return read_cifar10_archive(archive, shuffle_seed=seed, progress=False)


# --- binary format ------------------------------------------------------------------------


def test_binary_archive_round_trips_in_original_order(tmp_path):
    archive = tmp_path / "cifar-10-binary.tar.gz"
    expected = make_binary_archive(archive, records_per_batch=4, seed=3)
    assert detect_format(archive) == "binary"
    train, test = read(archive)
    assert train.images.shape == (20, *IMAGE_SHAPE) and train.images.dtype == np.uint8
    assert train.labels.shape == (20,) and train.labels.dtype == np.uint8
    np.testing.assert_array_equal(train.images, expected.train_images)
    np.testing.assert_array_equal(train.labels, expected.train_labels)
    np.testing.assert_array_equal(test.images, expected.test_images)
    np.testing.assert_array_equal(test.labels, expected.test_labels)


def test_binary_shuffle_seed_does_not_reorder(tmp_path):
    archive = tmp_path / "a.tar.gz"
    make_binary_archive(archive)
    np.testing.assert_array_equal(read(archive, seed=1)[0].images, read(archive, seed=2)[0].images)


def test_channel_major_record_becomes_hwc_pixel(tmp_path):
    # One hand-written record: the R, G and B planes each hold a single marked pixel.
    record = bytearray(3073)
    record[0] = 7
    row, col = 1, 2
    for channel, value in enumerate((10, 20, 30)):
        record[1 + channel * 1024 + row * 32 + col] = value
    record[1 + 0 * 1024 + col * 32 + row] = 99  # the transposed spot, to catch a row/col swap
    batches = {name: bytes(record) for name in (*TRAIN_BATCHES, TEST_BATCH)}
    archive = tmp_path / "a.tar.gz"
    make_binary_archive(archive, replace=batches)
    train, _ = read(archive)
    assert train.labels[0] == 7
    assert train.images[0, row, col].tolist() == [10, 20, 30]
    assert train.images[0, col, row].tolist() == [99, 0, 0]
    assert int(train.images[0].sum()) == 10 + 20 + 30 + 99


def test_batch_of_wrong_length_is_named(tmp_path):
    archive = tmp_path / "a.tar.gz"
    make_binary_archive(archive, replace={TRAIN_BATCHES[1]: bytes(2 * 3073 + 5)})
    with pytest.raises(ValueError, match=r"data_batch_2\.bin is 6151 bytes long"):
        read(archive)


def test_label_out_of_range_names_file_record_and_label(tmp_path):
    images = random_images(np.random.default_rng(0), 4)
    archive = tmp_path / "a.tar.gz"
    make_binary_archive(archive, replace={TEST_BATCH: encode_batch(images, [1, 2, 10, 3])})
    with pytest.raises(ValueError, match=r"test_batch\.bin: record 2 has label 10"):
        read(archive)


# --- image-folder format ------------------------------------------------------------------


def assert_labels_match_folders(split: ImageSplit, labels_by_pixels: dict[bytes, int]) -> None:
    decoded = {
        image.tobytes(): int(label) for image, label in zip(split.images, split.labels, strict=True)
    }
    assert len(decoded) == len(split)
    for pixels, label in decoded.items():
        assert labels_by_pixels[pixels] == label


@pytest.mark.parametrize("top", ["", "cifar10/"])
def test_image_folder_labels_follow_class_folders(tmp_path, top):
    archive = tmp_path / "cifar10-png.tar.gz"
    expected = make_image_folder_archive(archive, train_per_class=3, test_per_class=2, top=top)
    assert detect_format(archive) == "image-folder"
    train, test = read(archive)
    assert (len(train), len(test)) == (30, 20)
    assert train.images.shape == (30, *IMAGE_SHAPE) and train.images.dtype == np.uint8
    assert np.bincount(train.labels, minlength=10).tolist() == [3] * 10
    assert np.bincount(test.labels, minlength=10).tolist() == [2] * 10
    # PNG is lossless, so every decoded image can be traced back to its folder.
    assert_labels_match_folders(train, expected)
    assert_labels_match_folders(test, expected)
    assert len(expected) == 50


def test_image_folder_is_shuffled_so_a_tail_split_mixes_classes(tmp_path):
    archive = tmp_path / "a.tar.gz"
    make_image_folder_archive(archive, train_per_class=10)
    train, test = read(archive, seed=42)
    tail = train.labels[-len(train) // 10 :]
    assert len(set(tail.tolist())) > 1, "the last 10 % of train holds a single class"
    assert not np.array_equal(train.labels, np.sort(train.labels))
    assert not np.array_equal(test.labels, np.sort(test.labels))


def test_image_folder_order_depends_on_seed_not_on_member_order(tmp_path):
    forward, backward = tmp_path / "f.tar.gz", tmp_path / "b.tar.gz"
    make_image_folder_archive(forward, train_per_class=4)
    make_image_folder_archive(backward, train_per_class=4, reverse=True)
    (f_train, f_test), (b_train, b_test) = read(forward, seed=5), read(backward, seed=5)
    np.testing.assert_array_equal(f_train.images, b_train.images)
    np.testing.assert_array_equal(f_train.labels, b_train.labels)
    np.testing.assert_array_equal(f_test.labels, b_test.labels)
    assert not np.array_equal(read(forward, seed=6)[0].labels, f_train.labels)


def test_jpeg_with_upper_case_extension_is_decoded(tmp_path):
    image = random_images(np.random.default_rng(9), 1)[0]
    archive = tmp_path / "a.tar.gz"
    make_image_folder_archive(
        archive, train_per_class=1, extra={"train/ship/extra.JPG": encode_image(image, "JPEG")}
    )
    train, _ = read(archive)
    assert len(train) == 11
    assert np.bincount(train.labels, minlength=10)[CLASS_NAMES.index("ship")] == 2


def test_grayscale_png_becomes_rgb(tmp_path):
    buffer = io.BytesIO()
    Image.new("L", (32, 32), color=77).save(buffer, format="PNG")
    archive = tmp_path / "a.tar.gz"
    make_image_folder_archive(
        archive, train_per_class=1, extra={"test/dog/grey.png": buffer.getvalue()}
    )
    _, test = read(archive)
    grey = [image for image in test.images if (image == 77).all()]
    assert len(grey) == 1 and grey[0].shape == IMAGE_SHAPE


def test_image_of_wrong_size_is_named(tmp_path):
    wide = np.zeros((32, 40, 3), dtype=np.uint8)
    archive = tmp_path / "a.tar.gz"
    make_image_folder_archive(
        archive, train_per_class=1, extra={"train/cat/wide.png": encode_image(wide)}
    )
    with pytest.raises(ValueError, match=r"'train/cat/wide\.png'.* is 40x32 pixels"):
        read(archive)


def test_undecodable_image_is_named(tmp_path):
    archive = tmp_path / "a.tar.gz"
    make_image_folder_archive(
        archive, train_per_class=1, extra={"test/frog/broken.jpg": b"\xff\xd8 not really a jpeg"}
    )
    with pytest.raises(ValueError, match=r"cannot decode image 'test/frog/broken\.jpg'"):
        read(archive)


def test_image_split_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="3 images but 2 labels"):
        ImageSplit(np.zeros((3, *IMAGE_SHAPE), np.uint8), np.zeros(2, np.uint8))


# --- the real JPEG re-encoding, when it is at hand ----------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(not REAL_ARCHIVE.exists(), reason=f"{REAL_ARCHIVE} is not present")
def test_real_jpeg_archive_decodes_quickly():
    started = time.monotonic()
    train, test = read_cifar10_archive(REAL_ARCHIVE, shuffle_seed=0, progress=False)
    elapsed = time.monotonic() - started
    assert train.images.shape == (50_000, *IMAGE_SHAPE)
    assert test.images.shape == (10_000, *IMAGE_SHAPE)
    assert np.bincount(train.labels, minlength=10).tolist() == [5000] * 10
    assert np.bincount(test.labels, minlength=10).tolist() == [1000] * 10
    tail = np.bincount(train.labels[-5000:], minlength=10)
    assert tail.min() > 350, f"validation tail is not class-balanced: {tail.tolist()}"
    assert 80 < train.images.mean() < 160  # real photos, not blank decodes
    assert elapsed < 60, f"decoding took {elapsed:.1f} s"
