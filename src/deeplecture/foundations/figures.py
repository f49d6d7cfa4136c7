"""Figures for the Foundations demos (PNG, 6×4 in at 120 dpi)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from deeplecture.figure_file import save_png
from deeplecture.foundations.logistic import sigmoid

if TYPE_CHECKING:
    from deeplecture.foundations.run import FoundationsResults

FIGSIZE = (6.0, 4.0)


def _new_figure(ncols: int = 1) -> tuple[Figure, list]:
    width = FIGSIZE[0] * (1.6 if ncols > 1 else 1.0)
    fig = Figure(figsize=(width, FIGSIZE[1]), layout="constrained")
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]
    return fig, axes


def least_squares_figure(results: FoundationsResults) -> Figure:
    """SSE per descent step (log scale) and both fitted lines over the data."""
    ls = results.least_squares
    fig, (ax_cost, ax_fit) = _new_figure(ncols=2)
    ax_cost.semilogy(np.arange(ls.costs.size), ls.costs)
    ax_cost.set(
        xlabel="iteration",
        ylabel="SSE (log scale)",
        title=f"Steepest descent (λ = {ls.learning_rate}): {ls.iterations} steps to 1e-6",
    )
    ax_cost.title.set_fontsize(10)
    grid = np.linspace(0.0, 4.0, 50)
    a_cf, b_cf = ls.closed_form
    a_sd, b_sd = ls.descent
    ax_fit.scatter(ls.x, ls.y, color="black", zorder=3, label="data")
    ax_fit.plot(
        grid, a_cf + b_cf * grid, lw=3, alpha=0.5, label=f"closed form {a_cf:+.3f} + {b_cf:.3f}x"
    )
    ax_fit.plot(grid, a_sd + b_sd * grid, "--", label=f"descent {a_sd:+.1e} + {b_sd:.6f}x")
    ax_fit.set(xlabel="x", ylabel="y", title="Fitted lines")
    ax_fit.legend(fontsize=8)
    return fig


def logistic_figure(results: FoundationsResults) -> Figure:
    """Data with the gradient-descent and scikit-learn sigmoid curves."""
    lg = results.logistic
    fig, (ax,) = _new_figure()
    grid = np.linspace(lg.x.min() - 1.0, lg.x.max() + 1.0, 200)
    w_gd, b_gd = lg.descent
    w_sk, b_sk = lg.sklearn
    ax.scatter(lg.x, lg.y, color="black", zorder=3, label="data")
    ax.plot(
        grid,
        sigmoid(w_gd * grid + b_gd),
        lw=3,
        alpha=0.5,
        label=f"gradient descent w={w_gd:.4f}, b={b_gd:.4f}",
    )
    ax.plot(
        grid, sigmoid(w_sk * grid + b_sk), "--", label=f"scikit-learn w={w_sk:.4f}, b={b_sk:.4f}"
    )
    ax.set(
        xlabel="x",
        ylabel="P(y = 1 | x)",
        title=f"Logistic regression (max |diff| = {lg.max_abs_diff:.1e})",
    )
    # Head-room above P = 1 keeps the legend off the data and the curves.
    ax.set_ylim(-0.08, 1.4)
    ax.legend(fontsize=8, loc="upper left")
    return fig


def convexity_figure(results: FoundationsResults) -> Figure:
    """SSE vs cross-entropy as functions of w, side by side."""
    cv = results.convexity
    fig, (ax_sse, ax_ce) = _new_figure(ncols=2)
    ax_sse.plot(cv.w, cv.sse, color="tab:red", label="Σ(y − S(wx))²")
    ax_sse.set(xlabel="w", ylabel="SSE", title=f"SSE: convex = {cv.sse_is_convex}")
    ax_ce.plot(cv.w, cv.cross_entropy, color="tab:blue", label="cross-entropy")
    ax_ce.set(
        xlabel="w",
        ylabel="cross-entropy",
        title=f"Cross-entropy: convex = {cv.cross_entropy_is_convex}",
    )
    for ax in (ax_sse, ax_ce):
        ax.legend(fontsize=8)
    return fig


def xor_figure(results: FoundationsResults) -> Figure:
    """Loss per iteration: the lecture's script vs the corrected bias update."""
    fig, (ax,) = _new_figure()
    for res, label in (
        (results.xor_lecture, "lecture (per-sample 4×3 bias)"),
        (results.xor_corrected, "corrected (shared bias, summed)"),
    ):
        ax.plot(np.arange(1, res.losses.size + 1), res.losses, label=label)
    ax.set(xlabel="iteration", ylabel="loss ½Σ(y − t)²", title="XOR backpropagation (λ = 1)")
    ax.legend(fontsize=8)
    return fig


FIGURES = {
    "least_squares.png": least_squares_figure,
    "logistic.png": logistic_figure,
    "convexity.png": convexity_figure,
    "xor_loss.png": xor_figure,
}


def save_figures(results: FoundationsResults, out_dir: Path) -> list[Path]:
    """Write every figure as PNG into `out_dir`; return the paths."""
    out_dir = Path(out_dir)
    return [save_png(make(results), out_dir / name) for name, make in FIGURES.items()]
