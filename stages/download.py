"""Stage `download@<dataset>`: fetch the archive, verify its pinned hash, check its members.

python stages/download.py cifar10 --out data/raw/cifar10.tar.gz
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from deeplecture.data.cifar10 import detect_format
from deeplecture.data.download import DownloadError, fetch, resolve_checksum
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
        checksum = resolve_checksum(settings.effective_source, settings.checksum, params_key)
        archive = fetch(settings.effective_source, args.out, checksum, params_key=params_key)
        # Read the member list now: a crafted or foreign archive fails here, named, not later.
        print(f"{archive}: {detect_format(archive)} archive, {checksum} verified")
    except (ParamsError, DownloadError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
