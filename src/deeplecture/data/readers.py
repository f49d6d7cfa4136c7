"""Each dataset's reader module, found by the catalog's convention: `deeplecture.data.<name>`.

A reader module has `check(raw, source) -> str` (the download stage: is this the dataset? a
`ValueError` says why not) and `read(raw, settings) -> (train, test)` (the preprocess stage).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from deeplecture.catalog import Dataset


def reader(dataset: Dataset) -> ModuleType:
    """The module that checks and reads `dataset`'s raw files."""
    return importlib.import_module(f"deeplecture.data.{dataset.name}")
