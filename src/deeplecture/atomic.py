"""Atomic file writes: a reader sees the old file or the complete new one, never a part."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(final_path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `final_path`; rename it into place only on success.

    The temporary file lives in the same folder so the rename stays on one file system
    (and so is atomic). On any exception the temporary file is removed and the final
    path is left exactly as it was.
    """
    final_path = Path(final_path)
    final_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{final_path.name}.", suffix=f".part{suffix}", dir=final_path.parent
    )
    os.close(fd)
    tmp_path = Path(tmp_name)
    try:
        yield tmp_path
        os.chmod(tmp_path, _file_mode())
        os.replace(tmp_path, final_path)
    finally:
        tmp_path.unlink(missing_ok=True)


class NotWritable(OSError):
    """A file `atomic_path` would write cannot be written there."""


def check_writable(final_path: str | os.PathLike) -> None:
    """Raise `NotWritable` naming `final_path` unless `atomic_path` can write it: not a folder,
    and its nearest existing folder takes a new file (the missing folders below it are made
    then). Nothing is left behind, no folder made, so a check that passes changes nothing."""
    final_path = Path(final_path)
    if final_path.is_dir():
        raise NotWritable(f"{final_path} cannot be written: it is a folder")
    folder = final_path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{final_path.name}.", suffix=".probe", dir=folder)
    except OSError as error:
        reason = error.strerror or str(error)
        raise NotWritable(f"{final_path} cannot be written: {reason} ({folder})") from None
    os.close(fd)
    os.unlink(probe)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, payload: Any) -> None:
    """Write `payload` as indented JSON to `path` atomically."""
    write_text(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")


@functools.cache
def _file_mode() -> int:
    """The mode a plain `open()` would give a new file: mkstemp creates files readable by the
    owner only. Reading the umask means setting it, so it is read once, at the first write,
    never at import."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask
