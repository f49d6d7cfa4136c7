"""Stage `preprocess@<dataset>`: decode, split off validation, decide the scaling, save arrays.

python stages/preprocess.py cifar10 --archive data/raw/cifar10.tar.gz --out data/processed/cifar10
python stages/preprocess.py fashion_mnist --raw data/raw/fashion_mnist \
    --out data/processed/fashion_mnist
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

from deeplecture import catalog, cli
from deeplecture.cli.stage import run_stage
from deeplecture.data import processed
from deeplecture.data.readers import reader
from deeplecture.params import Params

# The option that names the stage's input: one archive file, or a folder of files.
INPUT_OPTION = {"archive": "archive", "files": "raw"}


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    parser.add_argument("dataset", choices=sorted(catalog.DATASETS))
    parser.add_argument("--archive", type=Path, help="a dataset in one archive: the verified file")
    parser.add_argument("--raw", type=Path, help="a dataset of several files: their folder")
    parser.add_argument("--out", type=Path, required=True)
    return run_stage(parser, argv, partial(preprocess, parser))


def preprocess(parser: argparse.ArgumentParser, args: argparse.Namespace, params: Params) -> None:
    dataset = catalog.get_dataset(args.dataset)
    option = INPUT_OPTION[dataset.raw]
    raw = getattr(args, option)
    if raw is None:
        parser.error(f"the following arguments are required for {dataset.name}: --{option}")
    settings = getattr(params.preprocess, dataset.name)
    train, test = reader(dataset).read(raw, settings)
    source_info = {
        "dataset": dataset.name,
        "source": getattr(params.data, dataset.name).effective_source,
        "class_names": list(dataset.class_names),
    }
    plan = processed.SplitPlan.from_settings(settings.model_dump())
    data = processed.prepare(train, test, plan, source_info)
    processed.save(data, args.out)
    for warning in processed.missing_class_warnings(data.info):
        print(f"warning: {warning}", file=sys.stderr)
    counts = data.info["counts"]
    print(
        f"{args.out}: {counts['train']} train, {counts['validation']} validation, "
        f"{counts['test']} test images; scaling {settings.scaling}; digest {data.digest[:12]}"
    )


if __name__ == "__main__":
    raise SystemExit(main())
