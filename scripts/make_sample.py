"""Draw the small CIFAR-10 sample shipped in data/sample/ from an image-folder archive.

The sample lets `dvc exp run -S profile=smoke` run on real images with no network.
Images are copied byte for byte (no re-encoding), drawn per class with a fixed seed.

    python scripts/make_sample.py /path/to/cifar10-jpeg.tar.gz data/sample/cifar10-sample.tar.gz
"""

from __future__ import annotations

import argparse
import gzip
import io
import tarfile
from collections import defaultdict
from pathlib import Path

import numpy as np

from deeplecture.atomic import atomic_path

PER_CLASS = {"train": 100, "test": 20}
SEED = 20261128


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "source", type=Path, help="image-folder archive (train/<class>/*, test/<class>/*)"
    )
    parser.add_argument("destination", type=Path)
    args = parser.parse_args(argv)

    members: dict[tuple[str, str], list[tarfile.TarInfo]] = defaultdict(list)
    with tarfile.open(args.source, "r:*") as tar:
        contents: dict[str, bytes] = {}
        for member in tar:
            parts = member.name.split("/")
            if member.isfile() and len(parts) == 3 and parts[0] in PER_CLASS:
                members[(parts[0], parts[1])].append(member)
                contents[member.name] = tar.extractfile(member).read()

    rng = np.random.default_rng(SEED)
    # mtime=0 in the gzip header and the tar entries makes the archive byte-for-byte
    # reproducible, so its pinned sha256 holds when the sample is remade.
    with (
        atomic_path(args.destination, suffix=".tar.gz") as tmp,
        open(tmp, "wb") as raw,
        gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w") as out,
    ):
        for (split, _class_name), found in sorted(members.items()):
            found.sort(key=lambda m: m.name)
            chosen = sorted(rng.choice(len(found), PER_CLASS[split], replace=False))
            for index in chosen:
                data = contents[found[index].name]
                info = tarfile.TarInfo(found[index].name)
                info.size, info.mode, info.mtime = len(data), 0o644, 0
                out.addfile(info, io.BytesIO(data))
    print(f"wrote {args.destination} ({args.destination.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
