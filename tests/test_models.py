"""The networks are the lecture's: parameter counts, layer layout, scaling and augmentation."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from deeplecture import catalog
from deeplecture.models import get_variant
from deeplecture.scaling import Scaling

# (total, non-trainable) as LECTURE.md states them.
LECTURE_COUNTS = {
    "cnn74": (1_639_914, 0),
    "cnn79": (1_640_182, 134),
    "cnn84": (300_214, 838),
    "cnn88": (300_214, 838),
}


def _non_trainable(model: keras.Model) -> int:
    return sum(int(np.prod(weight.shape)) for weight in model.non_trainable_weights)


@pytest.mark.parametrize("name", sorted(LECTURE_COUNTS))
@pytest.mark.parametrize("augmentation", ["none", "lecture", "keras_layers"])
def test_parameter_counts_are_the_lectures(name: str, augmentation: str) -> None:
    model = get_variant(name).build(Scaling.divide255(3), augmentation)
    assert (model.count_params(), _non_trainable(model)) == LECTURE_COUNTS[name]
    assert get_variant(name).lecture_param_count == LECTURE_COUNTS[name][0]


@pytest.mark.parametrize("name", catalog.variant_names())
def test_every_catalog_variant_builds_the_network_its_entry_counts(name: str) -> None:
    variant = get_variant(name)
    channels = catalog.get_dataset(variant.dataset).image_shape[-1]
    model = variant.build(Scaling.divide255(channels), "none")
    assert model.count_params() == variant.lecture_param_count
    assert model.input_shape[1:] == catalog.get_dataset(variant.dataset).image_shape


def test_cnn74_layers_follow_the_lecture_summary() -> None:
    model = get_variant("cnn74").build(Scaling.divide255(3), "none")
    shapes = {layer.name: layer.output.shape[1:] for layer in model.layers}
    assert shapes["conv1"] == (30, 30, 32)
    assert shapes["conv2"] == (30, 30, 32)
    assert shapes["pool1"] == (15, 15, 32)
    assert shapes["conv3"] == (15, 15, 64)
    assert shapes["pool2"] == (7, 7, 64)
    assert shapes["poolhidden"] == (512,)
    assert shapes["output"] == (10,)


def test_cnn84_convolutions_carry_l2_and_the_model_takes_raw_pixels() -> None:
    model = get_variant("cnn84").build(Scaling.divide255(3), "none")
    convolutions = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [conv.filters for conv in convolutions] == [32, 32, 64, 64, 128, 128]
    assert all(conv.kernel_regularizer is not None for conv in convolutions)
    scaled = model.get_layer("scaling")(np.full((1, 32, 32, 3), 255.0, dtype="float32"))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(scaled), 1.0, rtol=1e-6)


def test_augmentation_changes_training_batches_but_never_inference() -> None:
    model = get_variant("cnn88").build(Scaling.divide255(3), "lecture")
    images = np.random.default_rng(0).integers(0, 255, (8, 32, 32, 3)).astype("float32")
    augmented = model.get_layer("augmentation")
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(augmented(images, training=False)), images
    )
    assert not np.allclose(keras.ops.convert_to_numpy(augmented(images, training=True)), images)
    first = keras.ops.convert_to_numpy(model(images, training=False))
    second = keras.ops.convert_to_numpy(model(images, training=False))
    np.testing.assert_array_equal(first, second)


def test_a_saved_model_reloads_with_its_scaling(tmp_path: Path) -> None:
    scaling = Scaling.standardize(np.array([120.0, 110.0, 100.0]), np.array([60.0, 55.0, 50.0]))
    model = get_variant("cnn79").build(scaling, "none")
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    images = np.random.default_rng(1).integers(0, 255, (4, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded(images, training=False)),
        keras.ops.convert_to_numpy(model(images, training=False)),
        rtol=1e-5,
        atol=1e-6,
    )


def test_unknown_variant_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="cnn74, cnn79, cnn84, cnn88"):
        get_variant("cnn99")
