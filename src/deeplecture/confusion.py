"""The confusion matrix: the one count of (true class, predicted class) pairs that evaluation
writes and the report draws."""

from __future__ import annotations

import numpy as np


def confusion_matrix(actual: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """(num_classes, num_classes) counts, rows = true class, columns = predicted class."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(actual, dtype=np.intp), np.asarray(predicted, dtype=np.intp)), 1)
    return matrix
