"""Decode a CIFAR-10 archive (canonical binary or image-folder) into uint8 arrays.

The pipeline's two calls, as every dataset's reader module has them (catalog/entries.py):
`check` (the download stage, on the verified archive) and `read` (the preprocess stage).

The archive is streamed, never extracted, and its whole member list is validated before
any member is decoded. The pickled "python" archive is refused: unpickling downloaded
data can execute code.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import lzma
import posixpath
import sys
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from deeplecture.catalog.cifar10 import CIFAR10
from deeplecture.data.archive import ArchiveError, read_member, safe_members
from deeplecture.data.splits import ImageSplit

CLASS_NAMES = CIFAR10.class_names
IMAGE_SHAPE = CIFAR10.image_shape
# The canonical archive: plain bytes (the "python" one holds pickles, never loaded).
BINARY_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"

BINARY_DIR = "cifar-10-batches-bin"
PYTHON_DIR = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"{BINARY_DIR}/data_batch_{i}.bin" for i in range(1, 6))
TEST_BATCH = f"{BINARY_DIR}/test_batch.bin"
_BINARY_EXTRAS = (f"{BINARY_DIR}/batches.meta.txt", f"{BINARY_DIR}/readme.html")
_PIXELS = IMAGE_SHAPE[0] * IMAGE_SHAPE[1] * IMAGE_SHAPE[2]
RECORD_BYTES = 1 + _PIXELS
# Caps on what one member may make us read into memory; a canonical batch is 10,000 records
# and a 32x32 image file is a few KiB (an uncompressed 32x32 RGBA PNG about 4 KiB), so
# anything far larger is not CIFAR-10.
_MAX_BATCH_BYTES = 10_000 * RECORD_BYTES
_MAX_IMAGE_BYTES = 64 * 1024

SPLITS = ("train", "test")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_IMAGE_LAYOUT = (
    "[<top>/]train|test/<class>/<image>.jpg|.jpeg|.png with <class> one of "
    + ", ".join(CLASS_NAMES)
)
# Errors the tar/compression layers raise on a corrupt or non-tar file.
_CORRUPT = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError)


def detect_format(archive_path: Path, *, name: str | None = None) -> str:
    """Return "binary" or "image-folder" for a CIFAR-10 archive; raise ArchiveError otherwise.

    The whole member list is checked, as `read_cifar10_archive` checks it, but nothing is
    decoded: an unsafe, unexpected or missing member fails here. `name` is how messages refer
    to the archive (default: its file name).
    """
    archive_name = name or Path(archive_path).name
    with _open_archive(archive_path) as tar:
        members = _checked_files(tar, archive_name)
    kind = _classify([_clean(m.name) for m in members], archive_name)
    if kind == "binary":
        _binary_plan(members, archive_name)
    else:
        _image_folder_plan(members, archive_name)
    return kind


def check(archive: Path, source: str) -> str:
    """What kind of CIFAR-10 archive `archive` (fetched from `source`) is; an `ArchiveError`
    names what is wrong with its member list."""
    return detect_format(archive, name=source)


def read(archive: Path, settings: Any) -> tuple[ImageSplit, ImageSplit]:
    """(train, test) for the preprocess stage; `settings` is `preprocess.cifar10`."""
    return read_cifar10_archive(archive, shuffle_seed=settings.shuffle_seed)


def read_cifar10_archive(
    archive_path: Path, *, shuffle_seed: int, progress: bool = True
) -> tuple[ImageSplit, ImageSplit]:
    """Decode `archive_path` into (train, test).

    Binary archives keep CIFAR-10's original order; image-folder archives list images class
    by class, so each split is shuffled once with `shuffle_seed`.
    """
    archive_name = Path(archive_path).name
    with _open_archive(archive_path) as tar:
        members = _checked_files(tar, archive_name)
        kind = _classify([_clean(m.name) for m in members], archive_name)
        if kind == "binary":
            batches = _binary_plan(members, archive_name)
            return _read_binary(tar, batches, archive_name)
        entries = _image_folder_plan(members, archive_name)
        return _read_image_folder(tar, entries, archive_name, shuffle_seed, progress)


@contextlib.contextmanager
def _open_archive(archive_path: Path) -> Iterator[tarfile.TarFile]:
    # "r:*" reads any compression; members are then read in archive order, because
    # seeking backwards in a gzip stream means decompressing again from the start.
    try:
        with tarfile.open(archive_path, "r:*") as tar:
            yield tar
    except _CORRUPT as err:
        raise ArchiveError(f"{archive_path} is not a readable tar archive: {err}") from err


def _clean(name: str) -> str:
    # Tools differ on writing "./" before member names; compare names without it.
    # (String-based rather than pathlib: this runs for each of 60,000 members.)
    return posixpath.normpath(name)


def _checked_files(tar: tarfile.TarFile, archive_name: str) -> list[tarfile.TarInfo]:
    files = safe_members(tar, archive_name)
    seen: set[str] = set()
    for member in files:
        name = _clean(member.name)
        if name in seen:
            # Two members of one name are ambiguous: tools disagree on which one wins.
            raise ArchiveError(f"duplicate member {member.name!r} in {archive_name}")
        seen.add(name)
    return files


def _classify(names: list[str], archive_name: str) -> str:
    if not names:
        raise ArchiveError(f"{archive_name} holds no files")
    if any(PYTHON_DIR in name.split("/") for name in names):
        raise ArchiveError(
            f"{archive_name} is the CIFAR-10 python archive (members under {PYTHON_DIR}/). "
            "Its batches are Python pickles, and unpickling downloaded data can execute "
            "arbitrary code, so they are never loaded. Use the binary archive "
            f"({BINARY_URL}) or an image-folder archive ({_IMAGE_LAYOUT}) instead."
        )
    if any(name.split("/")[0] == BINARY_DIR for name in names):
        return "binary"
    if _image_folder_prefix(names) is not None:
        return "image-folder"
    raise ArchiveError(
        f"{archive_name} is not a CIFAR-10 archive: expected the binary layout "
        f"({BINARY_DIR}/data_batch_1.bin ... test_batch.bin) or an image folder ({_IMAGE_LAYOUT})"
    )


def _image_folder_prefix(names: list[str]) -> str | None:
    """ "" for train/ and test/ at the top, "<top>/" for one common folder above them, else None."""
    parts = [name.split("/") for name in names]
    tops = {p[0] for p in parts}
    if tops & set(SPLITS):
        return ""
    if len(tops) == 1 and any(len(p) > 1 and p[1] in SPLITS for p in parts):
        return f"{next(iter(tops))}/"
    return None


# --- binary format ----------------------------------------------------------------------


def _binary_plan(members: list[tarfile.TarInfo], archive_name: str) -> dict[str, tarfile.TarInfo]:
    allowed = {*TRAIN_BATCHES, TEST_BATCH, *_BINARY_EXTRAS}
    batches = {}
    for member in members:
        name = _clean(member.name)
        if name not in allowed:
            raise ArchiveError(
                f"unexpected member {member.name!r} in {archive_name}: a CIFAR-10 binary archive "
                f"holds only {BINARY_DIR}/data_batch_1..5.bin, test_batch.bin, batches.meta.txt "
                "and readme.html"
            )
        if name in _BINARY_EXTRAS:
            continue
        if member.size > _MAX_BATCH_BYTES:
            raise ArchiveError(
                f"member {member.name!r} in {archive_name} is {member.size} bytes, more than the "
                f"{_MAX_BATCH_BYTES} of a full CIFAR-10 batch"
            )
        batches[name] = member
    missing = [name for name in (*TRAIN_BATCHES, TEST_BATCH) if name not in batches]
    if missing:
        raise ArchiveError(f"{archive_name} lacks {', '.join(missing)}")
    return batches


def _read_binary(
    tar: tarfile.TarFile, batches: dict[str, tarfile.TarInfo], archive_name: str
) -> tuple[ImageSplit, ImageSplit]:
    # Read in archive order (cheap for gzip), then assemble in CIFAR-10's batch order.
    wanted = set(batches.values())
    decoded = {
        _clean(member.name): _decode_batch(
            read_member(tar, member), f"{archive_name}: {member.name}"
        )
        for member in tar.getmembers()
        if member in wanted
    }
    train = [decoded[name] for name in TRAIN_BATCHES]
    test_images, test_labels = decoded[TEST_BATCH]
    return (
        ImageSplit(np.concatenate([b[0] for b in train]), np.concatenate([b[1] for b in train])),
        ImageSplit(test_images, test_labels),
    )


def _decode_batch(data: bytes, file_name: str) -> tuple[np.ndarray, np.ndarray]:
    """Split a binary batch into HWC images and labels; each record is label + CHW pixels."""
    if not data or len(data) % RECORD_BYTES:
        raise ValueError(
            f"{file_name} is {len(data)} bytes long, not a positive multiple of the "
            f"{RECORD_BYTES}-byte CIFAR-10 record"
        )
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, RECORD_BYTES)
    labels = records[:, 0].copy()
    bad = np.flatnonzero(labels >= len(CLASS_NAMES))
    if bad.size:
        index = int(bad[0])
        raise ValueError(
            f"{file_name}: record {index} has label {int(labels[index])}; "
            f"CIFAR-10 labels are 0..{len(CLASS_NAMES) - 1}"
        )
    channels, height, width = IMAGE_SHAPE[2], IMAGE_SHAPE[0], IMAGE_SHAPE[1]
    images = records[:, 1:].reshape(-1, channels, height, width).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


# --- image-folder format ----------------------------------------------------------------


@dataclass(frozen=True)
class _ImageEntry:
    member: tarfile.TarInfo
    name: str
    split: str
    label: int


def _image_folder_plan(members: list[tarfile.TarInfo], archive_name: str) -> list[_ImageEntry]:
    prefix = _image_folder_prefix([_clean(m.name) for m in members]) or ""
    entries = [_image_entry(member, prefix, archive_name) for member in members]
    for split in SPLITS:
        if not any(entry.split == split for entry in entries):
            raise ArchiveError(f"{archive_name} has no images under {prefix}{split}/")
    present = {entry.label for entry in entries if entry.split == "train"}
    missing = [name for label, name in enumerate(CLASS_NAMES) if label not in present]
    if missing:
        raise ArchiveError(
            f"{archive_name} has no training images for the classes {', '.join(missing)}"
        )
    return entries


def _image_entry(member: tarfile.TarInfo, prefix: str, archive_name: str) -> _ImageEntry:
    name = _clean(member.name)

    def unexpected(reason: str) -> ArchiveError:
        return ArchiveError(
            f"unexpected member {member.name!r} in {archive_name} ({reason}); "
            f"expected {_IMAGE_LAYOUT}"
        )

    parts = name[len(prefix) :].split("/")
    if len(parts) != 3 or parts[0] not in SPLITS:
        raise unexpected("not inside a train/<class>/ or test/<class>/ folder")
    split, class_name, file_name = parts
    if class_name not in CLASS_NAMES:
        raise unexpected(f"unknown class folder {class_name!r}")
    if not file_name.lower().endswith(IMAGE_SUFFIXES):
        raise unexpected("not a .jpg, .jpeg or .png file")
    if member.size > _MAX_IMAGE_BYTES:
        raise ArchiveError(
            f"member {member.name!r} in {archive_name} is {member.size} bytes, far too large "
            "for a 32x32 image"
        )
    return _ImageEntry(member, name, split, CLASS_NAMES.index(class_name))


def _read_image_folder(
    tar: tarfile.TarFile,
    entries: list[_ImageEntry],
    archive_name: str,
    shuffle_seed: int,
    progress: bool,
) -> tuple[ImageSplit, ImageSplit]:
    # Each member is decoded as soon as it is read, so memory holds decoded 3 KiB images, never
    # the whole archive's file bytes; they are then sorted by name, so the result does not
    # depend on how the tar was written.
    decoded: dict[str, list[tuple[str, np.ndarray, int]]] = {split: [] for split in SPLITS}
    with tqdm(
        total=len(entries),
        desc=f"decoding {archive_name}",
        unit="img",
        file=sys.stderr,
        disable=not progress,
    ) as bar:
        for entry in entries:
            pixels = _decode_image(read_member(tar, entry.member), entry.member.name, archive_name)
            decoded[entry.split].append((entry.name, pixels, entry.label))
            bar.update()
    rng = np.random.default_rng(shuffle_seed)
    splits = []
    for split in SPLITS:
        items = sorted(decoded[split], key=lambda item: item[0])
        images = np.stack([pixels for _, pixels, _ in items])
        labels = np.array([label for _, _, label in items], dtype=np.uint8)
        # Images come class by class; without a shuffle a tail validation split would hold
        # only the last class.
        order = rng.permutation(len(items))
        splits.append(ImageSplit(images[order], labels[order]))
    return splits[0], splits[1]


def _decode_image(data: bytes, member_name: str, archive_name: str) -> np.ndarray:
    try:
        # Only the two formats the layout allows: no other Pillow decoder sees this data.
        with Image.open(io.BytesIO(data), formats=["JPEG", "PNG"]) as image:
            size = image.size
            pixels = np.asarray(image.convert("RGB"), dtype=np.uint8) if size == (32, 32) else None
    except UnidentifiedImageError:
        # Pillow's own message names the in-memory buffer (<_io.BytesIO object at 0x...>).
        raise ValueError(
            f"cannot decode image {member_name!r} in {archive_name}: not a JPEG or PNG file"
        ) from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ValueError(f"cannot decode image {member_name!r} in {archive_name}: {err}") from err
    if pixels is None:
        raise ValueError(
            f"image {member_name!r} in {archive_name} is {size[0]}x{size[1]} pixels; "
            "CIFAR-10 images are 32x32"
        )
    return pixels
