"""What each dataset is made of, and how a checksum setting becomes a hash to verify.

The canonical files, their pinned hashes and the checksum parser live here, apart from the
download code, so that the params loader can check a `checksum:` setting before any work
without importing anything that fetches or decodes.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath

URL_SCHEMES = ("http", "https")
CHECKSUM_FORM = re.compile(r"(md5:[0-9a-f]{32}|sha256:[0-9a-f]{64})")

# The canonical CIFAR-10 archive: plain bytes (the "python" one holds pickles, never loaded).
CIFAR10_BINARY_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
# Fashion-MNIST's four gzip'd IDX files, each fetched as <base>/<file name>.
FASHION_MNIST_FILES: dict[str, str] = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}

KNOWN_ARCHIVES: dict[str, str] = {
    "cifar-10-binary.tar.gz": "md5:c32a1d4ab5d03f1284b67883e8d87530",
    "cifar-10-python.tar.gz": "md5:c58f30108f718f92721af3b95e74349a",
    # A public JPEG re-encoding of CIFAR-10 (lossy; an override, never the default source).
    "cifar10-jpeg.tar.gz": (
        "sha256:477d854b471e3cc9fffac595e94a7fd4add79fcc23ed3b6dd9c539733ef7e001"
    ),
    # The sample shipped in data/sample/ (see its README), the smoke profile's default source.
    "cifar10-sample.tar.gz": (
        "sha256:cfcd49c7d2d8bb4d271a55967792676f1f2d4ca77ccf4ce75ebca609dec04aca"
    ),
    "train-images-idx3-ubyte.gz": "md5:8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "md5:25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "md5:bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "md5:bb300cfdad3c16e7a12a480ee83cd310",
}


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
