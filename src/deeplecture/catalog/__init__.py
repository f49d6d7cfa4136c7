"""The catalog: every dataset the pipeline knows, each declared once, in a module of its own.

`params.py`, the stages, the report, the sweeps and the class tools read a dataset's names,
classes, sources, title and variants here; none spells them on its own. A new variant of a
dataset is an entry in its module (and its `variants:` and `train:` entries in params.yaml); a
new dataset is a module here, added to `DATASETS`, with its reader (`deeplecture.data.<name>`),
its builders (`deeplecture.models.<name>`), its params.yaml sections and its dvc.yaml.
"""

from __future__ import annotations

from deeplecture.catalog.cifar10 import CIFAR10
from deeplecture.catalog.entries import Dataset, Variant
from deeplecture.catalog.fashion_mnist import FASHION_MNIST
from deeplecture.foundations import EXPERIMENT as FOUNDATIONS_EXPERIMENT

DATASETS: dict[str, Dataset] = {dataset.name: dataset for dataset in (CIFAR10, FASHION_MNIST)}


def get_dataset(name: str) -> Dataset:
    """A dataset by name; a `ValueError` lists the known ones."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return DATASETS[name]


def variant_names() -> list[str]:
    """Every variant of every dataset, in catalog order."""
    return [variant.name for dataset in DATASETS.values() for variant in dataset.variants]


def find_variant(name: str) -> tuple[Dataset, Variant]:
    """A variant by name, with its dataset; a `ValueError` lists the known ones."""
    for dataset in DATASETS.values():
        for variant in dataset.variants:
            if variant.name == name:
                return dataset, variant
    raise ValueError(f"unknown variant {name!r}; known: {', '.join(variant_names())}")


def pinned_hashes() -> dict[str, str]:
    """Every known file's hash, by file name, over all datasets (`checksum: auto`)."""
    return {
        name: digest for dataset in DATASETS.values() for name, digest in dataset.pinned.items()
    }


def reference_experiments() -> tuple[str, ...]:
    """The teacher's MLflow experiments: one per dataset, and the foundations demos' (no
    dataset's, the teacher's all the same)."""
    return (*DATASETS, FOUNDATIONS_EXPERIMENT)
