"""Preprocessed datasets on disk: the validation split, the scaling, one-hot labels, a digest.

Images stay uint8 (a quarter of the float32 size); the scaling decided here (the lecture's
/255, or a per-channel z-score from the training split) travels to the model as its first layer,
so the saved model takes raw pixels, exactly what a user hands the prediction command.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from deeplecture.atomic import atomic_path, write_json
from deeplecture.data.splits import NUM_CLASSES, ImageSplit
from deeplecture.scaling import Scaling

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class ProcessedData:
    train: ImageSplit
    validation: ImageSplit
    test: ImageSplit
    scaling: Scaling
    info: dict[str, Any]

    @property
    def digest(self) -> str:
        return self.info["digest"]


@dataclass(frozen=True)
class SplitPlan:
    """How a decoded dataset becomes the processed one (a preprocess.<dataset> section)."""

    scaling: str  # divide255 | standardize
    train_limit: int | None = None  # keep only the first N (None: all)
    test_limit: int | None = None
    validation_fraction: float = 0.0  # the last fraction of the training images (CIFAR-10)...
    validation_count: int | None = None  # ...or the last N (Fashion-MNIST); wins when set

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> SplitPlan:
        """The plan from a settings mapping, ignoring its keys that are not the plan's."""
        names = {field.name for field in fields(cls)}
        return cls(**{key: value for key, value in settings.items() if key in names})

    def validation_size(self, train_count: int) -> int:
        if self.validation_count is not None:
            return self.validation_count
        return int(round(train_count * self.validation_fraction))

    @property
    def wants_validation(self) -> bool:
        return bool(self.validation_count) or self.validation_fraction > 0


def prepare(
    train: ImageSplit, test: ImageSplit, plan: SplitPlan, source_info: dict[str, Any]
) -> ProcessedData:
    """Limit, split off the validation tail, decide the scaling and compute the digest."""
    train = ImageSplit(train.images[: plan.train_limit], train.labels[: plan.train_limit])
    test = ImageSplit(test.images[: plan.test_limit], test.labels[: plan.test_limit])
    # Keras' validation_split=0.1 takes the *last* 10 % of the arrays before any shuffling, and
    # the Fashion-MNIST tutorial its last 5,000 images; doing the same here keeps the lecture's
    # split while making it explicit and reusable.
    n_validation = plan.validation_size(len(train))
    n_fit = len(train) - n_validation
    if n_fit <= 0 or len(test) == 0 or (plan.wants_validation and n_validation == 0):
        raise ValueError(
            f"too little data after limits: {len(train)} training images "
            f"({n_fit} to fit, {n_validation} to validate), {len(test)} test images"
        )
    fit = ImageSplit(train.images[:n_fit], train.labels[:n_fit])
    validation = ImageSplit(train.images[n_fit:], train.labels[n_fit:])

    channels = train.images.shape[-1]
    if plan.scaling == "divide255":
        scaling = Scaling.divide255(channels)
    else:
        # Statistics of the fitting split only: the validation and test images must not leak in.
        pixels = fit.images.reshape(-1, channels).astype("float64")
        scaling = Scaling.standardize(pixels.mean(axis=0), pixels.std(axis=0))

    info = {
        **source_info,
        "scaling": {"method": plan.scaling, "scale": scaling.scale, "offset": scaling.offset},
        "counts": {"train": len(fit), "validation": len(validation), "test": len(test)},
        "class_counts": {
            name: np.bincount(split.labels, minlength=len(source_info["class_names"])).tolist()
            for name, split in zip(SPLITS, (fit, validation, test), strict=True)
        },
    }
    info["digest"] = content_digest((fit, validation, test), info["scaling"])
    return ProcessedData(fit, validation, test, scaling, info)


def missing_class_warnings(info: dict[str, Any]) -> list[str]:
    """One line for each split that lacks classes: its accuracy then says nothing about them
    (a test split of one class scores 100 % for a model that always answers that class)."""
    names = info["class_names"]
    warnings = []
    for split, counts in info["class_counts"].items():
        present = [name for name, count in zip(names, counts, strict=True) if count]
        if present and len(present) < len(names):
            shown = ", ".join(present) if len(present) <= 3 else f"{len(present)} of them"
            warnings.append(
                f"the {split} split holds images of {len(present)} of the {len(names)} classes "
                f"({shown}); its accuracy says nothing about the others"
            )
    return warnings


def content_digest(splits: tuple[ImageSplit, ...], scaling: dict[str, Any]) -> str:
    """sha256 over every image, label and the scaling: same digest, same training input."""
    digest = hashlib.sha256()
    for split in splits:
        digest.update(np.ascontiguousarray(split.images).tobytes())
        digest.update(np.ascontiguousarray(split.labels).tobytes())
    digest.update(json.dumps(scaling, sort_keys=True).encode())
    return digest.hexdigest()


def save(data: ProcessedData, folder: Path) -> None:
    """Write each split as an uncompressed .npz (fast to load) and `info.json`, each atomically.

    Labels are stored as class indices; one-hot rows are made from them where a loss needs them.
    """
    for name, split in zip(SPLITS, (data.train, data.validation, data.test), strict=True):
        with atomic_path(folder / f"{name}.npz", suffix=".npz") as tmp:
            np.savez(tmp, images=split.images, labels=split.labels)
    write_json(folder / "info.json", data.info)


def load(folder: Path) -> ProcessedData:
    """Read what `save` wrote, every split checked as `load_split` checks it."""
    folder = Path(folder)
    info_path = folder / "info.json"
    if not info_path.is_file():
        raise ValueError(f"{info_path} not found: is {folder} a preprocessed dataset folder?")
    info = json.loads(info_path.read_text())
    splits = [load_split(folder, name, len(info["class_names"])) for name in SPLITS]
    scaling = Scaling(
        scale=tuple(info["scaling"]["scale"]), offset=tuple(info["scaling"]["offset"])
    )
    return ProcessedData(*splits, scaling=scaling, info=info)


def load_split(folder: Path, split: str, num_classes: int = NUM_CLASSES) -> ImageSplit:
    """One split's `.npz` as `save` wrote it; a `ValueError` naming the file and what is wrong."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"data folder not found: {folder}")
    path = folder / f"{split}.npz"
    if not path.is_file():
        raise ValueError(f"split file not found: {path}")
    arrays = _read_npz(path)
    missing = [key for key in ("images", "labels") if key not in arrays]
    if missing:
        raise ValueError(f"{path}: has no {' or '.join(missing)} array")
    images, labels = arrays["images"], arrays["labels"]
    if images.ndim != 4:
        raise ValueError(f"{path}: images of shape {images.shape}, expected (N, H, W, C)")
    if labels.shape != (len(images),):
        raise ValueError(f"{path}: {len(images)} images but labels of shape {labels.shape}")
    if len(labels) and (
        labels.dtype.kind not in "iu" or labels.min() < 0 or labels.max() >= num_classes
    ):
        raise ValueError(f"{path}: labels must be integers 0..{num_classes - 1}")
    return ImageSplit(images, labels.astype(np.uint8))


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an `.npz` file; a `ValueError` naming it if it is not a readable one."""
    try:
        arrays = np.load(path, allow_pickle=False)  # never unpickle what a file says
        if not isinstance(arrays, np.lib.npyio.NpzFile):
            raise ValueError("a single .npy array, not an .npz archive")
        with arrays:
            return {key: arrays[key] for key in ("images", "labels") if key in arrays.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"{path}: not a readable .npz file ({error})") from error
