"""XOR by backpropagation: the lecture's XOR_Backpropagation.py, as written and corrected.

The lecture's script, line by line (OCR typos such as `delta h` fixed)::

    lamda = 1
    x = [[0,0],[0,1],[1,0],[1,1]]; t = [[0],[1],[1],[0]]
    w1 = [[-0.5, 0.5, 0.5], [-0.5, 0.5, -0.5]]; w2 = [[-0.5], [0.5], [-0.5]]
    b1 = [0, 0, 0]
    for i in range(100):
        h = S(x·w1 + b1); y = S(h·w2)
        delta_y = (y - t) * y * (1 - y)
        delta_h = delta_y * (w2ᵀ * h * (1 - h))
        w2 = w2 - hᵀ·(lamda * delta_y)
        w1 = w1 - xᵀ·(lamda * delta_h)
        b1 = b1 - lamda * delta_h
    print(y)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

INPUTS = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)  # x: 4×2
TARGETS = np.array([[0], [1], [1], [0]], dtype=float)  # t: 4×1
W1_START = np.array([[-0.5, 0.5, 0.5], [-0.5, 0.5, -0.5]])  # w1: 2×3
W2_START = np.array([[-0.5], [0.5], [-0.5]])  # w2: 3×1
LEARNING_RATE = 1.0
ITERATIONS = 100


@dataclass(frozen=True)
class XORResult:
    """Outputs, loss curve and final parameters of one XOR training run."""

    variant: str  # "lecture" or "corrected"
    outputs: np.ndarray  # (4,) y as `print(y)` shows it: the forward pass of the last iteration
    outputs_after_update: np.ndarray  # (4,) forward pass with the parameters after the last update
    losses: np.ndarray  # (iterations,) ½Σ(y − t)² of each iteration's forward pass
    w1: np.ndarray
    w2: np.ndarray
    b1: np.ndarray  # (4, 3) for the lecture's version, (3,) for the corrected one

    @property
    def final_loss(self) -> float:
        """Loss of `outputs` (the last iteration's forward pass)."""
        return float(self.losses[-1])


def sigmoid(z: np.ndarray) -> np.ndarray:
    """S(z) = 1 / (1 + exp(−z)), the lecture's `Sigmoid`."""
    return 1.0 / (1.0 + np.exp(-z))


def _forward(w1: np.ndarray, w2: np.ndarray, b1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h = sigmoid(INPUTS @ w1 + b1)  # h: 4×3
    # Quirk (kept in both variants): the output layer has no bias b2 in the lecture's script.
    y = sigmoid(h @ w2)  # y: 4×1
    return h, y


def train_xor(
    corrected: bool,
    iterations: int = ITERATIONS,
    learning_rate: float = LEARNING_RATE,
) -> XORResult:
    """Train the 2-3-1 sigmoid net full-batch, following the lecture's update order.

    `corrected=False` keeps the lecture's `b1 = b1 − λ·δh`: δh is 4×3 (one row per
    sample), so after the first step b1 broadcasts into a 4×3 *per-sample* bias — each
    training row gets its own hidden bias, which the net could not apply to a new input.
    `corrected=True` sums δh over the batch, the true gradient for a shared (3,) bias.
    """
    w1, w2 = W1_START.copy(), W2_START.copy()
    # The lecture starts b1 as an int array np.array([0, 0, 0]); float zeros behave the same.
    b1 = np.zeros(3)
    losses = []
    for _ in range(iterations):
        h, y = _forward(w1, w2, b1)
        # The script computes no loss; we log the lecture's Cost = ½(y − t)², summed over
        # the batch (the sum matches the summed gradients hᵀ·δy below).
        losses.append(0.5 * float(np.sum((y - TARGETS) ** 2)))
        delta_y = (y - TARGETS) * (y * (1.0 - y))  # 4×1
        # δh uses w2 *before* its update (computed first, as in the script).
        delta_h = delta_y * (w2.T * (h * (1.0 - h)))  # 4×3
        # Gradients are sums over the 4 samples, not means (λ = 1 on a sum).
        w2 = w2 - h.T @ (learning_rate * delta_y)
        w1 = w1 - INPUTS.T @ (learning_rate * delta_h)
        # Lecture: `b1 = b1 - lamda * delta_h` makes b1 4×3; corrected: sum over the batch.
        bias_gradient = delta_h.sum(axis=0) if corrected else delta_h
        b1 = b1 - learning_rate * bias_gradient
    # `print(y)` after the loop shows the y of the last forward pass, computed *before* the
    # 100th update; that is the lecture's [0.083, 0.905, 0.903, 0.088].
    _, y_after = _forward(w1, w2, b1)
    return XORResult(
        variant="corrected" if corrected else "lecture",
        outputs=y.ravel(),
        outputs_after_update=y_after.ravel(),
        losses=np.array(losses),
        w1=w1,
        w2=w2,
        b1=b1,
    )


def xor_lecture() -> XORResult:
    """The script as written (per-sample bias quirk included)."""
    return train_xor(corrected=False)


def xor_corrected() -> XORResult:
    """Same script with the hidden bias gradient summed over the batch."""
    return train_xor(corrected=True)
