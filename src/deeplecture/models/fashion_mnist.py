"""The Fashion-MNIST CNN, layer for layer (LECTURE.md, "Fashion-MNIST"): 412,778 parameters.

Like the CIFAR-10 networks it takes raw pixels (0..255): the scaling is its first layer, so the
saved `.keras` file alone reproduces the test.
"""

from __future__ import annotations

import keras
from keras import layers

from deeplecture.catalog.fashion_mnist import FASHION_MNIST
from deeplecture.data.splits import NUM_CLASSES
from deeplecture.models.common import scaling_layer, softmax_output
from deeplecture.params import Augmentation
from deeplecture.scaling import Scaling

INPUT_SHAPE = FASHION_MNIST.image_shape


def build_fashion(scaling: Scaling, augmentation: Augmentation = "none") -> keras.Model:
    """Conv 64 (2x2) -> pool -> conv 32 (2x2) -> pool -> Dense 256 -> 10; 412,778 params.

    The tutorial trains without augmentation, so there is none to switch on.
    """
    if augmentation != "none":
        raise ValueError(
            "the fashion variant has no augmentation: set train.fashion.augmentation=none"
        )
    inputs = keras.Input(shape=INPUT_SHAPE, name="input")
    h = scaling_layer(scaling)(inputs)
    h = layers.Conv2D(64, (2, 2), padding="same", activation="relu", name="conv1")(h)
    h = layers.MaxPooling2D((2, 2), name="pool1")(h)
    h = layers.Dropout(0.3)(h)
    h = layers.Conv2D(32, (2, 2), padding="same", activation="relu", name="conv2")(h)
    h = layers.MaxPooling2D((2, 2), name="pool2")(h)
    h = layers.Dropout(0.3)(h)
    h = layers.Flatten()(h)
    h = layers.Dense(256, activation="relu", name="hidden")(h)
    h = layers.Dropout(0.5)(h)
    outputs = softmax_output(NUM_CLASSES)(h)
    return keras.Model(inputs, outputs, name="fashion")
