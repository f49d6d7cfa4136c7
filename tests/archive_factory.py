"""Build tiny CIFAR-10 archives for tests: binary, image-folder and crafted malicious ones.

The encoders here are written independently of the reader (plain per-record loops), so a
round trip checks the reader's vectorised layout transform rather than repeating it.
"""

from __future__ import annotations

import io
import pickle
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

CLASS_NAMES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
BINARY_DIR = "cifar-10-batches-bin"
TRAIN_BATCHES = tuple(f"{BINARY_DIR}/data_batch_{i}.bin" for i in range(1, 6))
TEST_BATCH = f"{BINARY_DIR}/test_batch.bin"


@dataclass
class Arrays:
    """What a reader should return for an archive made here."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


# --- plain tar writing --------------------------------------------------------------------


def file_info(name: str, data: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    return info


def write_tar(
    path: Path,
    members: Mapping[str, bytes],
    *,
    raw: Sequence[tuple[tarfile.TarInfo, bytes]] = (),
    mode: str = "w:gz",
) -> Path:
    """Write regular-file `members` (in the given order), then any hand-made `raw` members."""
    with tarfile.open(path, mode) as tar:
        for name, data in members.items():
            tar.addfile(file_info(name, data), io.BytesIO(data))
        for info, data in raw:
            tar.addfile(info, io.BytesIO(data) if data else None)
    return path


# --- binary format ------------------------------------------------------------------------


def random_images(rng: np.random.Generator, count: int) -> np.ndarray:
    return rng.integers(0, 256, size=(count, 32, 32, 3), dtype=np.uint8)


def encode_batch(images: np.ndarray, labels: np.ndarray | list[int]) -> bytes:
    """CIFAR-10 binary records: a label byte, then the R, G and B planes, each row-major."""
    out = bytearray()
    for image, label in zip(images, labels, strict=True):
        out.append(int(label))
        for channel in range(3):
            out += image[:, :, channel].tobytes()
    return bytes(out)


def binary_members(records_per_batch: int = 4, seed: int = 0) -> tuple[dict[str, bytes], Arrays]:
    """Members of a canonical-layout binary archive and the arrays they encode."""
    rng = np.random.default_rng(seed)
    members = {f"{BINARY_DIR}/batches.meta.txt": "\n".join(CLASS_NAMES).encode()}
    images, labels = [], []
    for name in (*TRAIN_BATCHES, TEST_BATCH):
        batch_images = random_images(rng, records_per_batch)
        batch_labels = rng.integers(0, 10, size=records_per_batch, dtype=np.uint8)
        members[name] = encode_batch(batch_images, batch_labels)
        images.append(batch_images)
        labels.append(batch_labels)
    members[f"{BINARY_DIR}/readme.html"] = b"<html>tiny test archive</html>"
    arrays = Arrays(np.concatenate(images[:5]), np.concatenate(labels[:5]), images[5], labels[5])
    return members, arrays


def make_binary_archive(
    path: Path,
    records_per_batch: int = 4,
    seed: int = 0,
    *,
    replace: Mapping[str, bytes | None] | None = None,
    raw: Sequence[tuple[tarfile.TarInfo, bytes]] = (),
) -> Arrays:
    """Write a binary-format archive; `replace` swaps (or, with None, drops) members by name."""
    members, arrays = binary_members(records_per_batch, seed)
    for name, data in (replace or {}).items():
        if data is None:
            members.pop(name)
        else:
            members[name] = data
    write_tar(path, members, raw=raw)
    return arrays


# --- image-folder format ------------------------------------------------------------------


def encode_image(image: np.ndarray, image_format: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=image_format)
    return buffer.getvalue()


def image_folder_members(
    *,
    train_per_class: int = 3,
    test_per_class: int = 1,
    seed: int = 0,
    top: str = "",
    classes: tuple[str, ...] = CLASS_NAMES,
) -> tuple[dict[str, bytes], dict[bytes, int]]:
    """PNG members laid out class by class, and a map from raw pixel bytes to label."""
    rng = np.random.default_rng(seed)
    members: dict[str, bytes] = {}
    labels: dict[bytes, int] = {}
    for split, count in (("train", train_per_class), ("test", test_per_class)):
        for class_name in classes:
            for i, image in enumerate(random_images(rng, count)):
                members[f"{top}{split}/{class_name}/{i:04d}.png"] = encode_image(image)
                labels[image.tobytes()] = CLASS_NAMES.index(class_name)
    return members, labels


def make_image_folder_archive(
    path: Path,
    *,
    reverse: bool = False,
    extra: Mapping[str, bytes] | None = None,
    **options: object,
) -> dict[bytes, int]:
    """Write an image-folder archive (members reversed if asked); return pixels -> label."""
    members, labels = image_folder_members(**options)
    members.update(extra or {})
    if reverse:
        members = dict(reversed(members.items()))
    write_tar(path, members)
    return labels


# --- crafted, malicious archives ----------------------------------------------------------

OUTSIDE_NAME = "escaped-by-archive.txt"


def malicious_member(kind: str, outside: Path) -> tarfile.TarInfo:
    """A hand-made member of the given kind; `outside` is a path beyond any extraction root."""
    payload_name = f"{BINARY_DIR}/payload"
    if kind == "traversal":
        info = file_info(f"{BINARY_DIR}/../../{OUTSIDE_NAME}", b"x")
    elif kind == "absolute":
        info = file_info(str(outside / OUTSIDE_NAME), b"x")
    elif kind == "symlink":
        info = tarfile.TarInfo(payload_name)
        info.type = tarfile.SYMTYPE
        info.linkname = str(outside / OUTSIDE_NAME)
    elif kind == "hardlink":
        info = tarfile.TarInfo(payload_name)
        info.type = tarfile.LNKTYPE
        info.linkname = TRAIN_BATCHES[0]
    elif kind == "device":
        info = tarfile.TarInfo(payload_name)
        info.type = tarfile.CHRTYPE
        info.devmajor, info.devminor = 1, 3
    elif kind == "fifo":
        info = tarfile.TarInfo(payload_name)
        info.type = tarfile.FIFOTYPE
    else:
        raise ValueError(kind)
    return info


def make_malicious_archive(path: Path, kind: str, outside: Path) -> str:
    """A valid binary archive plus one malicious member; returns that member's name."""
    info = malicious_member(kind, outside)
    data = b"x" if info.isfile() else b""
    make_binary_archive(path, raw=[(info, data)])
    return info.name


class PlantMarker:
    """Unpickling this object creates `marker`: stands in for arbitrary code execution."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.marker, "w"))


def malicious_pickle(marker: Path) -> bytes:
    return pickle.dumps({"data": PlantMarker(marker), "labels": [0]})


def make_python_format_archive(path: Path, marker: Path) -> Path:
    """A CIFAR-10 *python*-layout archive whose first batch would create `marker` if unpickled."""
    payload = malicious_pickle(marker)
    members = {f"cifar-10-batches-py/data_batch_{i}": payload for i in range(1, 6)}
    members["cifar-10-batches-py/test_batch"] = payload
    members["cifar-10-batches-py/batches.meta"] = payload
    return write_tar(path, members)
