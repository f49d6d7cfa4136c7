"""Stage `report`: reports/results.md and reports/figures/ from the metrics files only.

python stages/report.py --metrics metrics --plots plots --foundations reports/foundations.json \
    --sweeps reports/sweeps --edge reports/edge --platforms reports/platforms --out reports

Every variant params.yaml lists gets a row: its results where its metrics file exists (the
Fashion-MNIST row once `dvc repro fashion_mnist/dvc.yaml` has run), "not yet run" otherwise.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from deeplecture import cli
from deeplecture.cli.stage import run_stage
from deeplecture.params import Params
from deeplecture.reporting.build import build_report
from deeplecture.reporting.results import planned_variants


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    parser.add_argument("--metrics", type=Path, required=True, help="metrics/ folder")
    parser.add_argument("--plots", type=Path, required=True, help="plots/ folder")
    parser.add_argument(
        "--foundations", type=Path, required=True, help="the foundations stage's results (JSON)"
    )
    parser.add_argument(
        "--sweeps", type=Path, help="the collected seed sweeps (reports/sweeps/*.json)"
    )
    parser.add_argument(
        "--edge", type=Path, help="the exported models' figures (reports/edge/<dataset>/*.json)"
    )
    parser.add_argument(
        "--platforms",
        type=Path,
        help="measured platforms (reports/platforms/<name>/metrics, plots), a row per variant each",
    )
    parser.add_argument("--out", type=Path, required=True, help="reports/ folder")
    return run_stage(parser, argv, report)


def report(args: argparse.Namespace, params: Params) -> None:
    made = build_report(
        args.metrics,
        args.plots,
        args.foundations,
        args.out,
        planned_variants(params),
        args.sweeps,
        args.edge,
        args.platforms,
    )
    print(f"{args.out / 'results.md'}: {len(made)} figures")


if __name__ == "__main__":
    raise SystemExit(main())
