"""Stage `download@<dataset>`: fetch the data, verify its pinned hashes, check its contents.

python stages/download.py cifar10 --out data/raw/cifar10.tar.gz
python stages/download.py fashion_mnist --out data/raw/fashion_mnist   (a folder: four IDX files)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from deeplecture.data.archive import ArchiveError
from deeplecture.data.cifar10 import detect_format
from deeplecture.data.download import (
    DownloadError,
    fetch,
    fetch_files,
    is_local_source,
    member_source,
)
from deeplecture.data.fashion_mnist import IdxFormatError, read_fashion_mnist
from deeplecture.data.sources import FASHION_MNIST_FILES, resolve_checksum
from deeplecture.params import Params, ParamsError, load_params


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=sorted(DOWNLOADS))
    parser.add_argument(
        "--out", type=Path, required=True, help="the verified archive (fashion_mnist: a folder)"
    )
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)

    try:
        params = load_params(args.params)
        print(DOWNLOADS[args.dataset](params, args.out))
    except (ParamsError, DownloadError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def download_cifar10(params: Params, out: Path) -> str:
    """The archive, verified, then its member list checked."""
    settings = params.data.cifar10
    source = settings.effective_source
    checksum = resolve_checksum(source, settings.checksum, "data.cifar10")
    archive = fetch(source, out, checksum, params_key="data.cifar10")
    kind = check_members(archive, source)
    return f"{archive}: {kind} archive, {checksum} verified"


def download_fashion_mnist(params: Params, out: Path) -> str:
    """The four IDX files into the folder `out`, each verified, then decoded once."""
    settings = params.data.fashion_mnist
    base = settings.effective_source
    paths = fetch_files(
        base, FASHION_MNIST_FILES.values(), out, settings.checksum, params_key="data.fashion_mnist"
    )
    check_idx_files(out, base, paths)
    return f"{out}: {', '.join(path.name for path in paths)} verified from {base}"


DOWNLOADS = {"cifar10": download_cifar10, "fashion_mnist": download_fashion_mnist}


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


def check_idx_files(folder: Path, base: str, paths: list[Path]) -> None:
    """Decode the verified IDX files once; on failure, do not keep them.

    As for CIFAR-10: pinned hashes say the files are the user's, not that they are
    Fashion-MNIST. Files that are not fail here, named, and are removed from the stage's
    output, except the user's own source files.
    """
    try:
        read_fashion_mnist(folder)
    except IdxFormatError as error:
        fetched = [
            path for path in paths if not is_local_source(member_source(base, path.name), path)
        ]
        for path in fetched:
            path.unlink(missing_ok=True)
        outcome = (
            f"the files were removed from {folder}"
            if fetched
            else f"your files in {folder} were left untouched"
        )
        raise IdxFormatError(f"{error}; {outcome}") from None


if __name__ == "__main__":
    raise SystemExit(main())
