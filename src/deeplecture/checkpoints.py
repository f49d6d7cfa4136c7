"""Resumable training: the last finished epoch's full model and the state needed to go on.

One folder per variant and settings, `checkpoints/<variant>-<fingerprint>/`, at the repository
root: a rerun of the same experiment (also a killed `dvc exp run --temp` or queued one) finds
it, and two experiments with other settings never share one. A checkpoint describes itself
(`state.json`: the settings it belongs to, how many epochs are done, the history so far, the
MLflow run to continue, the best epoch so far, the random state of the model's dropout and
augmentation). While a process trains, it holds the folder's lock, so a checkpoint whose lock is
free belongs to a process that is gone.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
from filelock import FileLock, Timeout

from deeplecture.atomic import atomic_path, write_json

MODEL_FILE = "last.keras"
STATE_FILE = "state.json"
LOCK_FILE = "lock"
# Named by epoch: a file written by an attempt killed before its state.json is never mistaken
# for the best epoch that state.json names.
BEST_PATTERN = "best-epoch*.weights.h5"
_FINGERPRINT_CHARS = 16  # in folder names: enough to never collide, short enough to read


class CheckpointBusy(RuntimeError):
    """Another live process is training with the same settings, in the same folder."""


@dataclass
class TrainingState:
    fingerprint: str
    settings: dict[str, Any] = field(default_factory=dict)  # what the fingerprint hashes
    epochs_done: int = 0
    history: dict[str, list[float]] = field(default_factory=dict)
    train_seconds: float = 0.0
    run_id: str | None = None
    best_epoch: int | None = None  # keep_best: the 0-based epoch with the lowest val_loss so far
    best_val_loss: float | None = None
    # How the MLflow run should be closed if nobody resumes it: an attempt that ended while the
    # store was unreachable could not close it itself.
    unfinished_status: str = "KILLED"
    # Each random layer's generator state (dropout, augmentation), in the model's layer order:
    # the model file does not hold them, and a resumed run must draw what an uninterrupted one
    # would. Written by `Checkpoint.save` with the model it belongs to.
    seed_states: list[list[int]] = field(default_factory=list)


def fingerprint(settings: dict[str, Any]) -> str:
    """A stable hash of the settings and data a training run depends on."""
    blob = json.dumps(settings, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def changed_settings(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """`key: old -> new` for each leaf that differs between two settings dictionaries."""
    changes = []
    for key in sorted(set(old) | set(new)):
        dotted = f"{prefix}{key}"
        before, after = old.get(key), new.get(key)
        if isinstance(before, dict) and isinstance(after, dict):
            changes += changed_settings(before, after, f"{dotted}.")
        elif before != after:
            changes.append(f"{dotted}: {before!r} -> {after!r}")
    return changes


class Checkpoint:
    """The checkpoint folder of one variant at one set of settings."""

    def __init__(self, root: Path, variant: str, settings_fingerprint: str) -> None:
        self.root = Path(root)
        self.variant = variant
        self.folder = self.root / f"{variant}-{settings_fingerprint[:_FINGERPRINT_CHARS]}"
        self.fingerprint = settings_fingerprint
        self._lock = FileLock(self.folder / LOCK_FILE, timeout=0)

    def __enter__(self) -> Checkpoint:
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire()
        except Timeout:
            raise CheckpointBusy(
                f"another process is training {self.variant} with the same settings right now "
                f"({self.folder}); wait for it to end or stop it"
            ) from None
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._lock.release()
        if not (self.folder / STATE_FILE).exists():
            shutil.rmtree(self.folder, ignore_errors=True)  # cleared, or never saved: no husk

    def load(self) -> tuple[keras.Model, TrainingState] | None:
        """The saved model and state, if a checkpoint is here."""
        state = read_state(self.folder)
        if state is None or not (self.folder / MODEL_FILE).is_file():
            return None
        if state.fingerprint != self.fingerprint:  # only by a hash-prefix collision
            return None
        # A full model file restores the optimizer's moments too, so Adam picks up where it was.
        model = keras.saving.load_model(self.folder / MODEL_FILE)
        restore_seed_states(model, state.seed_states)
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
        state.seed_states = seed_states(model)
        self.save_state(state)
        if best is not None:  # only now is the earlier best file no longer named by the state
            for stale in set(self.folder.glob(BEST_PATTERN)) - {best}:
                stale.unlink()

    def save_state(self, state: TrainingState) -> None:
        write_json(self.folder / STATE_FILE, asdict(state))

    def best_weights(self, state: TrainingState) -> Path:
        """The weights file of `state.best_epoch`."""
        return self.folder / BEST_PATTERN.replace("*", str(state.best_epoch))

    def clear(self) -> None:
        """Remove what this checkpoint saved (the lock stays until the `with` block ends)."""
        for path in self.folder.iterdir():
            if path.name != LOCK_FILE:
                shutil.rmtree(path) if path.is_dir() else path.unlink()

    def abandoned_siblings(self) -> Iterator[tuple[Path, TrainingState]]:
        """Checkpoints of other settings whose process is gone (their lock is free), any
        variant: each one's folder and state."""
        for state_path in sorted(self.root.glob(f"*/{STATE_FILE}")):
            folder = state_path.parent
            if folder == self.folder:
                continue
            lock = FileLock(folder / LOCK_FILE, timeout=0)
            try:
                lock.acquire()
            except Timeout:
                continue  # a live run of another experiment: not ours to touch
            try:
                state = read_state(folder)
                if state is not None:
                    yield folder, state
            finally:
                lock.release()


def _seed_generators(model: keras.Model) -> list[keras.random.SeedGenerator]:
    # `_flatten_layers` and `_seed_generators` are Keras' own walk and record of a model's
    # random layers; no public API lists them, and `model.save` leaves their state out.
    return [
        generator
        for layer in model._flatten_layers(include_self=True, recursive=True)
        for generator in layer._seed_generators
    ]


def seed_states(model: keras.Model) -> list[list[int]]:
    """The state (seed, draws so far) of each random layer's generator, in layer order."""
    return [
        [int(value) for value in keras.ops.convert_to_numpy(generator.state.value)]
        for generator in _seed_generators(model)
    ]


def restore_seed_states(model: keras.Model, states: list[list[int]]) -> None:
    """Give each random layer of `model` its saved generator state (`seed_states`)."""
    generators = _seed_generators(model)
    if not states:
        return  # a checkpoint written before these were kept: its run resumes without them
    if len(states) != len(generators):
        raise ValueError(
            f"the checkpoint holds {len(states)} random-layer states for a model with "
            f"{len(generators)} random layers"
        )
    for generator, state in zip(generators, states, strict=True):
        generator.state.assign(np.asarray(state, dtype=generator.state.dtype))


def read_state(folder: Path) -> TrainingState | None:
    """The state saved in `folder`, or None if there is none (or it is not readable)."""
    path = Path(folder) / STATE_FILE
    try:
        return TrainingState(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None
