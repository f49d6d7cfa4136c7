"""Pieces shared by every model."""

from __future__ import annotations

import numpy as np
from keras import layers

from deeplecture.scaling import Scaling


def scaling_layer(scaling: Scaling) -> layers.Rescaling:
    """A parameter-free layer that applies `scaling` inside the model, so the saved model
    takes raw pixels."""
    return layers.Rescaling(
        scale=np.asarray(scaling.scale, dtype="float32"),
        offset=np.asarray(scaling.offset, dtype="float32"),
        name="scaling",
    )


def softmax_output(classes: int) -> layers.Dense:
    """The classifier's last layer. Always float32: under the mixed_bfloat16 policy the
    probabilities, and so the cross-entropy, keep full precision (Keras' mixed-precision advice);
    under float32 this changes nothing."""
    return layers.Dense(classes, activation="softmax", name="output", dtype="float32")
