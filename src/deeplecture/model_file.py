"""A saved model that describes itself: the `.keras` file plus what its outputs mean.

A `.keras` file is a zip archive (config, weights, Keras' metadata). One more member,
`deeplecture.json`, names the classes of the model's outputs in order, so whoever loads the file
(`deeplecture-predict`, a student's notebook) reads the names from the model itself instead of
guessing them from the input shape. Keras ignores members it does not know.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from deeplecture.atomic import atomic_path

if TYPE_CHECKING:  # the reader needs no Keras: it only opens the zip
    import keras

MEMBER = "deeplecture.json"


def save(model: keras.Model, path: Path, class_names: Sequence[str]) -> None:
    """Write `model` to `path` atomically, with the names of its outputs inside."""
    with atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)
        with zipfile.ZipFile(tmp, "a") as archive:
            archive.writestr(MEMBER, json.dumps({"class_names": list(class_names)}, indent=2))


def class_names(path: Path) -> tuple[str, ...] | None:
    """The class names saved in the model file at `path`, or None if it carries none."""
    try:
        with zipfile.ZipFile(path) as archive:
            if MEMBER not in archive.namelist():
                return None
            described = json.loads(archive.read(MEMBER))
    except (zipfile.BadZipFile, OSError, ValueError):
        return None  # load_model names what is wrong with the file
    names = described.get("class_names")
    return tuple(names) if isinstance(names, list) and names else None
