"""A saved model that describes itself: the `.keras` file plus what its outputs mean.

A `.keras` file is a zip archive (config, weights, Keras' metadata). One more member,
`deeplecture.json`, names the classes of the model's outputs in order, so whoever loads the file
(`deeplecture-predict`, a student's notebook) reads the names from the model itself instead of
guessing them from the input shape. Keras ignores members it does not know.

The same class-names document, `{"class_names": [name, ...]}`, travels with exported models
(edge/files.py): one reader checks it wherever it comes from.
"""

from __future__ import annotations

import json
import zipfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from deeplecture.atomic import atomic_path

if TYPE_CHECKING:  # the reader needs no Keras: it only opens the zip
    import keras

MEMBER = "deeplecture.json"
# A document of a thousand class names is a few tens of KiB: a member far larger is not one, and
# is refused from the zip's directory before it is decompressed.
MAX_DOCUMENT_BYTES = 1 << 20
_EXPECTED = '{"class_names": [name, ...]}'


def save(model: keras.Model, path: Path, class_names: Sequence[str]) -> None:
    """Write `model` to `path` atomically, with the names of its outputs inside."""
    with atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)
        with zipfile.ZipFile(tmp, "a") as archive:
            archive.writestr(MEMBER, class_names_document(class_names))


def class_names(path: Path, outputs: int | None = None) -> tuple[str, ...] | None:
    """The class names saved in the model file at `path`, or None if it carries none; a one-line
    `ValueError` naming the file if its `deeplecture.json` is not a class-names document (for
    `outputs` outputs, when given)."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError):
        return None  # load_model names what is wrong with the file
    source = f"{path} (its {MEMBER})"
    with archive:
        try:
            member = archive.getinfo(MEMBER)
        except KeyError:
            return None
        if member.file_size > MAX_DOCUMENT_BYTES:
            raise ValueError(
                f"{source}: {member.file_size:,} bytes, too large for a class-names document"
            )
        try:
            text = archive.read(member)
        except (zipfile.BadZipFile, OSError, EOFError) as error:  # a bad CRC, a cut member
            raise ValueError(f"{source} is damaged ({error})") from None
    return parse_class_names(text, source, outputs)


def class_names_document(class_names: Sequence[str]) -> str:
    """The class names as `deeplecture.json`, `class_names.json` and the ONNX metadata hold them."""
    return json.dumps({"class_names": list(class_names)}, indent=2)


def parse_class_names(
    text: str | bytes, source: object, outputs: int | None = None
) -> tuple[str, ...]:
    """The names of a `class_names_document`: a JSON object whose "class_names" is a list of
    distinct, non-empty strings (`outputs` of them, when given). Anything else is a one-line
    `ValueError` naming `source` and what is wrong."""
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as error:  # RecursionError: nesting deeper than json goes
        detail = " ".join(str(error).split()) or type(error).__name__
        raise ValueError(
            f"{source}: not a JSON document ({detail}); expected {_EXPECTED}"
        ) from None
    names = document.get("class_names") if isinstance(document, dict) else None
    if not isinstance(names, list) or not names:
        raise ValueError(f"{source}: expected {_EXPECTED}, got {_shown(document)}")
    for index, name in enumerate(names):
        if not isinstance(name, str) or not name.strip():
            raise ValueError(
                f"{source}: class name {index} is {_shown(name)}, expected a non-empty string"
            )
    repeated = sorted(name for name, count in Counter(names).items() if count > 1)
    if repeated:
        raise ValueError(f"{source}: class names repeat ({', '.join(map(repr, repeated))})")
    if outputs is not None and len(names) != outputs:
        raise ValueError(f"{source}: {len(names)} class names for a model of {outputs} outputs")
    return tuple(names)


def _shown(value: object, limit: int = 60) -> str:
    """`value` as JSON, cut to `limit` characters: enough to recognize it in one line."""
    try:
        text = json.dumps(value)
    except (ValueError, RecursionError):
        text = type(value).__name__
    return text if len(text) <= limit else f"{text[: limit - 3]}..."
