"""The one typed loader for `params.yaml`.

Every stage reads its settings through `load_params`, which
1. parses the file with ruamel.yaml, the YAML 1.2 parser DVC itself uses, so a value such
   as `learning_rate: 1e-3` is the same float here as in `dvc params show` (PyYAML would
   read a string); a syntax error or a duplicate key is one line naming the file, line and key,
   and so is an alias bomb: aliases are bounded before any value is built from them;
2. refuses unknown keys, before anything walks or copies their values;
3. resolves per-profile values: a setting written `{full: 25, smoke: 2}` takes the entry of the
   selected `profile`, and a setting written as a single value applies in every profile. So a
   user's `-S train.cnn74.epochs=1` (which replaces the mapping with 1) always wins, and what
   `dvc exp show` lists is what trains;
4. validates the result strictly: an unknown, missing or mistyped key raises `ParamsError` naming
   its dotted key before any work starts.
"""

from __future__ import annotations

import reprlib
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, SequenceNode

from deeplecture import catalog
from deeplecture.catalog import Dataset
from deeplecture.data.sources import resolve_file_checksums

FULL_PROFILE = "full"  # the lecture's settings (`dvc repro`)
# Every profile a per-profile value names, `{full: ..., smoke: ...}`.
PROFILES = (FULL_PROFILE, "smoke")
# params.yaml holds a few hundred YAML nodes. Aliases multiply: nine levels of nine `*alias`
# references stand for 9**9 nodes, which any walk of the loaded value (profile resolution,
# validation, an error message) would expand. A document beyond this bound is refused.
MAX_EXPANDED_NODES = 100_000
# keras.utils.set_random_seed hands the seed to numpy's legacy seeding, which takes exactly
# 0 ... 2**32 - 1; every seed is held to that range here, so a bad one is named by its key
# before any work instead of failing deep inside training.
MAX_SEED = 2**32 - 1
Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]


class ParamsError(ValueError):
    """params.yaml does not describe a valid configuration."""


class _Strict(BaseModel):
    # strict: "25" is not an int and "1e-3" is not a float; forbid: a typo is an unknown key.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class _Source(_Strict):
    default_source: str = Field(description="where this profile reads the data from")
    source: str | None = Field(description="the user's override: URL, file:// URL or local path")

    @property
    def effective_source(self) -> str:
        """The user's override if set, else the profile's default source."""
        return self.source if self.source is not None else self.default_source


class ArchiveSourceParams(_Source):
    """A dataset in one file (CIFAR-10's archive)."""

    checksum: str = Field(description="md5:<hex>, sha256:<hex>, or auto (pinned hash by file name)")


class FilesSourceParams(_Source):
    """A dataset of several files (Fashion-MNIST's four IDX files), under one base URL or in one
    folder, each with its hash. Each such dataset gets a subclass naming its files."""

    dataset: ClassVar[str]
    files: ClassVar[tuple[str, ...]]
    # str, not Literal["auto"]: another string then fails in the validator, with one message.
    checksum: str | dict[str, str] = Field(
        description="auto (each file's pinned hash) or {file name: md5:<hex> | sha256:<hex>}"
    )

    @field_validator("checksum")
    @classmethod
    def _one_hash_per_file(cls, value: str | dict[str, str]) -> str | dict[str, str]:
        # Checked now, not at download time: a missing, unknown or malformed entry fails
        # before any work, named by its key.
        resolve_file_checksums(cls.files, value, f"data.{cls.dataset}")
        return value


class SplitParams(_Strict):
    """What every dataset's preprocessing decides: limits, the validation tail, the scaling."""

    scaling: Literal["divide255", "standardize"]
    train_limit: int | None = Field(gt=0)
    test_limit: int | None = Field(gt=0)


class FractionSplitParams(SplitParams):
    """A fraction, as Keras' validation_split, and a shuffle for image folders (CIFAR-10)."""

    validation_fraction: float = Field(ge=0.0, lt=1.0)
    shuffle_seed: Seed


class CountSplitParams(SplitParams):
    """A count (Fashion-MNIST: the tutorial's 55,000 / 5,000; IDX order is already mixed)."""

    validation_count: int = Field(ge=0)


def _source_params(dataset: Dataset) -> type[_Source]:
    if dataset.raw == "archive":
        return ArchiveSourceParams
    namespace = {
        "__module__": __name__,
        "dataset": dataset.name,
        "files": tuple(dataset.files.values()),
    }
    return type(f"{dataset.name}_source", (FilesSourceParams,), namespace)


SPLIT_PARAMS = {"fraction": FractionSplitParams, "count": CountSplitParams}


def _per_dataset(name: str, settings_of: typing.Callable[[Dataset], type[_Strict]]) -> Any:
    """A section of params.yaml with one entry per dataset of the catalog, each of its kind."""
    fields: Any = {
        dataset.name: (settings_of(dataset), ...) for dataset in catalog.DATASETS.values()
    }
    return create_model(name, __base__=_Strict, **fields)


DataParams = _per_dataset("DataParams", _source_params)
PreprocessSection = _per_dataset(
    "PreprocessSection", lambda dataset: SPLIT_PARAMS[dataset.validation]
)
# The catalog's names, as the keys params.yaml may use.
DatasetName = Literal[tuple(catalog.DATASETS)]  # type: ignore[valid-type]
VariantName = Literal[tuple(catalog.variant_names())]  # type: ignore[valid-type]


# cnn88's augmentation (augmentation.py): `lecture` is ImageDataGenerator's one affine
# resampling per image; `keras_layers` is RandomRotation + RandomTranslation + RandomFlip, which
# resamples twice (the pipeline's augmentation before 2026-12; kept to compare the two).
Augmentation = Literal["none", "lecture", "keras_layers"]


class TrainParams(_Strict):
    lecture_accuracy: float = Field(gt=0.0, le=1.0)
    epochs: int = Field(gt=0)
    batch_size: int = Field(gt=0)
    learning_rate: float = Field(gt=0.0)
    lr_schedule: Literal["constant", "lecture88"]
    validation: Literal["split", "test"]
    augmentation: Augmentation = Field(
        description="none | lecture (ImageDataGenerator's one transform) | keras_layers (two)"
    )
    steps_per_epoch: int | None = Field(gt=0)
    seed: Seed
    keep_best: bool = Field(description="restore the weights of the epoch with the lowest val_loss")


class EngineParams(_Strict):
    """How every variant is trained: which loop, how many steps per call, in which precision."""

    loop: Literal["fast", "fit"] = Field(
        description="fast: many steps per compiled call over device-resident data; fit: Model.fit"
    )
    steps_per_call: int = Field(gt=0, description="fast loop: training steps per compiled call")
    precision: Literal["float32", "mixed_bfloat16"]
    deterministic: bool = Field(description="ask the backend for deterministic kernels")
    distribution: Literal["none", "data_parallel"] = Field(
        description="data_parallel: Keras' DataParallel over every device (JAX backend only)"
    )


class EdgeParams(_Strict):
    """The `export` and `measure_edge` stages: the int8 model's calibration, the latency runs."""

    int8: bool = Field(description="also write the int8 ONNX model (static quantization)")
    calibration_images: int = Field(gt=0, description="training images the int8 ranges come from")
    calibration_seed: Seed
    latency_calls: int = Field(gt=0, description="timed batch-1 calls per format")


class TogetherParams(_Strict):
    """Seeds of one variant trained together in one program (`deeplecture-sweep run --together`)."""

    seeds: list[Seed] | None = Field(
        min_length=1, description="the seeds trained together; null: no together sweep"
    )
    strategy: Literal["auto", "vmap", "sequential"] = Field(
        description="JAX: vmap, one vectorised step over the stacked seeds; sequential, the seeds'"
        " steps one after another through one compiled step; auto, vmap on an accelerator"
    )

    @field_validator("seeds")
    @classmethod
    def _distinct(cls, seeds: list[int] | None) -> list[int] | None:
        if seeds is not None and len(set(seeds)) != len(seeds):
            raise ValueError("a seed is named more than once")
        return seeds


# A sweep's name becomes part of DVC experiment names (`<sweep>-seed<N>`) and an MLflow tag.
SWEEP_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class Params(_Strict):
    profile: Literal["full", "smoke"]
    # The seed sweep a run belongs to (`deeplecture-sweep`), tagged `sweep` in MLflow; null: none.
    sweep: str | None = Field(pattern=SWEEP_NAME_PATTERN, max_length=64)
    together: TogetherParams
    # dataset -> variant -> the lecture's quirks the report states beside the variant's row
    variants: dict[DatasetName, dict[VariantName, list[str]]]
    data: DataParams
    preprocess: PreprocessSection
    engine: EngineParams
    train: dict[VariantName, TrainParams]
    edge: EdgeParams

    @model_validator(mode="after")
    def _every_variant_has_settings(self) -> Params:
        misplaced = [
            f"{variant} (a {catalog.find_variant(variant)[0].name} variant)"
            for dataset, names in self.variants.items()
            for variant in names
            if catalog.find_variant(variant)[0].name != dataset
        ]
        if misplaced:
            raise ValueError(f"variants lists under another dataset: {', '.join(misplaced)}")
        listed = {name for names in self.variants.values() for name in names}
        if listed != set(self.train):
            raise ValueError(
                "variants and train must name the same variants "
                f"(only in variants: {sorted(listed - set(self.train))}, "
                f"only in train: {sorted(set(self.train) - listed)})"
            )
        return self

    def dataset_of(self, variant: str) -> str:
        """The dataset whose `variants:` list names `variant`."""
        return next(dataset for dataset, names in self.variants.items() if variant in names)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Parse a YAML file exactly as DVC does; a syntax error or duplicate key is a `ParamsError`
    naming the file, the line and the problem."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: file not found")
    yaml = YAML(typ="safe", pure=True)
    try:
        root = yaml.compose(path.read_text(encoding="utf-8"))
        # Bounded on the node graph, where an alias is one shared node, before the
        # constructor builds the values a later walk would expand.
        _refuse_alias_expansion(root, path)
        document = None if root is None else yaml.constructor.construct_document(root)
    except MarkedYAMLError as error:
        raise ParamsError(_describe_yaml_error(error, path)) from None
    except YAMLError as error:
        raise ParamsError(f"{path}: not valid YAML: {_one_line(str(error))}") from None
    if not isinstance(document, dict):
        raise ParamsError(f"{path}: expected a mapping at the top level")
    return document


def set_dotted(document: dict[str, Any], dotted: str, value: Any, *, new: bool = False) -> None:
    """Set `train.cnn74.epochs`-style keys in a parsed params document, as `dvc exp run -S`
    does: the key must exist (a typo is an error, not a new setting), unless `new` allows the
    last part to be added (as `-S` does for a key that is not there yet)."""
    *parents, last = dotted.split(".")
    node = document
    for part in parents:
        if not isinstance(node, dict) or part not in node:
            raise ParamsError(f"{dotted}: no such key")
        node = node[part]
    if not isinstance(node, dict) or (last not in node and not new):
        raise ParamsError(f"{dotted}: no such key")
    node[last] = value


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read, resolve the selected profile and validate; raise `ParamsError` naming the bad key."""
    raw = read_yaml(path)
    unknown = list(unknown_keys(raw, Params))
    if unknown:
        raise ParamsError(f"{path}: " + "; ".join(f"{key}: unknown key" for key in unknown))
    effective = resolve_profile(raw, path)
    try:
        return Params.model_validate(effective)
    except ValidationError as error:
        raise ParamsError(_describe(error, path)) from None


def resolve_profile(raw: dict[str, Any], path: str | Path = "params.yaml") -> dict[str, Any]:
    """`raw` with every per-profile value `{full: ..., smoke: ...}` replaced by the entry of
    `raw["profile"]`; single values stay as they are (they apply in every profile)."""
    profile = raw.get("profile")
    if profile not in PROFILES:
        known = ", ".join(PROFILES)
        raise ParamsError(f"{path}: profile: unknown profile {profile!r} (known: {known})")
    return _resolve(raw, profile, prefix="", path=path)


def unknown_keys(node: Any, schema: Any, prefix: str = "") -> Iterator[str]:
    """The dotted keys in `node` that `schema` (a model, or a field's annotation) has no place
    for, found by looking at keys only: an unknown key's value is never walked or copied.
    Per-profile entries are looked into as they stand; a value of the wrong shape is left to
    validation, which names it."""
    if not isinstance(node, dict):
        return
    if is_per_profile(node):
        yield from dict.fromkeys(  # a key unknown in both profiles is named once
            key for entry in node.values() for key in unknown_keys(entry, schema, prefix)
        )
        return
    container = _mapping_schema(schema)
    if container is None:
        return
    for key, value in node.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(container, type):  # a model: its fields are the only keys
            field = container.model_fields.get(key)
            if field is None:
                yield dotted
            else:
                yield from unknown_keys(value, field.annotation, dotted)
        else:  # dict[K, V]: any key of the right type (validation checks it), values of V
            yield from unknown_keys(value, typing.get_args(container)[1], dotted)


def _mapping_schema(annotation: Any) -> Any:
    """The model or `dict[K, V]` in `annotation` (through `X | None` and `Annotated`), or
    None where it holds neither (a scalar or a list: there are no keys to check)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, Annotated):
        members = typing.get_args(annotation)
        if origin is Annotated:
            members = members[:1]
        return next(filter(None, map(_mapping_schema, members)), None)
    if origin is dict:
        return annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def is_per_profile(value: Any) -> bool:
    """Whether `value` is written per profile: a mapping whose keys are profile names."""
    return isinstance(value, dict) and bool(value) and set(value) <= set(PROFILES)


def _resolve(node: Any, profile: str, prefix: str, path: str | Path) -> Any:
    if not isinstance(node, dict):
        return node
    if is_per_profile(node):
        missing = [name for name in PROFILES if name not in node]
        if missing:
            # A forgotten entry would silently fall back to something: say which one is needed.
            raise ParamsError(
                f"{path}: {prefix}: a per-profile value names every profile "
                f"({', '.join(PROFILES)}); missing {', '.join(missing)}"
            )
        return _resolve(node[profile], profile, prefix, path)
    return {
        key: _resolve(value, profile, f"{prefix}.{key}" if prefix else str(key), path)
        for key, value in node.items()
    }


def _describe(error: ValidationError, path: str | Path) -> str:
    # One line, as every refusal of the stages: each problem named by its dotted key.
    problems = []
    for problem in error.errors():
        dotted = ".".join(str(part) for part in problem["loc"])
        if problem["type"] == "extra_forbidden":
            message = "unknown key"
        elif problem["type"] == "missing":
            message = "missing key"
        else:
            message = f"{problem['msg']} (got {_SHORT.repr(problem['input'])})"
        problems.append(f"{dotted}: {message}")
    return f"{path}: " + "; ".join(problems)


def _make_short_repr() -> reprlib.Repr:
    # A wrong value is quoted in the error, cut short: the line stays readable whatever it
    # holds. (Attributes, not keywords: Repr takes keywords from Python 3.12 on.)
    short = reprlib.Repr()
    short.maxlevel, short.maxdict, short.maxlist = 2, 4, 4
    short.maxstring = short.maxother = 80
    return short


_SHORT = _make_short_repr()


def _refuse_alias_expansion(root: Node | None, path: str | Path) -> None:
    """Refuse a composed document whose aliases expand it past `MAX_EXPANDED_NODES` nodes, or
    that holds a recursive alias (a value containing itself), naming where it happens."""
    expanded: dict[int, int] = {}  # node id -> nodes it stands for, each shared node once
    open_nodes: set[int] = set()  # the nodes being counted: the path from the root

    def count(node: Node) -> int:
        if id(node) in expanded:
            return expanded[id(node)]
        if id(node) in open_nodes:
            raise ParamsError(
                f"{_where(node, path)}: a recursive alias (a value that contains itself)"
            )
        children: list[Node] = []
        if isinstance(node, MappingNode):
            children = [part for pair in node.value for part in pair]
        elif isinstance(node, SequenceNode):
            children = node.value
        open_nodes.add(id(node))
        total = 1
        for child in children:
            total += count(child)
            if total > MAX_EXPANDED_NODES:  # stop at once: the innermost value to blame
                raise ParamsError(
                    f"{_where(node, path)}: this value's aliases expand it to more than "
                    f"{MAX_EXPANDED_NODES:,} YAML nodes (an alias bomb?); write it out plainly"
                )
        open_nodes.discard(id(node))
        expanded[id(node)] = total
        return total

    if root is not None:
        count(root)


def _where(node: Node, path: str | Path) -> str:
    mark = node.start_mark
    return f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)


def _describe_yaml_error(error: MarkedYAMLError, path: str | Path) -> str:
    mark = error.problem_mark or error.context_mark
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
    problem = error.problem or error.context or "not valid YAML"
    if "duplicate key" in problem:
        # ruamel's own text spans several lines and suggests a setting we do not want.
        key = _one_line(str(error)).split('found duplicate key "', 1)[-1].split('"', 1)[0]
        return f"{where}: duplicate key {key!r} (each key may appear once in a mapping)"
    return f"{where}: not valid YAML: {_one_line(problem)}"


def _one_line(text: str) -> str:
    return " ".join(text.split())
