"""How a checksum setting becomes a hash to verify (the pinned hashes are the catalog's).

The parser lives here, apart from the download code, so that the params loader can check a
`checksum:` setting before any work without importing anything that fetches or decodes.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath

from deeplecture.catalog import pinned_hashes

URL_SCHEMES = ("http", "https")
CHECKSUM_FORM = re.compile(r"(md5:[0-9a-f]{32}|sha256:[0-9a-f]{64})")

# Every known file's hash, by file name, from the catalog: `checksum: auto` looks a source up here.
KNOWN_ARCHIVES: dict[str, str] = pinned_hashes()


class ChecksumError(ValueError):
    """A checksum setting is malformed, or "auto" names a file with no pinned hash."""


def source_basename(source: str) -> str:
    """The file name of `source`, whether it is a URL or a local path."""
    parsed = urllib.parse.urlparse(source)
    if parsed.scheme in (*URL_SCHEMES, "file"):
        return PurePosixPath(urllib.parse.unquote(parsed.path)).name
    return Path(source).name


def resolve_checksum(source: str, checksum: str, params_key: str = "data.cifar10") -> str:
    """Turn `checksum` into a normalised "md5:<hex>" / "sha256:<hex>" string.

    "auto" looks up the pinned hash of the source's file name in KNOWN_ARCHIVES.
    """
    if checksum.strip().lower() == "auto":
        name = source_basename(source)
        try:
            return KNOWN_ARCHIVES[name]
        except KeyError:
            raise ChecksumError(
                f"there is no pinned checksum for the file name {name!r} (source {source}); "
                f"pass the file's hash explicitly, e.g. -S {params_key}.checksum=sha256:<hex> "
                f"(compute it with `sha256sum {name}`)"
            ) from None
    normalised = checksum.strip().lower()
    if not CHECKSUM_FORM.fullmatch(normalised):
        raise ChecksumError(
            f"invalid checksum {checksum!r}: expected 'auto', 'md5:<32 hex digits>' "
            "or 'sha256:<64 hex digits>'"
        )
    return normalised


def resolve_file_checksums(
    names: Iterable[str], checksum: str | Mapping[str, str], params_key: str
) -> dict[str, str]:
    """One normalised checksum per file name, in the order of `names`.

    `checksum` is "auto" (each file's pinned hash, by its name) or a mapping that gives every
    file of `names`, and nothing else, its own "md5:<hex>" / "sha256:<hex>".
    """
    names = list(names)
    if isinstance(checksum, str):
        if checksum.strip().lower() != "auto":
            raise ChecksumError(f"expected 'auto' or one checksum per file ({', '.join(names)})")
        checksum = dict.fromkeys(names, "auto")
    missing = [name for name in names if name not in checksum]
    unknown = [name for name in checksum if name not in names]
    if missing or unknown:
        problems = [f"no checksum for {', '.join(missing)}"] if missing else []
        problems += [f"unknown file {', '.join(map(repr, unknown))}"] if unknown else []
        raise ChecksumError(f"{'; '.join(problems)} (expected exactly: {', '.join(names)})")
    resolved = {}
    for name in names:
        try:
            resolved[name] = resolve_checksum(name, checksum[name], params_key)
        except ChecksumError as error:
            raise ChecksumError(f"{name}: {error}") from None
    return resolved
