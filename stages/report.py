"""Stage `report`: reports/results.md and reports/figures/ from the metrics files only.

python stages/report.py --metrics metrics --plots plots --foundations reports/foundations.json \
    --sweeps reports/sweeps --edge reports/edge --platforms reports/platforms --out reports

Every variant params.yaml lists gets a row: its results where its metrics file exists (the
Fashion-MNIST row once `dvc repro fashion_mnist/dvc.yaml` has run), "not yet run" otherwise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from deeplecture.params import ParamsError, load_params
from deeplecture.reporting.build import build_report
from deeplecture.reporting.results import planned_variants


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)

    try:
        params = load_params(args.params)
    except ParamsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
