"""Stage: run the lecture's Foundations demos, write their results (JSON) and figures.

    python stages/foundations.py --results reports/foundations.json \
        --figures reports/figures/foundations

The results are the report's, not DVC metrics: the demos take no params, so their numbers never
differ between experiments, and `dvc metrics show` stays a table of the models.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from deeplecture import cli
from deeplecture.atomic import write_json
from deeplecture.foundations.figures import save_figures
from deeplecture.foundations.run import (
    FoundationsResults,
    format_summary,
    run_all,
    summary_metrics,
)
from deeplecture.foundations.tracking import log_foundations


def publish(results: FoundationsResults, results_path: Path, figures_dir: Path) -> list[Path]:
    """Write every output of the stage, then log each demo to MLflow."""
    write_json(results_path, summary_metrics(results))
    figure_paths = save_figures(results, figures_dir)
    log_foundations(results, figure_paths)
    return figure_paths


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    parser.add_argument("--results", type=Path, required=True, help="results JSON to write")
    parser.add_argument("--figures", type=Path, required=True, help="folder for the PNG figures")
    return cli.run(parser, argv, foundations)


def foundations(args: argparse.Namespace) -> None:
    """Run all demos, publish the outputs and print a summary."""
    results = run_all()
    figure_paths = publish(results, args.results, args.figures)
    print(format_summary(results))
    print(f"results: {args.results}")
    print(f"figures: {', '.join(str(p) for p in figure_paths)}")


if __name__ == "__main__":
    sys.exit(main())
