"""Stage `download@<dataset>`: fetch the data, verify its pinned hashes, check its contents.

python stages/download.py cifar10 --out data/raw/cifar10.tar.gz
python stages/download.py fashion_mnist --out data/raw/fashion_mnist   (a folder: four IDX files)
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from deeplecture import catalog, cli
from deeplecture.catalog import Dataset
from deeplecture.cli.stage import run_stage
from deeplecture.data.download import (
    DownloadError,
    fetch,
    fetch_files,
    is_local_source,
    member_source,
)
from deeplecture.data.readers import reader
from deeplecture.data.sources import resolve_checksum
from deeplecture.params import Params


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    parser.add_argument("dataset", choices=sorted(catalog.DATASETS))
    parser.add_argument(
        "--out", type=Path, required=True, help="the verified archive (or a folder of files)"
    )
    return run_stage(parser, argv, download)


def download(args: argparse.Namespace, params: Params) -> None:
    dataset = catalog.get_dataset(args.dataset)
    settings = getattr(params.data, dataset.name)
    fetch_raw = download_archive if dataset.raw == "archive" else download_files
    try:
        print(fetch_raw(dataset, settings, args.out))
    except DownloadError as error:
        raise cli.Refused(error) from None


def download_archive(dataset: Dataset, settings: Any, out: Path) -> str:
    """The archive, verified, then its member list checked."""
    source = settings.effective_source
    key = f"data.{dataset.name}"
    checksum = resolve_checksum(source, settings.checksum, key)
    archive = fetch(source, out, checksum, params_key=key)
    kind = check_archive(dataset, archive, source)
    return f"{archive}: {kind} archive, {checksum} verified"


def download_files(dataset: Dataset, settings: Any, out: Path) -> str:
    """The dataset's files into the folder `out`, each verified, then checked together."""
    base = settings.effective_source
    paths = fetch_files(
        base, dataset.files.values(), out, settings.checksum, params_key=f"data.{dataset.name}"
    )
    check_files(dataset, out, base, paths)
    return f"{out}: {', '.join(path.name for path in paths)} verified from {base}"


def check_archive(dataset: Dataset, archive: Path, source: str) -> str:
    """Check the verified `archive` is the dataset; on failure, do not keep it.

    A matching hash only says the file is the one the user pinned, not that it is a safe,
    complete archive of the dataset: a crafted or foreign archive fails here, named, and is
    removed from the stage's output (unless it is the user's own source file) so that nothing
    downstream, nor DVC's cache, ever sees it.
    """
    try:
        return reader(dataset).check(archive, source)
    except ValueError as error:
        reason = str(error).rstrip(".")
        if is_local_source(source, archive):
            raise type(error)(f"{reason}; your file {archive} was left untouched") from None
        archive.unlink(missing_ok=True)
        raise type(error)(f"{reason}; the archive was removed from {archive}") from None


def check_files(dataset: Dataset, folder: Path, base: str, paths: list[Path]) -> None:
    """Decode the verified files once; on failure, do not keep them.

    As for an archive: pinned hashes say the files are the user's, not that they are the
    dataset. Files that are not fail here, named, and are removed from the stage's output,
    except the user's own source files.
    """
    try:
        reader(dataset).check(folder, base)
    except ValueError as error:
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
        raise type(error)(f"{error}; {outcome}") from None


if __name__ == "__main__":
    raise SystemExit(main())
