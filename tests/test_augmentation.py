"""cnn88's augmentation is the lecture's ImageDataGenerator, image for image.

The reference is Keras' own legacy generator (`keras.src.legacy.preprocessing.image`), called
with the parameters the layer drew: same parameters, same output to well under 0.01 grey levels,
on real CIFAR-10 images; and the layer draws its parameters from the generator's distributions.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
from scipy import stats

from conftest import PROJECT_ROOT
from deeplecture.augmentation import LectureAugmentation
from deeplecture.data.cifar10 import read_cifar10_archive
from deeplecture.evaluation import load_model
from deeplecture.models import get_variant
from deeplecture.scaling import Scaling

legacy_image = pytest.importorskip("keras.src.legacy.preprocessing.image")

# The lecture's Cifar10_CNN_88_Train.py.
LECTURE_GENERATOR = dict(
    rotation_range=15, width_shift_range=0.1, height_shift_range=0.1, horizontal_flip=True
)
GREY_LEVELS = 0.01  # the bound; float32 against scipy's float64 is about 1e-3
DRAWS = 4000


@pytest.fixture(scope="module")
def real_images() -> np.ndarray:
    """32 real CIFAR-10 test images of the shipped sample, as float32 pixels 0..255."""
    _, test = read_cifar10_archive(
        PROJECT_ROOT / "data" / "sample" / "cifar10-sample.tar.gz", shuffle_seed=0, progress=False
    )
    return test.images[:32].astype("float32")


def _generator_output(images: np.ndarray, parameters: dict[str, np.ndarray]) -> np.ndarray:
    generator = legacy_image.ImageDataGenerator(**LECTURE_GENERATOR)
    return np.stack(
        [
            generator.apply_transform(
                image, {key: value[index].item() for key, value in parameters.items()}
            )
            for index, image in enumerate(images)
        ]
    )


def _drawn(layer: LectureAugmentation, count: int) -> dict[str, np.ndarray]:
    return {
        key: keras.ops.convert_to_numpy(value)
        for key, value in layer.draw(count, (32, 32)).items()
    }


def _only(parameters: dict[str, np.ndarray], *kept: str) -> dict[str, np.ndarray]:
    """The drawn parameters with every transform but `kept` switched off."""
    off = {"theta": 0.0, "tx": 0.0, "ty": 0.0, "flip_horizontal": False}
    return {
        key: value if key in kept else np.full_like(value, off[key])
        for key, value in parameters.items()
    }


@pytest.mark.parametrize(
    "kept",
    [("theta",), ("tx",), ("ty",), ("flip_horizontal",), ("theta", "tx", "ty", "flip_horizontal")],
    ids=["rotation", "height-shift", "width-shift", "flip", "all-composed"],
)
def test_the_layer_transforms_each_image_as_the_generator_does(
    real_images: np.ndarray, kept: tuple[str, ...]
) -> None:
    layer = LectureAugmentation(seed=3)
    parameters = _only(_drawn(layer, len(real_images)), *kept)
    if "flip_horizontal" in kept:
        assert 0 < parameters["flip_horizontal"].sum() < len(real_images)  # both cases present
    ours = keras.ops.convert_to_numpy(layer.transform(real_images, parameters))
    theirs = _generator_output(real_images, parameters)
    assert np.abs(ours - theirs).max() < GREY_LEVELS
    assert not np.allclose(ours, real_images)  # it did transform them


def test_a_training_call_applies_what_draw_and_transform_give(real_images: np.ndarray) -> None:
    """`call` is `draw` then `transform`: two layers with one seed, one called, one taken apart."""
    called = LectureAugmentation(seed=11)(real_images, training=True)
    twin = LectureAugmentation(seed=11)
    by_hand = twin.transform(real_images, twin.draw(len(real_images), (32, 32)))
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(called), keras.ops.convert_to_numpy(by_hand)
    )


def test_the_parameters_follow_the_generators_distributions() -> None:
    ours = _drawn(LectureAugmentation(seed=5), DRAWS)
    generator = legacy_image.ImageDataGenerator(**LECTURE_GENERATOR)
    np.random.seed(5)
    draws = [generator.get_random_transform((32, 32, 3)) for _ in range(DRAWS)]
    theirs = {key: np.array([draw[key] for draw in draws]) for key in ours}
    for key, limit in (("theta", 15.0), ("tx", 3.2), ("ty", 3.2)):
        assert np.abs(ours[key]).max() <= limit and np.abs(theirs[key]).max() <= limit
        # uniform on ±limit: standard deviation limit/√3; both within 3 % of it
        for values in (ours[key], theirs[key]):
            assert values.std() == pytest.approx(limit / np.sqrt(3), rel=0.03)
        # one distribution: a two-sample Kolmogorov-Smirnov test does not tell them apart
        assert stats.ks_2samp(ours[key], theirs[key]).pvalue > 0.01, key
    assert ours["flip_horizontal"].mean() == pytest.approx(0.5, abs=0.03)
    assert theirs["flip_horizontal"].mean() == pytest.approx(0.5, abs=0.03)
    # independent draws: the angle says nothing about the shift
    assert abs(np.corrcoef(ours["theta"], ours["tx"])[0, 1]) < 0.05


def test_one_resampling_keeps_the_images_sharper_than_two(real_images: np.ndarray) -> None:
    """The reason for the layer: Keras' rotation-then-translation stack blurs more."""

    def sharpness(images: np.ndarray) -> float:  # mean |difference| of horizontal neighbours
        return float(np.abs(np.diff(images, axis=2)).mean())

    keras.utils.set_random_seed(0)
    images = np.repeat(real_images, 8, axis=0)
    one = keras.ops.convert_to_numpy(LectureAugmentation(seed=1)(images, training=True))
    two = get_variant("cnn88").build(Scaling.divide255(3), "keras_layers").get_layer("augmentation")
    two = keras.ops.convert_to_numpy(two(images, training=True))
    assert sharpness(two) < sharpness(one) < sharpness(images)


def test_the_model_augments_only_while_training_and_reloads_in_safe_mode(
    real_images: np.ndarray, tmp_path: Path
) -> None:
    model = get_variant("cnn88").build(Scaling.divide255(3), "lecture")
    layer = model.get_layer("augmentation")
    assert isinstance(layer, LectureAugmentation)
    assert model.count_params() == 300_214  # the lecture's count: augmentation adds none
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(layer(real_images, training=False)), real_images
    )
    path = tmp_path / "cnn88.keras"
    model.save(path)
    reloaded = load_model(path)  # the project's loader, in Keras' safe mode (its default)
    assert isinstance(reloaded.get_layer("augmentation"), LectureAugmentation)
    assert not any(type(one).__name__ == "Lambda" for one in reloaded.layers)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(reloaded(real_images, training=False)),
        keras.ops.convert_to_numpy(model(real_images, training=False)),
    )


def test_a_model_saved_with_the_two_layer_augmentation_still_loads(
    real_images: np.ndarray, tmp_path: Path
) -> None:
    """Models trained before the lecture's layer (`keras_layers`, the H200 run's) evaluate."""
    model = get_variant("cnn88").build(Scaling.divide255(3), "keras_layers")
    model.save(tmp_path / "before.keras")
    reloaded = load_model(tmp_path / "before.keras")
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(reloaded(real_images, training=False)),
        keras.ops.convert_to_numpy(model(real_images, training=False)),
    )
