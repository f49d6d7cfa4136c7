"""Stage: run the lecture's Foundations demos, write metrics JSON and figures.

    python stages/foundations.py --metrics metrics/foundations/foundations.json \
        --figures reports/figures/foundations
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from deeplecture.atomic import write_json
from deeplecture.foundations.figures import save_figures
from deeplecture.foundations.run import (
    FoundationsResults,
    format_summary,
    run_all,
    summary_metrics,
)
from deeplecture.foundations.tracking import log_foundations


def publish(results: FoundationsResults, metrics_path: Path, figures_dir: Path) -> list[Path]:
    """Write every output of the stage, then log each demo to MLflow."""
    write_json(metrics_path, summary_metrics(results))
    figure_paths = save_figures(results, figures_dir)
    log_foundations(results, figure_paths)
    return figure_paths


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run all demos, publish the outputs and print a summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--metrics", type=Path, required=True, help="metrics JSON to write")
    parser.add_argument("--figures", type=Path, required=True, help="folder for the PNG figures")
    args = parser.parse_args(argv)

    results = run_all()
    figure_paths = publish(results, args.metrics, args.figures)
    print(format_summary(results))
    print(f"metrics: {args.metrics}")
    print(f"figures: {', '.join(str(p) for p in figure_paths)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
