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
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from ruamel.yaml import YAML

FULL_PROFILE = "full"  # the lecture's settings: params.yaml as written, no overlay


class ParamsError(ValueError):
    """params.yaml does not describe a valid configuration."""


class _Strict(BaseModel):
    # strict: "25" is not an int and "1e-3" is not a float; forbid: a typo is an unknown key.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class DataSourceParams(_Strict):
    default_source: str = Field(description="the profile's own source")
    source: str | None = Field(description="the user's override: URL, file:// URL or local path")
    checksum: str = Field(description="md5:<hex>, sha256:<hex>, or auto (pinned hash by file name)")

    @property
    def effective_source(self) -> str:
        """The user's override if set, else the profile's default source."""
        return self.source if self.source is not None else self.default_source


class DataParams(_Strict):
    cifar10: DataSourceParams


class PreprocessParams(_Strict):
    validation_fraction: float = Field(ge=0.0, lt=1.0)
    scaling: Literal["divide255", "standardize"]
    shuffle_seed: int
    train_limit: int | None = Field(gt=0)
    test_limit: int | None = Field(gt=0)


class PreprocessSection(_Strict):
    cifar10: PreprocessParams


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


class Params(_Strict):
    profile: str
    data: DataParams
    preprocess: PreprocessSection
    train: dict[Literal["cnn74", "cnn79", "cnn84", "cnn88"], TrainParams]
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
