"""Build the whole report: figures first, then results.md that links them."""

from __future__ import annotations

from pathlib import Path

from deeplecture.atomic import write_text
from deeplecture.reporting import edge, figures, markdown, sweeps
from deeplecture.reporting.results import Planned, collect, collect_platforms, read_foundations

# The figure folders the report stage declares as outputs (dvc.yaml).
FIGURE_FOLDERS = ("learning_curves", "confusion", "sweeps")


def build_report(
    metrics_root: Path,
    plots_root: Path,
    foundations_path: Path,
    report_dir: Path,
    planned: list[Planned],
    sweeps_dir: Path | None = None,
    edge_dir: Path | None = None,
    platforms_dir: Path | None = None,
) -> dict[str, Path]:
    """Write `report_dir/results.md` and `report_dir/figures/`; return the figures made.

    `planned`: every variant params.yaml lists, with the lecture's figure and quirks; one whose
    metrics are not there yet is shown as not yet run. `sweeps_dir`: the collected seed sweeps
    (`deeplecture-sweep collect`), a section and a figure each. `edge_dir`: the exported models'
    figures (stage `measure_edge`), the Edge section. `platforms_dir`: measured platforms
    (reports/platforms/<name>/, the same layout), a row per variant each, in the progression."""
    results, pending = collect(metrics_root, plots_root, planned)
    platforms = collect_platforms(platforms_dir, planned) if platforms_dir else []
    figure_dir = report_dir / "figures"
    for folder in FIGURE_FOLDERS:
        # Stage outputs: they exist, if empty, when no model has a history or no sweep is in.
        (figure_dir / folder).mkdir(parents=True, exist_ok=True)
    made: dict[str, Path] = {}
    if results or any(platform.results for platform in platforms):
        made["progression"] = figures.save_progression(
            results, platforms, figure_dir / "progression.png"
        )
    for result in [*results, *(r for platform in platforms for r in platform.results)]:
        # A platform's figures go to a folder of its name: figures/<kind>/<platform>/<variant>.png
        name = f"{result.platform}/{result.variant}" if result.platform else result.variant
        if result.history:
            made[f"curves/{name}"] = figures.save_learning_curves(
                result, figure_dir / "learning_curves" / f"{name}.png"
            )
        if result.predictions and result.class_names:
            made[f"confusion/{name}"] = figures.save_confusion(
                result, figure_dir / "confusion" / f"{name}.png"
            )
    collected = sweeps.read_sweeps(sweeps_dir, planned) if sweeps_dir else []
    sweep_figures = figure_dir / "sweeps"
    for sweep in collected:
        made[f"sweeps/{sweep.name}"] = sweeps.save_figure(
            sweep, sweep_figures / f"{sweep.name}.png"
        )
    for stale in set(sweep_figures.glob("*.png")) - set(made.values()):
        stale.unlink()  # a sweep whose file is gone loses its figure too
    # The foundations stage draws its own figures into the same folder.
    for path in sorted((figure_dir / "foundations").glob("*.png")):
        made[f"foundations/{path.stem}"] = path
    foundations = read_foundations(foundations_path)
    write_text(
        report_dir / "results.md",
        markdown.render(
            results,
            pending,
            foundations,
            made,
            report_dir,
            collected,
            edge.read_edge(edge_dir, planned) if edge_dir else [],
            platforms,
        ),
    )
    return made
