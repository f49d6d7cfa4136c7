"""The lecture's OR neuron: Y = S(w₁x₁ + w₂x₂ + b) with fixed, untrained weights."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WEIGHTS = (-0.16, 0.44)
BIAS = -0.99
# Row order as in the lecture's table: (x1, x2) = 00, 01, 10, 11. The "sum" column
# (0*-0.16+1*0.44-0.99 = -0.55 for the second row) pins x1 to w₁ = −0.16.
INPUTS = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
TARGETS = np.array([0.0, 1.0, 1.0, 1.0])

# The table exactly as printed in the lecture (columns Υ and error). Its error column is
# Y − T (output minus target: 0.27 − 0 = 0.27, 0.36 − 1 = −0.64).
# Lecture quirk: row 01 prints 0.36, but 1/(1+exp(0.55)) = 0.36586 rounds to 0.37, so the
# error is −0.634 → −0.63, not −0.64 (the lecture subtracted the target from its 0.36).
# We keep the computed values as the result and these printed ones for comparison.
LECTURE_OUTPUTS = (0.27, 0.36, 0.24, 0.33)
LECTURE_ERRORS = (0.27, -0.64, -0.76, -0.67)


@dataclass(frozen=True)
class ORNeuronResult:
    """Per-input sums, outputs and errors (exact, not rounded)."""

    inputs: np.ndarray
    targets: np.ndarray
    sums: np.ndarray
    outputs: np.ndarray
    errors: np.ndarray  # output − target, as in the lecture's table

    def rounded_outputs(self) -> list[float]:
        """Outputs to 2 decimals, as the lecture prints them."""
        return [round(float(v), 2) for v in self.outputs]

    def rounded_errors(self) -> list[float]:
        """Errors to 2 decimals, as the lecture prints them."""
        return [round(float(v), 2) for v in self.errors]

    def table(self) -> list[dict[str, float | int | str]]:
        """The lecture's table, one dict per row, with the lecture's printed values beside ours."""
        rows: list[dict[str, float | int | str]] = []
        for i, (x1, x2) in enumerate(self.inputs.astype(int)):
            rows.append(
                {
                    "input": f"{x1}{x2}",
                    "x1": int(x1),
                    "x2": int(x2),
                    "sum": round(float(self.sums[i]), 2),
                    "output": self.rounded_outputs()[i],
                    "target": int(self.targets[i]),
                    "error": self.rounded_errors()[i],
                    "lecture_output": LECTURE_OUTPUTS[i],
                    "lecture_error": LECTURE_ERRORS[i],
                }
            )
        return rows


def run_or_neuron(
    weights: tuple[float, float] = WEIGHTS,
    bias: float = BIAS,
    inputs: np.ndarray = INPUTS,
    targets: np.ndarray = TARGETS,
) -> ORNeuronResult:
    """Evaluate the neuron on the four OR inputs."""
    sums = inputs @ np.asarray(weights) + bias
    outputs = 1.0 / (1.0 + np.exp(-sums))
    return ORNeuronResult(
        inputs=inputs, targets=targets, sums=sums, outputs=outputs, errors=outputs - targets
    )
