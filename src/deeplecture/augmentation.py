"""cnn88's data augmentation, as the lecture's `ImageDataGenerator` does it, inside the model.

The lecture trains cnn88 on `ImageDataGenerator(rotation_range=15, width_shift_range=0.1,
height_shift_range=0.1, horizontal_flip=True).flow(...)`. For each image the generator draws an
angle, two shifts and a flip, composes them into one affine transform about the image centre and
resamples the image once (bilinear, "nearest" fill). `LectureAugmentation` does exactly that, on
the device, inside the compiled training step, on every backend.

Keras' own `RandomRotation` followed by `RandomTranslation` draws the same parameters but
resamples twice, which blurs the image more than the generator does: that two-layer stack is kept
as `keras_layers`, so the two can be compared (`train.<variant>.augmentation`).
"""

from __future__ import annotations

import math

import keras
from keras import layers, ops

from deeplecture.params import Augmentation

ROTATION_DEGREES = 15.0  # rotation_range=15: an angle uniform in ±15°
SHIFT_FRACTION = 0.1  # width_shift_range=0.1, height_shift_range=0.1: ±10 % of the side


@keras.saving.register_keras_serializable(package="deeplecture")
class LectureAugmentation(layers.Layer):
    """One random affine transform per image, as `ImageDataGenerator` draws and applies it.

    Per image: theta ~ U(±rotation_degrees), a shift ~ U(±shift_fraction) of the height and one of
    the width, a horizontal flip with probability 1/2; the generator's matrix (rotation, then
    shift, about the centre) and the flip composed into one sampling grid; one bilinear
    resampling, the border extended by its nearest pixel. Active only while training: evaluation
    and every exported model see the image as it is.
    """

    def __init__(
        self,
        rotation_degrees: float = ROTATION_DEGREES,
        shift_fraction: float = SHIFT_FRACTION,
        horizontal_flip: bool = True,
        seed: int | None = None,
        **kwargs,
    ) -> None:
        # float32 whatever the policy: sampling coordinates in bfloat16 would be off by pixels.
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.rotation_degrees = float(rotation_degrees)
        self.shift_fraction = float(shift_fraction)
        self.horizontal_flip = bool(horizontal_flip)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training: bool = False):
        if not training:
            return images
        return self.transform(images, self.draw(ops.shape(images)[0], images.shape[1:3]))

    def draw(self, batch, size: tuple[int, int]) -> dict:
        """Each image's parameters, as `ImageDataGenerator.get_random_transform` draws them and
        in its order: theta (degrees), tx (height_shift_range × height), ty (width_shift_range ×
        width), flip_horizontal. A dict of (batch,) tensors with the generator's keys."""
        height, width = size
        return {
            "theta": self._uniform(batch, self.rotation_degrees),
            "tx": self._uniform(batch, self.shift_fraction) * height,
            "ty": self._uniform(batch, self.shift_fraction) * width,
            "flip_horizontal": ops.logical_and(
                keras.random.uniform((batch,), seed=self.seed_generator) < 0.5,
                self.horizontal_flip,
            ),
        }

    def transform(self, images, parameters: dict):
        """`images` transformed by `parameters` (as `draw` returns them): one resampling each."""
        images = ops.cast(images, "float32")
        grid = generator_transform(
            parameters["theta"] * (math.pi / 180.0),
            parameters["tx"],
            parameters["ty"],
            parameters["flip_horizontal"],
            images.shape[1],
            images.shape[2],
        )
        return ops.image.affine_transform(
            images, grid, interpolation="bilinear", fill_mode="nearest"
        )

    def _uniform(self, batch, limit: float):
        return keras.random.uniform(
            (batch,), minval=-limit, maxval=limit, seed=self.seed_generator
        )

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "rotation_degrees": self.rotation_degrees,
            "shift_fraction": self.shift_fraction,
            "horizontal_flip": self.horizontal_flip,
            "seed": self.seed,
        }


def generator_transform(theta, tx, ty, flip, height: int, width: int):
    """`keras.ops.image.affine_transform`'s rows for the generator's transform of each image.

    `apply_affine_transform` builds M = C · R(theta) · S(tx, ty) · C⁻¹ (C moves the origin to the
    centre (h/2 − 0.5, w/2 − 0.5)) in coordinates whose first axis is the column, and samples the
    input at M · (col, row) for each output pixel (row, col) — scipy's `affine_transform` after
    the generator swaps the axes. A horizontal flip afterwards reads output column W−1−col, so it
    joins the same grid: still one resampling. The rows returned map an output point (x = col,
    y = row) to the input point (a0·x + a1·y + a2, b0·x + b1·y + b2), as affine_transform wants.
    """
    cos, sin = ops.cos(theta), ops.sin(theta)
    # The generator's offsets: o_x from the height on the first axis, o_y from the width.
    o_x, o_y = height / 2 - 0.5, width / 2 - 0.5
    # M (first axis: column) = C · [[cos, −sin, cos·tx − sin·ty], [sin, cos, sin·tx + cos·ty]] · C⁻¹
    m02 = cos * tx - sin * ty + o_x - cos * o_x + sin * o_y
    m12 = sin * tx + cos * ty + o_y - sin * o_x - cos * o_y
    # Input column = cos·col − sin·row + m02; input row = sin·col + cos·row + m12, at the output
    # column col' = col (no flip) or W−1−col (flip): the sign of col's coefficient flips and its
    # offset takes (W−1)·coefficient.
    sign = ops.where(flip, -1.0, 1.0)
    last = ops.where(flip, float(width - 1), 0.0)
    a0, a1, a2 = sign * cos, -sin, m02 + last * cos
    b0, b1, b2 = sign * sin, cos, m12 + last * sin
    zeros = ops.zeros_like(theta)
    return ops.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)


def keras_layers(seed: int | None = None) -> keras.Sequential:
    """The two-resampling stack used before the lecture's one-transform layer (`keras_layers`).

    Same parameter distributions (RandomRotation's factor is a fraction of a full turn), but the
    rotation and the shift each resample the image: measurably blurrier than the generator.
    """
    return keras.Sequential(
        [
            layers.RandomRotation(ROTATION_DEGREES / 360, fill_mode="nearest", seed=seed),
            layers.RandomTranslation(
                SHIFT_FRACTION, SHIFT_FRACTION, fill_mode="nearest", seed=seed
            ),
            layers.RandomFlip("horizontal", seed=seed),
        ],
        name="augmentation",
    )


def augmentation_layer(kind: Augmentation) -> layers.Layer | None:
    """The layer `train.<variant>.augmentation` names; None for `none`."""
    if kind == "none":
        return None
    if kind == "lecture":
        return LectureAugmentation(name="augmentation")
    if kind == "keras_layers":
        return keras_layers()
    raise ValueError(f"unknown augmentation {kind!r}; known: none, lecture, keras_layers")
