"""The forward-only commands' model loading: quiet, and one `ValueError` for a bad file.

Apart from the harness in `cli/__init__.py`, which every stage imports: loading a model pulls in
Keras and the evaluation code, which no data stage depends on.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import keras


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
