"""Model builders, one per variant, and the registry that maps variant names to them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import keras

from deeplecture.models import cifar10, fashion_mnist
from deeplecture.params import Augmentation
from deeplecture.scaling import Scaling


@dataclass(frozen=True)
class Variant:
    name: str
    dataset: str
    build: Callable[[Scaling, Augmentation], keras.Model]
    lecture_param_count: int  # the lecture's printed total: the proof that the network is its


VARIANTS: dict[str, Variant] = {
    "cnn74": Variant("cnn74", "cifar10", cifar10.build_cnn74, 1_639_914),
    "cnn79": Variant("cnn79", "cifar10", cifar10.build_cnn79, 1_640_182),
    "cnn84": Variant("cnn84", "cifar10", cifar10.build_cnn84, 300_214),
    "cnn88": Variant("cnn88", "cifar10", cifar10.build_cnn88, 300_214),
    "fashion": Variant("fashion", "fashion_mnist", fashion_mnist.build_fashion, 412_778),
}


def get_variant(name: str) -> Variant:
    """Look a variant up by name; a `ValueError` lists the known ones."""
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}")
    return VARIANTS[name]
