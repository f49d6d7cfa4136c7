"""Shared fixtures: tiny datasets made on the spot, and an MLflow store per test."""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

os.environ.setdefault(
    "TF_CPP_MIN_LOG_LEVEL", "2"
)  # keep TensorFlow's start-up chatter out of test output

import numpy as np
import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# DESIGN.md's contract: every metrics/<dataset>/<variant>.json holds at least these keys.
CONTRACT_METRIC_KEYS = (
    "test_accuracy", "test_loss", "param_count", "epochs", "train_seconds", "lecture_accuracy",
)  # fmt: skip
sys.path.insert(0, str(Path(__file__).parent))  # the tests' own helper modules

from deeplecture.data import processed  # noqa: E402
from deeplecture.data.splits import ImageSplit  # noqa: E402
from deeplecture.params import load_params  # noqa: E402

if TYPE_CHECKING:
    from deeplecture.training import TrainingOutputs


# The modules that take longest (`pytest --durations`, on this project's 2-core machine: 2 to 6
# minutes each), dealt first: each test worker takes a whole module (pyproject.toml), so a long
# one dealt last would leave the other workers idle while it runs. test_class_server.py leads:
# dealt first, it runs in a fresh worker (its names test has failed after test_faults_training.py
# in the same process, a dependence on order not yet explained).
LONGEST_MODULES_FIRST = (
    "test_class_server.py", "test_pipeline.py", "test_faults_training.py", "test_remotes.py",
    "test_gpu_tools.py", "test_distribution.py", "test_sweeps.py", "test_loops.py",
    "test_together.py",
)  # fmt: skip


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: index for index, name in enumerate(LONGEST_MODULES_FIRST)}
    # A stable sort: each module's own tests keep their order.
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(autouse=True)
def mlflow_uri_forgotten_after_each_test() -> Iterator[None]:
    """`mlflow.set_tracking_uri` (a test's own queries, or `mlflow_store`) holds for the whole
    process and wins over MLFLOW_TRACKING_URI: left set, it would send the next test's code,
    which reads the variable as the stages do, to another test's store. Under pytest-xdist
    that next test may be any module's."""
    yield
    mlflow = sys.modules.get("mlflow")  # a test that never imported it set nothing
    if mlflow is not None:
        variable = os.environ.get("MLFLOW_TRACKING_URI")
        mlflow.set_tracking_uri(None)  # forgets the URI, and unsets the variable
        if variable is not None:
            os.environ["MLFLOW_TRACKING_URI"] = variable


@pytest.fixture
def mlflow_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh SQLite MLflow store for this test only."""
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # for the code under test, subprocesses too
    mlflow.set_tracking_uri(uri)  # for the test's own queries: another test may have set one
    return uri


def learnable_images(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Tiny 32x32 RGB images whose class is visible (a bright square at a class-specific spot),
    so a few epochs of training move accuracy well above chance."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=count).astype("uint8")
    images = rng.integers(0, 60, size=(count, 32, 32, 3)).astype("uint8")
    for index, label in enumerate(labels):
        row, col = divmod(int(label), 5)
        images[index, 4 + 12 * row : 12 + 12 * row, 2 + 6 * col : 6 + 6 * col, :] = 250
    return images, labels


@pytest.fixture
def tiny_data(tmp_path: Path) -> Path:
    """A preprocessed CIFAR-shaped dataset on disk: 200 train (180 fit + 20 val), 60 test."""
    train_images, train_labels = learnable_images(200, seed=1)
    test_images, test_labels = learnable_images(60, seed=2)
    settings = load_params(write_params(tmp_path, {})).preprocess.cifar10
    data = processed.prepare(
        ImageSplit(train_images, train_labels),
        ImageSplit(test_images, test_labels),
        processed.SplitPlan.from_settings(settings.model_dump()),
        {"dataset": "cifar10", "source": "tests", "class_names": [f"class{i}" for i in range(10)]},
    )
    folder = tmp_path / "processed"
    processed.save(data, folder)
    return folder


def table_row(markdown: str, first_cell: str) -> list[str]:
    """The cells of the Markdown table row that starts with `first_cell`, as a reader sees them
    (the report pads its columns)."""
    row = next(line for line in markdown.splitlines() if line.startswith(f"| {first_cell}"))
    return [cell.strip() for cell in row.strip("|").split("|")]


def shipped_params_text() -> str:
    """params.yaml with the profile, data sources and checksums as shipped.

    `dvc exp run -S profile=smoke -S data.cifar10.source=...` leaves its values in the working
    copy; the tests must not depend on whichever experiment a developer ran last.
    """
    from io import StringIO

    from ruamel.yaml import YAML

    yaml = YAML()  # round trip: comments and layout stay as in the file
    document = yaml.load((PROJECT_ROOT / "params.yaml").read_text())
    document["profile"] = "full"
    for settings in document["data"].values():
        settings["source"] = None
        settings["checksum"] = "auto"
    text = StringIO()
    yaml.dump(document, text)
    return text.getvalue()


def write_params(folder: Path, changes: dict[str, object]) -> Path:
    """Write the shipped params.yaml into `folder` with dotted-key `changes`, as `-S` would."""
    from ruamel.yaml import YAML

    from deeplecture.params import set_dotted

    yaml = YAML()  # round-trip mode keeps the comments, as DVC's -S does
    document = yaml.load(shipped_params_text())
    for dotted, value in changes.items():
        set_dotted(document, dotted, value, new=True)  # tests write typos on purpose
    path = folder / "params.yaml"
    with path.open("w") as handle:
        yaml.dump(document, handle)
    return path


class InjectedCrash(Exception):
    """The exception a test injects into training."""


def crash_after_epoch(monkeypatch: pytest.MonkeyPatch, epochs: int) -> None:
    """Make training raise `InjectedCrash` right after epoch `epochs` was checkpointed."""
    from deeplecture import training

    original = training.EpochEnd.on_epoch_end

    def crashing(self, epoch, logs=None):  # noqa: ANN001
        original(self, epoch, logs)
        if epoch + 1 == epochs:
            raise InjectedCrash(f"injected crash after epoch {epochs}")

    monkeypatch.setattr(training.EpochEnd, "on_epoch_end", crashing)


def training_outputs(folder: Path, variant: str = "cnn74") -> TrainingOutputs:
    """Where a test's training run writes, named as the train stage names its outputs:
    `<variant>.keras`, `.train.json` and `.history.csv`, and `checkpoints/`, in `folder`."""
    from deeplecture.training import TrainingOutputs

    return TrainingOutputs(
        model=folder / f"{variant}.keras",
        record=folder / f"{variant}.train.json",
        history=folder / f"{variant}.history.csv",
        checkpoints=folder / "checkpoints",
    )


def run_main(
    main: Callable[[list[str]], int], argv: list[object], capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    """A console command's `main` on `argv`, as its shell would call it: (status, out, err)."""
    status = main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def sha256(data: bytes | Path) -> str:
    """The `sha256:<hex>` that params.yaml's checksums name, of `data` or of a file's bytes."""
    raw = data.read_bytes() if isinstance(data, Path) else data
    return f"sha256:{hashlib.sha256(raw).hexdigest()}"


def listing(folder: Path) -> list[str]:
    """Everything in `folder`, hidden temp files included ([] if it does not exist)."""
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []
