"""The one typed loader for `params.yaml`.

Every stage reads its settings through `load_params`, which
1. parses the file with ruamel.yaml, the YAML 1.2 parser DVC itself uses, so a value such
   as `learning_rate: 1e-3` is the same float here as in `dvc params show` (PyYAML would
   read a string);
2. lays the selected profile (`profiles.<name>`, e.g. `smoke`) over the base settings;
3. validates the result strictly: an unknown, missing or mistyped key raises `ParamsError` naming
   its dotted key before any work starts.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from ruamel.yaml import YAML

from deeplecture.data import fashion_mnist
from deeplecture.data.download import resolve_file_checksums

FULL_PROFILE = "full"  # the lecture's settings: params.yaml as written, no overlay


class ParamsError(ValueError):
    """params.yaml does not describe a valid configuration."""


class _Strict(BaseModel):
    # strict: "25" is not an int and "1e-3" is not a float; forbid: a typo is an unknown key.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class _Source(_Strict):
    default_source: str = Field(description="the profile's own source")
    source: str | None = Field(description="the user's override: URL, file:// URL or local path")

    @property
    def effective_source(self) -> str:
        """The user's override if set, else the profile's default source."""
        return self.source if self.source is not None else self.default_source


class DataSourceParams(_Source):
    """A dataset in one file (CIFAR-10's archive)."""

    checksum: str = Field(description="md5:<hex>, sha256:<hex>, or auto (pinned hash by file name)")


class FashionMnistSourceParams(_Source):
    """Fashion-MNIST's four IDX files, under one base URL or in one folder, each with its hash."""

    # str, not Literal["auto"]: another string then fails in the validator, with one message.
    checksum: str | dict[str, str] = Field(
        description="auto (each file's pinned md5) or {file name: md5:<hex> | sha256:<hex>}"
    )

    @field_validator("checksum")
    @classmethod
    def _one_hash_per_file(cls, value: str | dict[str, str]) -> str | dict[str, str]:
        # Checked now, not at download time: a missing, unknown or malformed entry fails
        # before any work, named by its key.
        resolve_file_checksums(fashion_mnist.FILES.values(), value, "data.fashion_mnist")
        return value


class DataParams(_Strict):
    cifar10: DataSourceParams
    fashion_mnist: FashionMnistSourceParams


class SplitParams(_Strict, ABC):
    """What every dataset's preprocessing decides: limits, the validation tail, the scaling."""

    scaling: Literal["divide255", "standardize"]
    train_limit: int | None = Field(gt=0)
    test_limit: int | None = Field(gt=0)

    @abstractmethod
    def validation_size(self, train_count: int) -> int:
        """How many of the last `train_count` training images become the validation split."""

    @property
    @abstractmethod
    def wants_validation(self) -> bool:
        """Whether a validation split is asked for (so an empty one is an error)."""


class PreprocessParams(SplitParams):
    """CIFAR-10: a fraction, as Keras' validation_split, and a shuffle for image folders."""

    validation_fraction: float = Field(ge=0.0, lt=1.0)
    shuffle_seed: int

    def validation_size(self, train_count: int) -> int:
        return int(round(train_count * self.validation_fraction))

    @property
    def wants_validation(self) -> bool:
        return self.validation_fraction > 0


class FashionPreprocessParams(SplitParams):
    """Fashion-MNIST: a count (the tutorial's 55,000 / 5,000); IDX order is already mixed."""

    validation_count: int = Field(ge=0)

    def validation_size(self, train_count: int) -> int:
        return self.validation_count

    @property
    def wants_validation(self) -> bool:
        return self.validation_count > 0


class PreprocessSection(_Strict):
    cifar10: PreprocessParams
    fashion_mnist: FashionPreprocessParams


class TrainParams(_Strict):
    lecture_accuracy: float = Field(gt=0.0, le=1.0)
    epochs: int = Field(gt=0)
    batch_size: int = Field(gt=0)
    learning_rate: float = Field(gt=0.0)
    lr_schedule: Literal["constant", "lecture88"]
    validation: Literal["split", "test"]
    augment: bool
    steps_per_epoch: int | None = Field(gt=0)
    seed: int
    keep_best: bool = Field(description="restore the weights of the epoch with the lowest val_loss")


class EngineParams(_Strict):
    """How every variant is trained: which loop, how many steps per call, in which precision."""

    loop: Literal["fast", "fit"] = Field(
        description="fast: many steps per compiled call over device-resident data; fit: Model.fit"
    )
    steps_per_call: int = Field(gt=0, description="fast loop: training steps per compiled call")
    precision: Literal["float32", "mixed_bfloat16"]
    deterministic: bool = Field(description="ask the backend for deterministic kernels")


class Params(_Strict):
    profile: str
    data: DataParams
    preprocess: PreprocessSection
    engine: EngineParams
    train: dict[Literal["cnn74", "cnn79", "cnn84", "cnn88", "fashion"], TrainParams]
    profiles: dict[str, dict[str, Any]]


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Parse a YAML file exactly as DVC does."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: file not found")
    document = YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))
    if not isinstance(document, dict):
        raise ParamsError(f"{path}: expected a mapping at the top level")
    return document


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read, overlay the selected profile and validate; raise `ParamsError` naming the bad key."""
    raw = read_yaml(path)
    effective = apply_profile(raw, path)
    try:
        return Params.model_validate(effective)
    except ValidationError as error:
        raise ParamsError(_describe(error, path)) from None


def apply_profile(raw: dict[str, Any], path: str | Path = "params.yaml") -> dict[str, Any]:
    """Return `raw` with `profiles[raw["profile"]]` merged over it (`full` merges nothing)."""
    profile = raw.get("profile")
    profiles = raw.get("profiles") or {}
    if profile == FULL_PROFILE:
        return raw
    if not isinstance(profile, str) or profile not in profiles:
        known = ", ".join([FULL_PROFILE, *sorted(profiles)])
        raise ParamsError(f"{path}: profile: unknown profile {profile!r} (known: {known})")
    merged = copy.deepcopy(raw)
    _overlay(merged, profiles[profile], prefix=f"profiles.{profile}", path=path)
    return merged


def _overlay(base: dict[str, Any], overlay: Any, prefix: str, path: str | Path) -> None:
    # A profile may only change keys that exist in the base settings: a typo in an overlay
    # would otherwise be silently ignored, and the smoke run would not be what it claims.
    if not isinstance(overlay, dict):
        raise ParamsError(f"{path}: {prefix}: expected a mapping")
    for key, value in overlay.items():
        dotted = f"{prefix}.{key}"
        if key not in base:
            raise ParamsError(f"{path}: {dotted}: unknown key (no such key in the base settings)")
        if isinstance(value, dict) and isinstance(base[key], dict):
            _overlay(base[key], value, dotted, path)
        else:
            base[key] = value


def _describe(error: ValidationError, path: str | Path) -> str:
    lines = [f"{path}: invalid parameters"]
    for problem in error.errors():
        dotted = ".".join(str(part) for part in problem["loc"])
        if problem["type"] == "extra_forbidden":
            message = "unknown key"
        elif problem["type"] == "missing":
            message = "missing key"
        else:
            message = f"{problem['msg']} (got {problem['input']!r})"
        lines.append(f"  {dotted}: {message}")
    return "\n".join(lines)
