"""Which images each training step sees, as index arrays into the training split.

Both training loops draw their batches here: `model.fit` through `endless_batches` (cnn88's
`steps_per_epoch`), the fast loop through `epoch_batches` and `group_steps`. For one seed both
see the same batches in the same order.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator

import numpy as np

from deeplecture.data.splits import ImageSplit


def shuffled_passes(count: int, batch_size: int, seed: int, start: int = 0) -> Iterator[np.ndarray]:
    """Reshuffled passes over `count` images, forever, like ImageDataGenerator.flow, from the
    `start`-th batch of the stream on (a resumed run: the batches its epochs done consumed).

    With `steps_per_epoch` an "epoch" is a number of batches, not a pass (cnn88: 2,000 batches,
    1.28 passes), so batches keep coming across pass boundaries; the last batch of a pass is
    short, as in the generator. Indices are sorted within a batch: the gather reads memory in
    order, and a batch is a set, so training is unchanged. One generator for the whole stream,
    so a resumed run sees the batches an uninterrupted one would have seen.
    """
    rng = np.random.default_rng(seed)
    passes_done, offset = divmod(start, math.ceil(count / batch_size))
    for _ in range(passes_done):
        rng.permutation(count)  # drawn only to move the generator past the passes done
    while True:
        order = rng.permutation(count)
        for first in range(offset * batch_size, count, batch_size):
            yield np.sort(order[first : first + batch_size])
        offset = 0


def steps_in_epoch(count: int, batch_size: int, steps_per_epoch: int | None) -> int:
    """`steps_per_epoch`, or one pass (the last batch short) as `model.fit` does without it."""
    return steps_per_epoch if steps_per_epoch is not None else math.ceil(count / batch_size)


def epoch_batches(stream: Iterator[np.ndarray], steps: int) -> list[np.ndarray]:
    """The next `steps` batches of `stream`."""
    return list(itertools.islice(stream, steps))


def group_steps(
    batches: list[np.ndarray], batch_size: int, steps_per_call: int
) -> Iterator[np.ndarray]:
    """Consecutive full batches stacked into (steps, batch_size) arrays of at most
    `steps_per_call` rows; a short batch (a pass's last) comes alone, as a (1, size) array.

    Each array is one compiled call: few distinct shapes, so few compilations.
    """
    group: list[np.ndarray] = []
    for batch in batches:
        if len(batch) == batch_size:
            group.append(batch)
            if len(group) == steps_per_call:
                yield np.stack(group)
                group = []
            continue
        if group:
            yield np.stack(group)
            group = []
        yield batch[np.newaxis]
    if group:
        yield np.stack(group)


def endless_batches(
    split: ImageSplit, batch_size: int, seed: int, start: int = 0
) -> Iterator[tuple[np.ndarray, ...]]:
    """`shuffled_passes` as (images, one-hot labels) batches, for `model.fit`."""
    onehot = split.onehot
    for index in shuffled_passes(len(split), batch_size, seed, start):
        yield split.images[index], onehot[index]
