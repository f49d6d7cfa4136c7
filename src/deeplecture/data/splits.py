"""One split of a labelled image dataset, as every stage after decoding sees it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NUM_CLASSES = 10


@dataclass(frozen=True, eq=False)  # eq=False: == on array fields would raise
class ImageSplit:
    """Images (N, H, W, C) uint8 in HWC order and their labels (N,) uint8 in 0..9."""

    images: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        if len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def onehot(self) -> np.ndarray:
        """The labels as float32 one-hot rows (the lecture's `to_categorical`)."""
        return np.eye(NUM_CLASSES, dtype="float32")[self.labels]
