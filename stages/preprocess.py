"""Stage `preprocess@<dataset>`: decode, split off validation, decide the scaling, save arrays.

python stages/preprocess.py cifar10 --archive data/raw/cifar10.tar.gz --out data/processed/cifar10
python stages/preprocess.py fashion_mnist --raw data/raw/fashion_mnist \
    --out data/processed/fashion_mnist
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from deeplecture.data import cifar10, fashion_mnist, processed
from deeplecture.data.splits import ImageSplit
from deeplecture.params import Params, ParamsError, load_params

Decoded = tuple[ImageSplit, ImageSplit, tuple[str, ...]]  # train, test, class names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=sorted(READERS))
    parser.add_argument("--archive", type=Path, help="cifar10: the verified archive")
    parser.add_argument("--raw", type=Path, help="fashion_mnist: the folder of its IDX files")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    option = INPUT_OPTION[args.dataset]
    raw = getattr(args, option)
    if raw is None:
        parser.error(f"the following arguments are required for {args.dataset}: --{option}")

    try:
        params = load_params(args.params)
        settings = getattr(params.preprocess, args.dataset)
        train, test, class_names = READERS[args.dataset](raw, params)
        source_info = {
            "dataset": args.dataset,
            "source": getattr(params.data, args.dataset).effective_source,
            "class_names": list(class_names),
        }
        plan = processed.SplitPlan.from_settings(settings.model_dump())
        data = processed.prepare(train, test, plan, source_info)
        processed.save(data, args.out)
    except (ParamsError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for warning in processed.missing_class_warnings(data.info):
        print(f"warning: {warning}", file=sys.stderr)
    counts = data.info["counts"]
    print(
        f"{args.out}: {counts['train']} train, {counts['validation']} validation, "
        f"{counts['test']} test images; scaling {settings.scaling}; digest {data.digest[:12]}"
    )
    return 0


def read_cifar10(archive: Path, params: Params) -> Decoded:
    shuffle_seed = params.preprocess.cifar10.shuffle_seed
    train, test = cifar10.read_cifar10_archive(archive, shuffle_seed=shuffle_seed)
    return train, test, cifar10.CLASS_NAMES


def read_fashion_mnist(folder: Path, params: Params) -> Decoded:
    (train_images, train_labels), (test_images, test_labels) = fashion_mnist.read_fashion_mnist(
        folder
    )
    # IDX holds (N, 28, 28); every model takes (N, height, width, channels), as CIFAR-10's.
    return (
        ImageSplit(train_images[..., np.newaxis], train_labels),
        ImageSplit(test_images[..., np.newaxis], test_labels),
        fashion_mnist.CLASS_NAMES,
    )


READERS = {"cifar10": read_cifar10, "fashion_mnist": read_fashion_mnist}
INPUT_OPTION = {"cifar10": "archive", "fashion_mnist": "raw"}


if __name__ == "__main__":
    raise SystemExit(main())
