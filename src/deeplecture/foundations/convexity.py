"""Convexity (the lecture's convexity.py): SSE of a sigmoid output vs cross-entropy in w."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deeplecture.foundations.logistic import DATA_X, DATA_Y, sigmoid

# convexity.py itself is only a screenshot in the lecture (two plots: "SSE 함수" and
# "Cross Entropy 함수"). We reproduce the point, not its exact data: cost of
# H = S(w·x) (b fixed at 0) over a w grid, on the logistic demo's data (our choice).
DEFAULT_W_GRID = np.linspace(-3.0, 3.0, 601)

# Second differences of a convex function are ≥ 0; allow a little float round-off so a
# flat stretch does not count as "concave". The SSE's negative dips are ~1e-3, far above it.
SECOND_DIFF_TOL = 1e-12


@dataclass(frozen=True)
class ConvexityResult:
    """Both cost curves over the w grid and their discrete convexity check."""

    w: np.ndarray
    sse: np.ndarray
    cross_entropy: np.ndarray
    sse_min_second_diff: float
    cross_entropy_min_second_diff: float
    sse_is_convex: bool
    cross_entropy_is_convex: bool


def sse_curve(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Σ (yᵢ − S(w xᵢ))² for each w."""
    return np.sum((y - sigmoid(np.outer(w, x))) ** 2, axis=1)


def cross_entropy_curve(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """−Σ [yᵢ log S(w xᵢ) + (1 − yᵢ) log(1 − S(w xᵢ))] for each w (stable via logaddexp)."""
    z = np.outer(w, x)
    return np.sum(y * np.logaddexp(0.0, -z) + (1.0 - y) * np.logaddexp(0.0, z), axis=1)


def second_differences(values: np.ndarray) -> np.ndarray:
    """f(w−h) − 2f(w) + f(w+h) on an evenly spaced grid (sign = sign of f'')."""
    return values[2:] - 2.0 * values[1:-1] + values[:-2]


def is_convex(values: np.ndarray, tol: float = SECOND_DIFF_TOL) -> bool:
    """True when no second difference is below −tol."""
    return bool(second_differences(values).min() >= -tol)


def run_convexity(
    w: np.ndarray = DEFAULT_W_GRID, x: np.ndarray = DATA_X, y: np.ndarray = DATA_Y
) -> ConvexityResult:
    """Evaluate both costs over `w` and check their convexity numerically."""
    sse = sse_curve(w, x, y)
    ce = cross_entropy_curve(w, x, y)
    return ConvexityResult(
        w=w,
        sse=sse,
        cross_entropy=ce,
        sse_min_second_diff=float(second_differences(sse).min()),
        cross_entropy_min_second_diff=float(second_differences(ce).min()),
        sse_is_convex=is_convex(sse),
        cross_entropy_is_convex=is_convex(ce),
    )
