"""Writing a matplotlib figure to a PNG file: the one way the report and the demos save theirs.

Figures are drawn on an explicit Agg canvas (no pyplot): no display is needed, and no global
backend state is touched for the rest of the program.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from deeplecture.atomic import atomic_path

DPI = 120


def save_png(figure: Figure, path: Path) -> Path:
    """Write `figure` to `path` atomically as a PNG at `DPI`; return `path`."""
    if not isinstance(figure.canvas, FigureCanvasAgg):
        FigureCanvasAgg(figure)
    if figure.get_layout_engine() is None:
        figure.tight_layout()
    # suffix=".png" so savefig infers the format from the temporary name.
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, dpi=DPI)
    return path
