"""Least squares: the closed-form line vs steepest descent on SSE (x = y = [1, 2, 3])."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The lecture's exercise: "x=[1,2,3], y = [1,2,3] 의 경우, 세 점을 잘 지나가는 직선의
# 방정식을 구해보자" (find the line through the three points).
LECTURE_X = np.array([1.0, 2.0, 3.0])
LECTURE_Y = np.array([1.0, 2.0, 3.0])

# The lecture gives the update θ ← θ − λ ∂Cost/∂θ but no λ and no start point. These are
# our choices, NOT the lecture's: λ = 0.01 is stable (the SSE Hessian's largest eigenvalue
# is ≈ 33.3, so λ must stay below ≈ 0.06) and slow enough for a readable cost curve.
DEFAULT_LEARNING_RATE = 0.01
DEFAULT_START = (0.0, 0.0)


@dataclass(frozen=True)
class LeastSquaresResult:
    """Closed-form and steepest-descent estimates of y = α + βx."""

    x: np.ndarray
    y: np.ndarray
    closed_form: tuple[float, float]  # (α̂ intercept, β̂ slope)
    descent: tuple[float, float]  # (α, β) where descent stopped
    iterations: int  # updates until both parameters are within `tolerance` of closed form
    costs: np.ndarray  # SSE after k updates, k = 0 .. iterations (costs[0] = start)
    learning_rate: float
    start: tuple[float, float]
    tolerance: float


def closed_form(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Return (α̂, β̂) from the lecture's normal-equation formulas."""
    x_bar, y_bar = x.mean(), y.mean()
    beta = np.sum((x - x_bar) * (y - y_bar)) / np.sum((x - x_bar) ** 2)
    alpha = y_bar - beta * x_bar
    return float(alpha), float(beta)


def sse(alpha: float, beta: float, x: np.ndarray, y: np.ndarray) -> float:
    """SSE = Σ (yᵢ − α − βxᵢ)²."""
    return float(np.sum((y - alpha - beta * x) ** 2))


def sse_gradient(alpha: float, beta: float, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(∂SSE/∂α, ∂SSE/∂β) = (−2Σ rᵢ, −2Σ rᵢxᵢ) with rᵢ = yᵢ − α − βxᵢ (the lecture's ① and ②)."""
    residual = y - alpha - beta * x
    return float(-2.0 * residual.sum()), float(-2.0 * (residual * x).sum())


def steepest_descent(
    x: np.ndarray = LECTURE_X,
    y: np.ndarray = LECTURE_Y,
    learning_rate: float = DEFAULT_LEARNING_RATE,
    start: tuple[float, float] = DEFAULT_START,
    tolerance: float = 1e-6,
    max_iterations: int = 1_000_000,
) -> LeastSquaresResult:
    """Run θ ← θ − λ ∂SSE/∂θ until both α and β agree with the closed form within `tolerance`."""
    target_alpha, target_beta = closed_form(x, y)
    alpha, beta = start
    costs = [sse(alpha, beta, x, y)]
    iterations = 0

    def converged() -> bool:
        return abs(alpha - target_alpha) <= tolerance and abs(beta - target_beta) <= tolerance

    while not converged():
        if iterations >= max_iterations:
            raise RuntimeError(f"steepest descent did not converge in {max_iterations} steps")
        grad_alpha, grad_beta = sse_gradient(alpha, beta, x, y)
        # Simultaneous update: both partials use the same (α, β).
        alpha, beta = alpha - learning_rate * grad_alpha, beta - learning_rate * grad_beta
        costs.append(sse(alpha, beta, x, y))
        iterations += 1

    return LeastSquaresResult(
        x=x,
        y=y,
        closed_form=(target_alpha, target_beta),
        descent=(float(alpha), float(beta)),
        iterations=iterations,
        costs=np.array(costs),
        learning_rate=learning_rate,
        start=start,
        tolerance=tolerance,
    )
