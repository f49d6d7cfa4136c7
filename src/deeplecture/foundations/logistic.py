"""Logistic regression by the lecture's gradient formulas, checked against scikit-learn."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression

# The lecture's logistic_gradient.py is shown only as a screenshot, so its data are not in the
# text. This small 1-D set is OURS, NOT the lecture's: fixed, and deliberately not separable
# (x = 4 is a 1 among 0s, x = 5 and 7 are 0s among 1s) so the unpenalized maximum-likelihood
# estimate is finite and the comparison with scikit-learn is meaningful.
DATA_X = np.arange(1.0, 11.0)
DATA_Y = np.array([0, 0, 0, 1, 0, 1, 0, 1, 1, 1], dtype=float)

# Not given in the lecture (our choices): start at w = b = 0 and λ = 0.01. The Hessian is at
# most ¼Σ(1, xᵢ)(1, xᵢ)ᵀ, whose largest eigenvalue is ≈ 98, so λ < 2/98 keeps descent stable.
DEFAULT_LEARNING_RATE = 0.01
DEFAULT_GRADIENT_TOL = 1e-10


@dataclass(frozen=True)
class LogisticResult:
    """Gradient-descent and scikit-learn estimates of P(y=1|x) = S(wx + b)."""

    x: np.ndarray
    y: np.ndarray
    descent: tuple[float, float]  # (w, b) from the lecture's formulas
    sklearn: tuple[float, float]  # (w, b) from unpenalized LogisticRegression
    max_abs_diff: float
    iterations: int
    costs: np.ndarray  # cross-entropy after k updates, k = 0 .. iterations
    learning_rate: float


def sigmoid(z: np.ndarray) -> np.ndarray:
    """S(z) = 1 / (1 + exp(−z))."""
    return 1.0 / (1.0 + np.exp(-z))


def cross_entropy(w: float, b: float, x: np.ndarray, y: np.ndarray) -> float:
    """Cost(w, b) = −Σ [yᵢ log S(wxᵢ + b) + (1 − yᵢ) log(1 − S(wxᵢ + b))].

    The slide writes the second term as (1 − yᵢ)(1 − log H) — a typo; the
    likelihood derivation right after it gives log(1 − H), used here. logaddexp keeps
    the logs finite where the sigmoid saturates.
    """
    z = w * x + b
    return float(np.sum(y * np.logaddexp(0.0, -z) + (1.0 - y) * np.logaddexp(0.0, z)))


def gradient(w: float, b: float, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(∂Cost/∂w, ∂Cost/∂b) = (−Σ (yᵢ − S(wxᵢ + b)) xᵢ, −Σ (yᵢ − S(wxᵢ + b)))."""
    residual = y - sigmoid(w * x + b)
    return float(-np.sum(residual * x)), float(-np.sum(residual))


def gradient_descent(
    x: np.ndarray = DATA_X,
    y: np.ndarray = DATA_Y,
    learning_rate: float = DEFAULT_LEARNING_RATE,
    gradient_tol: float = DEFAULT_GRADIENT_TOL,
    max_iterations: int = 1_000_000,
) -> tuple[tuple[float, float], int, np.ndarray]:
    """b ← b − λ ∂Cost/∂b, w ← w − λ ∂Cost/∂w until both partials are below `gradient_tol`.

    Returns ((w, b), iterations, cross-entropy per iteration).
    """
    w = b = 0.0
    costs = [cross_entropy(w, b, x, y)]
    for iteration in range(max_iterations + 1):
        grad_w, grad_b = gradient(w, b, x, y)
        if max(abs(grad_w), abs(grad_b)) < gradient_tol:
            return (w, b), iteration, np.array(costs)
        w, b = w - learning_rate * grad_w, b - learning_rate * grad_b
        costs.append(cross_entropy(w, b, x, y))
    raise RuntimeError(f"gradient descent did not converge in {max_iterations} steps")


def sklearn_fit(x: np.ndarray = DATA_X, y: np.ndarray = DATA_Y) -> tuple[float, float]:
    """(w, b) from an unpenalized scikit-learn LogisticRegression.

    `penalty=None` is deprecated since scikit-learn 1.8 (warns, removed in 1.10);
    `C=np.inf` is the spelling that means "no penalty" in both old and new versions.
    """
    model = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10_000)
    model.fit(x.reshape(-1, 1), y.astype(int))
    return float(model.coef_[0, 0]), float(model.intercept_[0])


def run_logistic(
    x: np.ndarray = DATA_X,
    y: np.ndarray = DATA_Y,
    learning_rate: float = DEFAULT_LEARNING_RATE,
) -> LogisticResult:
    """Fit both ways on the same data and compare."""
    descent, iterations, costs = gradient_descent(x, y, learning_rate)
    reference = sklearn_fit(x, y)
    max_abs_diff = max(abs(a - b) for a, b in zip(descent, reference, strict=True))
    return LogisticResult(
        x=x,
        y=y,
        descent=descent,
        sklearn=reference,
        max_abs_diff=float(max_abs_diff),
        iterations=iterations,
        costs=costs,
        learning_rate=learning_rate,
    )
