"""The lecture's four CIFAR-10 networks, layer for layer (LECTURE.md, "CIFAR-10 progression").

Each builder returns a functional `keras.Model` that takes raw pixels (0..255). Scaling, and for
cnn88 augmentation, are layers inside the model, so the saved `.keras` file alone reproduces the
lecture's forward-only test scripts, and augmentation runs on whatever device trains the model.
Neither adds a parameter: the parameter counts are the lecture's, which the tests assert.
"""

from __future__ import annotations

import keras
from keras import layers, regularizers

from deeplecture.augmentation import augmentation_layer
from deeplecture.catalog.cifar10 import CIFAR10
from deeplecture.data.splits import NUM_CLASSES
from deeplecture.models.common import scaling_layer, softmax_output
from deeplecture.params import Augmentation
from deeplecture.scaling import Scaling

INPUT_SHAPE = CIFAR10.image_shape


def build_cnn74(scaling: Scaling, augmentation: Augmentation = "none") -> keras.Model:
    """Cifar10_CNN_74_Train.py: three convolutions, a 512-unit dense layer; 1,639,914 params."""
    inputs, h = _stem(scaling, augmentation)
    h = layers.Conv2D(32, (3, 3), activation="relu", name="conv1")(h)
    h = layers.Dropout(0.2)(h)
    h = layers.Conv2D(32, (3, 3), activation="relu", padding="same", name="conv2")(h)
    h = layers.MaxPooling2D((2, 2), name="pool1")(h)
    h = layers.Conv2D(64, (3, 3), activation="relu", padding="same", name="conv3")(h)
    h = layers.MaxPooling2D((2, 2), name="pool2")(h)
    return _dense_head(inputs, h, name="cnn74")


def build_cnn79(scaling: Scaling, augmentation: Augmentation = "none") -> keras.Model:
    """cnn74 with batch normalization on the input, before conv2 and before conv3; 1,640,182."""
    inputs, h = _stem(scaling, augmentation)
    h = layers.BatchNormalization()(h)
    h = layers.Conv2D(32, (3, 3), activation="relu", name="conv1")(h)
    h = layers.Dropout(0.2)(h)
    h = layers.BatchNormalization()(h)
    h = layers.Conv2D(32, (3, 3), activation="relu", padding="same", name="conv2")(h)
    h = layers.MaxPooling2D((2, 2), name="pool1")(h)
    h = layers.BatchNormalization()(h)
    h = layers.Conv2D(64, (3, 3), activation="relu", padding="same", name="conv3")(h)
    h = layers.MaxPooling2D((2, 2), name="pool2")(h)
    return _dense_head(inputs, h, name="cnn79")


def build_cnn84(scaling: Scaling, augmentation: Augmentation = "none") -> keras.Model:
    """The 32-64-128 network of Cifar10_CNN_88_Train.py with L2(1e-4) kernels; 300,214 params.

    cnn84 is this network trained without augmentation; cnn88 is the same network with it.
    """
    inputs, h = _stem(scaling, augmentation)
    h = layers.BatchNormalization()(h)
    h = _regularized_conv(32, "valid")(h)
    h = _regularized_conv(32, "valid")(h)
    h = layers.BatchNormalization()(h)
    h = layers.MaxPooling2D((2, 2))(h)
    h = layers.Dropout(0.2)(h)
    h = _regularized_conv(64, "same")(h)
    h = layers.BatchNormalization()(h)
    h = _regularized_conv(64, "same")(h)
    h = layers.BatchNormalization()(h)
    h = layers.MaxPooling2D((2, 2))(h)
    h = layers.Dropout(0.3)(h)
    h = _regularized_conv(128, "same")(h)
    h = layers.BatchNormalization()(h)
    h = _regularized_conv(128, "same")(h)
    h = layers.BatchNormalization()(h)
    h = layers.MaxPooling2D((2, 2))(h)
    h = layers.Dropout(0.4)(h)
    h = layers.Flatten()(h)
    outputs = softmax_output(NUM_CLASSES)(h)
    return keras.Model(inputs, outputs, name="cnn84")


def build_cnn88(scaling: Scaling, augmentation: Augmentation = "lecture") -> keras.Model:
    """cnn84's network trained on augmented batches (the augmentation is part of the model)."""
    model = build_cnn84(scaling, augmentation)
    model.name = "cnn88"
    return model


def _stem(
    scaling: Scaling, augmentation: Augmentation
) -> tuple[keras.KerasTensor, keras.KerasTensor]:
    inputs = keras.Input(shape=INPUT_SHAPE, name="input")
    augment = augmentation_layer(augmentation)
    h = augment(inputs) if augment is not None else inputs
    return inputs, scaling_layer(scaling)(h)


def _dense_head(inputs: keras.KerasTensor, h: keras.KerasTensor, name: str) -> keras.Model:
    h = layers.Flatten()(h)
    h = layers.Dropout(0.2)(h)
    h = layers.Dense(512, activation="relu", name="poolhidden")(h)
    h = layers.Dropout(0.2)(h)
    outputs = softmax_output(NUM_CLASSES)(h)
    return keras.Model(inputs, outputs, name=name)


def _regularized_conv(filters: int, padding: str) -> layers.Conv2D:
    return layers.Conv2D(
        filters,
        (3, 3),
        activation="relu",
        padding=padding,
        kernel_regularizer=regularizers.l2(1e-4),
    )
