"""The input scaling that preprocessing decides on and the model applies as its first layer."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Scaling:
    """Per-channel affine map from raw pixels (0..255) to the network's input: x * scale + offset.

    `divide255` (the lecture) is scale 1/255, offset 0; `standardize` is scale 1/std,
    offset -mean/std with the statistics of the training split.
    """

    scale: tuple[float, ...]
    offset: tuple[float, ...]

    @classmethod
    def divide255(cls, channels: int) -> Scaling:
        return cls(scale=(1 / 255,) * channels, offset=(0.0,) * channels)

    @classmethod
    def standardize(cls, mean: np.ndarray, std: np.ndarray) -> Scaling:
        std = np.maximum(std, 1e-6)  # a constant channel must not divide by zero
        return cls(
            scale=tuple(float(v) for v in 1 / std), offset=tuple(float(v) for v in -mean / std)
        )
