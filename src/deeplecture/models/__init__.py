"""Model builders, one per variant, found from the catalog's entries.

A variant's network is the function its catalog entry names in `deeplecture.models.<dataset>`
(cifar10.py, fashion_mnist.py).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

import keras

from deeplecture import catalog
from deeplecture.params import Augmentation
from deeplecture.scaling import Scaling


@dataclass(frozen=True)
class Variant:
    name: str
    dataset: str
    build: Callable[[Scaling, Augmentation], keras.Model]
    lecture_param_count: int  # the lecture's printed total: the proof that the network is its


def get_variant(name: str) -> Variant:
    """Look a variant up by name; a `ValueError` lists the known ones."""
    dataset, entry = catalog.find_variant(name)
    builders = importlib.import_module(f"deeplecture.models.{dataset.name}")
    return Variant(name, dataset.name, getattr(builders, entry.builder), entry.lecture_param_count)
