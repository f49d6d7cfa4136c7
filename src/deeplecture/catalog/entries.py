"""What a catalog entry says about a dataset and each of its variants: declarations only.

An entry names code by convention, never by import, so that reading the catalog (every stage
does, through params.py) never imports a reader or a network: a dataset `<name>`'s download and
reader functions are `deeplecture.data.<name>.download` and `.read`, and a variant's network is
the function `builder` of `deeplecture.models.<name>`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class Variant:
    """One network of the lecture, as its builder and the parameter count the lecture prints."""

    name: str
    builder: str  # a function of deeplecture.models.<dataset>
    lecture_param_count: int  # the lecture's printed total: the proof that the network is its


@dataclass(frozen=True)
class Dataset:
    """One dataset: its classes and image shape, where its files come from and how they are
    checked, how it is split, how its report section is titled and run, and its variants."""

    name: str  # the dvc.yaml item, the params.yaml key, the MLflow experiment, the folder name
    title: str  # the report's section title
    class_names: tuple[str, ...]
    image_shape: tuple[int, int, int]  # (height, width, channels), as every model takes it
    # archive: one file (data/raw/<name>.tar.gz), `data.<name>` names it; files: a folder of the
    # files below, `data.<name>` names their base URL or folder, each file with its own hash.
    raw: Literal["archive", "files"]
    # How the validation tail is set in `preprocess.<name>`: a fraction of the training split
    # (with a shuffle seed for image folders) or a count of images.
    validation: Literal["fraction", "count"]
    run_command: str  # what produces its metrics, as the report tells a reader
    evaluate_target: str  # a variant's evaluate stage as a `dvc exp run` target ({variant})
    variants: tuple[Variant, ...]
    files: dict[str, str] = field(default_factory=dict)  # raw: files, role -> file name
    # Known files' hashes, by file name: `checksum: auto` verifies against these.
    pinned: dict[str, str] = field(default_factory=dict)
    # What a source is, by its file name (or host, for a base URL): the report says which data a
    # figure was measured on.
    source_kinds: dict[str, str] = field(default_factory=dict)
    # Seeds trained together (sweeps/together.yaml): a variant's stage there ({variant}), and the
    # folder of its seeds' outputs; None: this dataset has no together stage.
    together_stage: str | None = None
    together_outputs: str | None = None
