"""Fetch a data file from a URL or a local path, verified against a pinned checksum.

A file is only ever trusted after its hash matches: a download, a local copy and a file
already at the destination are all verified the same way. Bytes are streamed into a
temporary file beside the destination, so a failed or interrupted fetch leaves nothing behind.
A dataset of several files (Fashion-MNIST) is fetched file by file from a base URL or a folder,
each file verified against its own hash.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from tqdm import tqdm

from deeplecture.atomic import atomic_path
from deeplecture.data.sources import (
    URL_SCHEMES,
    resolve_checksum,
    resolve_file_checksums,
    source_basename,
)

log = logging.getLogger(__name__)


CHUNK_SIZE = 1024 * 1024


class DownloadError(RuntimeError):
    """A file could not be fetched (network, HTTP status, truncation, missing local file)."""


class ChecksumMismatch(DownloadError):
    """The fetched bytes do not hash to the expected checksum."""


class _NetworkError(Exception):
    """Internal: a transient failure worth another try; `cause` is the original error."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


class _Truncated(Exception):
    """Internal: the server announced more bytes than it sent."""


@dataclass(frozen=True)
class _Hints:
    """The `-S` lines an error suggests, for one file or for one file of a set (a folder source
    and a checksum mapping)."""

    params_key: str
    file_set: bool = False

    def local_copy(self, name: str) -> str:
        if self.file_set:
            # No command: the files' pipeline may not be the root one (fashion_mnist/dvc.yaml).
            return (
                f"download {name} and the other files elsewhere into one folder and point the "
                f"pipeline at it with -S {self.params_key}.source=/path/to/folder"
            )
        return (
            f"download {name} elsewhere and point the pipeline at the local copy: "
            f"dvc exp run -S {self.params_key}.source=/path/to/{name}"
        )

    def pin(self, name: str, algorithm: str, digest: str) -> str:
        checksum = f"{algorithm}:{digest}"
        if self.file_set:
            return (
                f"-S '{self.params_key}.checksum={{{name}: {checksum}, <each other file>: "
                "<its hash>}' (one entry per file)"
            )
        return f"-S {self.params_key}.checksum={checksum}"


def member_source(base: str, name: str) -> str:
    """Where file `name` lies under `base`: a URL below a base URL, a path in a folder."""
    return f"{base.rstrip('/')}/{name}"


def file_checksum(path: Path, algorithm: str) -> str:
    """Hex digest of the file at `path`, read in 1 MiB chunks."""
    digest = hashlib.new(algorithm)
    with Path(path).open("rb") as handle:
        while chunk := handle.read(CHUNK_SIZE):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(
    source: str,
    destination: Path,
    checksum: str,
    *,
    params_key: str = "data.cifar10",
    file_set: bool = False,
    timeout: float = 30.0,
    retries: int = 3,
    progress: bool = True,
) -> Path:
    """Place a verified copy of `source` at `destination` and return `destination`.

    `source` is an http(s) URL, a file:// URL or a local path (relative to the current
    directory). `retries` is the number of extra tries after a network failure or a
    truncated transfer; a checksum mismatch or an HTTP 4xx status is never retried.
    `file_set`: the file is one of several under one source (`fetch_files`), so error hints
    name a folder and a checksum mapping.
    """
    checksum = resolve_checksum(source, checksum, params_key)
    hints = _Hints(params_key, file_set)
    destination = Path(destination)
    local = local_source(source)
    if local is not None and _same_file(local, destination):
        # Never delete the user's own copy: verify it in place instead.
        _verify_in_place(local, checksum, hints)
        return destination

    if destination.exists():
        algorithm, expected = checksum.split(":", 1)
        if file_checksum(destination, algorithm) == expected:
            log.info(
                "%s already present with the expected %s; not fetching it again",
                destination,
                algorithm,
            )
            return destination
        # A file left here by an earlier failure (HTML error page, partial download) is not trusted.
        log.warning(
            "%s exists but does not match %s; removing it and fetching %s again",
            destination,
            checksum,
            source,
        )
        destination.unlink()

    if local is not None:
        _copy_local(local, source, destination, checksum, hints, progress)
    else:
        _download(source, destination, checksum, hints, timeout, retries, progress)
    log.info("fetched %s to %s (%s verified)", source, destination, checksum)
    return destination


def fetch_files(
    base: str,
    names: Iterable[str],
    folder: Path,
    checksum: str | Mapping[str, str],
    *,
    params_key: str,
    timeout: float = 30.0,
    retries: int = 3,
    progress: bool = True,
) -> list[Path]:
    """Place a verified copy of each `<base>/<name>` in `folder`; return their paths.

    `base` is a base URL (http, https, file://) or a local folder; `checksum` as for
    `resolve_file_checksums`, all resolved before the first transfer. Each file then goes
    through `fetch`, with its semantics. A failure stops at that file; the ones before it are
    verified, so they stay, and a rerun does not fetch them again.
    """
    checksums = resolve_file_checksums(names, checksum, params_key)
    return [
        fetch(
            member_source(base, name),
            Path(folder) / name,
            expected,
            params_key=params_key,
            file_set=True,
            timeout=timeout,
            retries=retries,
            progress=progress,
        )
        for name, expected in checksums.items()
    ]


def local_source(source: str) -> Path | None:
    """The absolute path a local source (path or file:// URL) names; None for an http(s) URL."""
    parsed = urllib.parse.urlparse(source)
    return None if parsed.scheme in URL_SCHEMES else _local_path(source, parsed)


def is_local_source(source: str, path: Path) -> bool:
    """Whether `path` is the very file the local `source` names (so it is the user's own)."""
    local = local_source(source)
    return local is not None and _same_file(local, Path(path))


def _local_path(source: str, parsed: urllib.parse.ParseResult) -> Path:
    if parsed.scheme == "file":
        path = Path(urllib.request.url2pathname(parsed.path))
    else:
        path = Path(source).expanduser()
    return path if path.is_absolute() else Path.cwd() / path


def _same_file(local: Path, destination: Path) -> bool:
    try:
        return local.resolve() == destination.resolve()
    except OSError:
        return False


def _verify_in_place(path: Path, checksum: str, hints: _Hints) -> None:
    if not path.is_file():
        raise DownloadError(f"local source {path} does not exist or is not a file")
    algorithm, expected = checksum.split(":", 1)
    actual = file_checksum(path, algorithm)
    if actual != expected:
        raise ChecksumMismatch(
            f"checksum mismatch for {path}: expected {checksum}, got {algorithm}:{actual}. "
            "The file is both source and destination, so it was left untouched; if it is the "
            f"copy you mean to use, pass its hash with {hints.pin(path.name, algorithm, actual)}"
        )


def _copy_local(
    path: Path, source: str, destination: Path, checksum: str, hints: _Hints, progress: bool
) -> None:
    if not path.is_file():
        raise DownloadError(f"local source {path} does not exist or is not a file")
    try:
        with path.open("rb") as handle:
            _stream_to(
                destination,
                handle,
                path.stat().st_size,
                source,
                checksum,
                hints,
                progress,
                discarded=f"Your file {path} was left untouched",
            )
    except _Truncated as err:
        # Only possible if the file shrank while being copied.
        raise DownloadError(f"{err}; was {path} modified during the copy?") from None


def _download(
    url: str,
    destination: Path,
    checksum: str,
    hints: _Hints,
    timeout: float,
    retries: int,
    progress: bool,
) -> None:
    tries = max(0, retries) + 1
    failure: Exception = DownloadError(f"no try made for {url}")
    for attempt in range(tries):
        if attempt:
            delay = 0.5 * 2 ** (attempt - 1)
            log.warning(
                "try %d of %d for %s failed (%s); retrying in %.1f s",
                attempt,
                tries,
                url,
                failure,
                delay,
            )
            time.sleep(delay)
        try:
            response = _open_url(url, timeout)
            with response:
                _stream_to(
                    destination,
                    _NetworkReader(response),
                    _content_length(response),
                    url,
                    checksum,
                    hints,
                    progress,
                )
            return
        except (_NetworkError, _Truncated) as err:
            failure = err
    name = source_basename(url)
    cause: BaseException = failure.cause if isinstance(failure, _NetworkError) else failure
    raise DownloadError(
        f"could not download {url} after {tries} tries: {cause}. Expected checksum {checksum}. "
        f"If this machine cannot reach the host, {hints.local_copy(name)} "
        "(the checksum is verified for local copies too)"
    ) from cause


def _open_url(url: str, timeout: float) -> http.client.HTTPResponse:
    request = urllib.request.Request(url, headers={"User-Agent": "deeplecture-download"})
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        err.close()
        # Server errors can be transient; client errors (404 above all) will not change.
        if err.code >= 500:
            raise _NetworkError(DownloadError(f"HTTP {err.code} {err.reason} from {url}")) from err
        raise DownloadError(f"HTTP {err.code} {err.reason} from {url}") from err
    except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
        raise _NetworkError(err) from err


def _content_length(response: http.client.HTTPResponse) -> int | None:
    value = response.headers.get("Content-Length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


class _NetworkReader:
    """File-like wrapper that marks read failures as transient network errors."""

    def __init__(self, response: http.client.HTTPResponse) -> None:
        self._response = response

    def read(self, size: int) -> bytes:
        try:
            return self._response.read(size)
        except (OSError, http.client.HTTPException) as err:
            raise _NetworkError(err) from err


def _stream_to(
    destination: Path,
    reader: BinaryIO | _NetworkReader,
    total: int | None,
    source: str,
    checksum: str,
    hints: _Hints,
    progress: bool,
    discarded: str = "The bad file was removed",
) -> None:
    """Copy `reader` into a temp file beside `destination`, hashing as it goes; keep it if valid.

    `discarded` tells the user, on a checksum mismatch, what became of the bad bytes.
    """
    algorithm, expected = checksum.split(":", 1)
    digest = hashlib.new(algorithm)
    received = 0
    with atomic_path(destination) as tmp:
        with (
            tmp.open("wb") as out,
            tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=destination.name,
                file=sys.stderr,
                disable=not progress,
                leave=False,
            ) as bar,
        ):
            while chunk := reader.read(CHUNK_SIZE):
                out.write(chunk)
                digest.update(chunk)
                received += len(chunk)
                bar.update(len(chunk))
        if total is not None and received < total:
            raise _Truncated(f"truncated: got {received} of {total} bytes from {source}")
        actual = digest.hexdigest()
        if actual != expected:
            raise ChecksumMismatch(
                f"checksum mismatch for {source}: expected {checksum}, got {algorithm}:{actual}. "
                f"{discarded}; nothing was written to {destination}. If this is the "
                f"file you mean to use, pass its hash with "
                f"{hints.pin(destination.name, algorithm, actual)}"
            )
