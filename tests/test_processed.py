"""Preprocessing: the lecture's validation tail, scaling from the training split, the digest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from archive_factory import encode_image, make_image_folder_archive, random_images
from conftest import PROJECT_ROOT, learnable_images, write_params
from deeplecture.data import processed
from deeplecture.data.cifar10 import read_cifar10_archive
from deeplecture.data.splits import ImageSplit
from deeplecture.params import load_params
from stage_runner import run_stage

SOURCE_INFO = {"dataset": "cifar10", "source": "tests", "class_names": list("abcdefghij")}


def _settings(tmp_path: Path, **changes: object) -> processed.SplitPlan:
    dotted = {f"preprocess.cifar10.{key}": value for key, value in changes.items()}
    settings = load_params(write_params(tmp_path, dotted)).preprocess.cifar10
    return processed.SplitPlan.from_settings(settings.model_dump())


def _split(count: int, seed: int) -> ImageSplit:
    return ImageSplit(*learnable_images(count, seed))


def test_validation_is_the_last_tenth_of_the_training_arrays(tmp_path: Path) -> None:
    train = _split(100, seed=1)
    data = processed.prepare(train, _split(20, seed=2), _settings(tmp_path), SOURCE_INFO)
    assert (len(data.train), len(data.validation), len(data.test)) == (90, 10, 20)
    np.testing.assert_array_equal(data.validation.images, train.images[90:])
    np.testing.assert_array_equal(data.train.labels, train.labels[:90])
    assert data.scaling.scale == (1 / 255,) * 3 and data.scaling.offset == (0.0,) * 3


def test_an_image_folder_archive_gives_a_validation_tail_of_every_class(tmp_path: Path) -> None:
    """The archive lists images class by class; without the reader's shuffle the last 10 %
    would be all trucks, and the model would never train on a truck."""
    archive = tmp_path / "folder.tar.gz"
    make_image_folder_archive(archive, train_per_class=10, test_per_class=2)
    train, test = read_cifar10_archive(archive, shuffle_seed=0, progress=False)
    data = processed.prepare(train, test, _settings(tmp_path), SOURCE_INFO)
    assert len(set(data.validation.labels.tolist())) >= 5
    assert set(data.train.labels.tolist()) == set(range(10))  # trucks (9) are trained on too


def test_standardize_uses_training_statistics_only(tmp_path: Path) -> None:
    train = _split(100, seed=3)
    test = ImageSplit(np.full((10, 32, 32, 3), 255, dtype="uint8"), np.zeros(10, dtype="uint8"))
    data = processed.prepare(train, test, _settings(tmp_path, scaling="standardize"), SOURCE_INFO)
    pixels = train.images[:90].reshape(-1, 3).astype("float64")
    scaled = pixels * np.array(data.scaling.scale) + np.array(data.scaling.offset)
    np.testing.assert_allclose(scaled.mean(axis=0), 0.0, atol=1e-6)
    np.testing.assert_allclose(scaled.std(axis=0), 1.0, atol=1e-6)


def test_limits_and_the_digest(tmp_path: Path) -> None:
    settings = _settings(tmp_path, train_limit=50, test_limit=5)
    data = processed.prepare(_split(100, seed=4), _split(20, seed=5), settings, SOURCE_INFO)
    assert (len(data.train), len(data.validation), len(data.test)) == (45, 5, 5)
    again = processed.prepare(_split(100, seed=4), _split(20, seed=5), settings, SOURCE_INFO)
    other = processed.prepare(_split(100, seed=6), _split(20, seed=5), settings, SOURCE_INFO)
    assert data.digest == again.digest != other.digest


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    data = processed.prepare(
        _split(40, seed=7), _split(10, seed=8), _settings(tmp_path), SOURCE_INFO
    )
    processed.save(data, tmp_path / "out")
    loaded = processed.load(tmp_path / "out")
    np.testing.assert_array_equal(loaded.test.images, data.test.images)
    np.testing.assert_array_equal(loaded.validation.onehot.argmax(1), data.validation.labels)
    assert loaded.digest == data.digest and loaded.scaling == data.scaling
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "info.json",
        "test.npz",
        "train.npz",
        "validation.npz",
    ]


def test_too_little_data_is_a_clear_error(tmp_path: Path) -> None:
    settings = _settings(tmp_path, train_limit=1)
    with pytest.raises(ValueError, match="too little data"):
        processed.prepare(_split(10, seed=9), _split(5, seed=10), settings, SOURCE_INFO)


def test_the_shipped_sample_is_what_its_readme_says() -> None:
    train, test = read_cifar10_archive(
        PROJECT_ROOT / "data" / "sample" / "cifar10-sample.tar.gz", shuffle_seed=0, progress=False
    )
    assert (len(train), len(test)) == (1000, 200)
    assert np.bincount(train.labels).tolist() == [100] * 10
    assert np.bincount(test.labels).tolist() == [20] * 10
    assert (PROJECT_ROOT / "data" / "sample" / "cifar10-sample.tar.gz").stat().st_size < 1_000_000


def test_a_test_split_of_a_single_class_is_warned_about(tmp_path: Path) -> None:
    cats = random_images(np.random.default_rng(0), 5)
    make_image_folder_archive(
        tmp_path / "one-class-test.tar.gz",
        train_per_class=4,
        test_per_class=0,
        extra={f"test/cat/{i}.png": encode_image(image) for i, image in enumerate(cats)},
    )
    write_params(tmp_path, {})
    stage = run_stage(
        "preprocess", tmp_path, "cifar10", "--archive", tmp_path / "one-class-test.tar.gz",
        "--out", tmp_path / "out",
    )  # fmt: skip
    assert stage.returncode == 0, stage.stderr[-3000:]
    assert (
        "warning: the test split holds images of 1 of the 10 classes (cat); its accuracy says "
        "nothing about the others"
    ) in stage.stderr
