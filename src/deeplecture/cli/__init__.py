"""Console commands, and what they share: argument types, quiet model loading, error lines.

Conventions: a usage error exits 2 (argparse), bad input (a missing or corrupt file, a shape
that does not fit) prints one `error: ...` line on stderr and exits 1; never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import keras


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def load_model(path: Path) -> keras.Model:
    """The saved model, loaded by `evaluation.load_model`; a `ValueError` naming a bad file.

    Keras is imported only here, so `--help` and usage errors answer at once.
    """
    # Keep TensorFlow's C++ start-up chatter off stderr, where the error line goes (unless the
    # user asked for another level).
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from deeplecture import evaluation

    with warnings.catch_warnings():
        # An optimizer saved before its first step cannot restore its slots; harmless when only
        # predicting or evaluating, and confusing to a user.
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        return evaluation.load_model(path)


def fail(error: Exception | str) -> int:
    """Print one `error: ...` line on stderr; the exit status of bad input."""
    print(f"error: {error}", file=sys.stderr)
    return 1
