"""Stage `download@<dataset>`: fetch the archive, verify its pinned hash, check its members.

python stages/download.py cifar10 --out data/raw/cifar10.tar.gz
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from deeplecture.data.archive import ArchiveError
from deeplecture.data.cifar10 import detect_format
from deeplecture.data.download import DownloadError, fetch, is_local_source, resolve_checksum
from deeplecture.params import ParamsError, load_params


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=["cifar10"])
    parser.add_argument("--out", type=Path, required=True, help="where the verified archive goes")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)

    try:
        params = load_params(args.params)
        settings = getattr(params.data, args.dataset)
        params_key = f"data.{args.dataset}"
        source = settings.effective_source
        checksum = resolve_checksum(source, settings.checksum, params_key)
        archive = fetch(source, args.out, checksum, params_key=params_key)
        kind = check_members(archive, source)
        print(f"{archive}: {kind} archive, {checksum} verified")
    except (ParamsError, DownloadError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def check_members(archive: Path, source: str) -> str:
    """Check the whole member list of the verified `archive`; on failure, do not keep it.

    A matching hash only says the file is the one the user pinned, not that it is a safe,
    complete CIFAR-10 archive: a crafted or foreign archive fails here, named, and is removed
    from the stage's output (unless it is the user's own source file) so that nothing
    downstream, nor DVC's cache, ever sees it.
    """
    try:
        return detect_format(archive, name=source)
    except ArchiveError as error:
        reason = str(error).rstrip(".")
        if is_local_source(source, archive):
            raise ArchiveError(f"{reason}; your file {archive} was left untouched") from None
        archive.unlink(missing_ok=True)
        raise ArchiveError(f"{reason}; the archive was removed from {archive}") from None


if __name__ == "__main__":
    raise SystemExit(main())
