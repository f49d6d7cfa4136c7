"""Resumable training: the last finished epoch's full model and the state needed to go on.

A checkpoint describes itself (`state.json`: which settings it belongs to, how many epochs are
done, the history so far, the MLflow run to continue, the best epoch so far). It is only resumed
when its fingerprint matches the current settings and data, so a stale checkpoint is never
picked up. With `keep_best`, the best epoch's weights live here too, so a resumed run still
ends with them.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import keras

from deeplecture.atomic import atomic_path, write_json

MODEL_FILE = "last.keras"
STATE_FILE = "state.json"
# Named by epoch: a file written by an attempt killed before its state.json is never mistaken
# for the best epoch that state.json names.
BEST_PATTERN = "best-epoch*.weights.h5"


@dataclass
class TrainingState:
    fingerprint: str
    epochs_done: int = 0
    history: dict[str, list[float]] = field(default_factory=dict)
    train_seconds: float = 0.0
    run_id: str | None = None
    best_epoch: int | None = None  # keep_best: the 0-based epoch with the lowest val_loss so far
    best_val_loss: float | None = None


def fingerprint(*parts: Any) -> str:
    """A stable hash of the settings and data a training run depends on."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


class Checkpoint:
    """One variant's checkpoint folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def load(self, expected_fingerprint: str) -> tuple[keras.Model, TrainingState] | None:
        """The saved model and state if they belong to these settings; a stale one is removed."""
        state_path = self.folder / STATE_FILE
        if not state_path.is_file() or not (self.folder / MODEL_FILE).is_file():
            return None
        state = TrainingState(**json.loads(state_path.read_text()))
        if state.fingerprint != expected_fingerprint:
            print(f"checkpoint in {self.folder} is for other settings or data: starting over")
            self.clear()
            return None
        # A full model file restores the optimizer's moments too, so Adam picks up where it was.
        model = keras.saving.load_model(self.folder / MODEL_FILE)
        return model, state

    def save(self, model: keras.Model, state: TrainingState, new_best: bool = False) -> None:
        """Model first, then the state: a kill between the two costs one epoch trained twice,
        never a state that claims more epochs than its model has seen.

        `new_best`: this epoch is `state.best_epoch`, so its weights are kept as the best too.
        """
        best = self.best_weights(state) if new_best else None
        if best is not None:
            with atomic_path(best, suffix=".weights.h5") as tmp:
                model.save_weights(tmp)
        with atomic_path(self.folder / MODEL_FILE, suffix=".keras") as tmp:
            model.save(tmp)
        write_json(self.folder / STATE_FILE, asdict(state))
        if best is not None:  # only now is the earlier best file no longer named by the state
            for stale in set(self.folder.glob(BEST_PATTERN)) - {best}:
                stale.unlink()

    def best_weights(self, state: TrainingState) -> Path:
        """The weights file of `state.best_epoch`."""
        return self.folder / BEST_PATTERN.replace("*", str(state.best_epoch))

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
