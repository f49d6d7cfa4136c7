"""Stage `preprocess@cifar10`: decode, split off validation, decide the scaling, save arrays.

python stages/preprocess.py cifar10 --archive data/raw/cifar10.tar.gz --out data/processed/cifar10
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from deeplecture.data import processed
from deeplecture.data.cifar10 import CLASS_NAMES, read_cifar10_archive
from deeplecture.params import ParamsError, load_params


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=["cifar10"])
    parser.add_argument("--archive", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)

    try:
        params = load_params(args.params)
        settings = params.preprocess.cifar10
        train, test = read_cifar10_archive(args.archive, shuffle_seed=settings.shuffle_seed)
        source_info = {
            "dataset": args.dataset,
            "source": params.data.cifar10.effective_source,
            "class_names": list(CLASS_NAMES),
        }
        data = processed.prepare(train, test, settings, source_info)
        processed.save(data, args.out)
    except (ParamsError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    counts = data.info["counts"]
    print(
        f"{args.out}: {counts['train']} train, {counts['validation']} validation, "
        f"{counts['test']} test images; scaling {settings.scaling}; digest {data.digest[:12]}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
