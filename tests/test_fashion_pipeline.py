"""The Fashion-MNIST CNN as a pipeline: the network, its params, keep_best, the download and
preprocess stages, and `dvc exp run fashion_mnist/dvc.yaml` for real in a temporary repository.

No copy of Fashion-MNIST exists here, so the data are four tiny IDX files written by the tests,
with a class visible in each image, passed with explicit per-file checksums.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import mlflow
import numpy as np
import pytest

from conftest import (
    CONTRACT_METRIC_KEYS,
    InjectedCrash,
    crash_after_epoch,
    training_outputs,
    write_params,
)
from deeplecture import catalog
from deeplecture.data import processed
from deeplecture.data.fashion_mnist import CLASS_NAMES, FILES
from deeplecture.data.sources import KNOWN_ARCHIVES
from deeplecture.data.splits import ImageSplit
from deeplecture.models import get_variant
from deeplecture.params import ParamsError, load_params
from deeplecture.scaling import Scaling
from deeplecture.training import train_variant
from http_server import closed_port_url, serve_directory
from idx_factory import fashion_like, write_idx_folder
from project_repo import make_project_repo, run_command
from stage_runner import assert_refused, run_stage

NAMES = tuple(FILES.values())
BASE_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"


def checksum_override(checksums: dict[str, str]) -> str:
    """The mapping as a user types it after -S (Hydra's override syntax, which DVC uses)."""
    return "{" + ", ".join(f"{name}: {value}" for name, value in checksums.items()) + "}"


# --- the network and its settings -----------------------------------------------------------


def test_the_network_is_the_tutorials_layer_for_layer() -> None:
    variant = get_variant("fashion")
    assert (variant.dataset, variant.lecture_param_count) == ("fashion_mnist", 412_778)
    model = variant.build(Scaling.divide255(1), "none")
    assert model.count_params() == 412_778 and not model.non_trainable_weights
    layout = []
    for layer in model.layers[1:]:  # after the input
        config = layer.get_config()
        kind = type(layer).__name__
        if kind == "Conv2D":
            kind += f" {config['filters']} {config['kernel_size']} {config['padding']}"
        elif kind == "Dense":
            kind += f" {config['units']}"
        elif kind == "MaxPooling2D":
            kind += f" {config['pool_size']}"
        elif kind == "Dropout":
            kind += f" {config['rate']}"
        if "activation" in config:
            kind += f" {config['activation']}"
        layout.append((kind, layer.count_params(), tuple(layer.output.shape[1:])))
    assert layout == [
        ("Rescaling", 0, (28, 28, 1)),
        ("Conv2D 64 (2, 2) same relu", 320, (28, 28, 64)),
        ("MaxPooling2D (2, 2)", 0, (14, 14, 64)),
        ("Dropout 0.3", 0, (14, 14, 64)),
        ("Conv2D 32 (2, 2) same relu", 8_224, (14, 14, 32)),
        ("MaxPooling2D (2, 2)", 0, (7, 7, 32)),
        ("Dropout 0.3", 0, (7, 7, 32)),
        ("Flatten", 0, (1568,)),
        ("Dense 256 relu", 401_664, (256,)),
        ("Dropout 0.5", 0, (256,)),
        ("Dense 10 softmax", 2_570, (10,)),
    ]
    scaled = model.get_layer("scaling")(np.full((1, 28, 28, 1), 255.0, dtype="float32"))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(scaled), 1.0, rtol=1e-6)  # raw pixels in
    with pytest.raises(ValueError, match="no augmentation"):
        variant.build(Scaling.divide255(1), "lecture")
    assert catalog.find_variant("fashion")[0].name == "fashion_mnist"


def test_shipped_params_are_the_tutorials_settings(tmp_path: Path) -> None:
    params = load_params(write_params(tmp_path, {}))
    source = params.data.fashion_mnist
    assert (source.effective_source, source.checksum) == (BASE_URL, "auto")
    assert params.preprocess.fashion_mnist.validation_count == 5_000
    fashion = params.train["fashion"]
    assert (fashion.lecture_accuracy, fashion.epochs, fashion.batch_size) == (0.92, 10, 64)
    assert (fashion.learning_rate, fashion.lr_schedule, fashion.keep_best) == (
        1e-3,
        "constant",
        True,
    )
    assert not any(params.train[v].keep_best for v in ("cnn74", "cnn79", "cnn84", "cnn88"))

    smoke = load_params(write_params(tmp_path, {"profile": "smoke"}))
    assert smoke.train["fashion"].epochs == 2
    assert smoke.preprocess.fashion_mnist.validation_count == 200
    assert smoke.data.fashion_mnist.effective_source == BASE_URL  # no sample: the same files


@pytest.mark.parametrize(
    ("checksum", "named"),
    [
        ({name: KNOWN_ARCHIVES[name] for name in NAMES[:3]}, f"no checksum for {NAMES[3]}"),
        ({**{n: KNOWN_ARCHIVES[n] for n in NAMES}, "extra.gz": "md5:" + "0" * 32}, "'extra.gz'"),
        ({**{n: KNOWN_ARCHIVES[n] for n in NAMES}, NAMES[0]: "md5:xyz"}, f"{NAMES[0]}: invalid"),
        ("md5:" + "0" * 32, "expected 'auto' or one checksum per file"),
    ],
    ids=["missing-file", "unknown-file", "malformed-hash", "one-hash-for-four-files"],
)
def test_a_bad_checksum_mapping_fails_at_load_naming_key_and_file(
    tmp_path: Path, checksum: object, named: str
) -> None:
    with pytest.raises(ParamsError, match=r"data\.fashion_mnist\.checksum: ") as caught:
        load_params(write_params(tmp_path, {"data.fashion_mnist.checksum": checksum}))
    assert named in str(caught.value)


# --- keep_best --------------------------------------------------------------------------------

TINY = {"train.fashion.epochs": 4, "train.fashion.batch_size": 16}


def _disagreeing_data(tmp_path: Path) -> processed.ProcessedData:
    """200 images to fit; 60 validation images whose labels are shifted by one class, so that
    val_loss rises as the model learns and the best epoch is an early one, not the last."""
    images, labels = fashion_like(260, seed=3)
    labels[200:] = (labels[200:] + 1) % 10
    test_images, test_labels = fashion_like(60, seed=4)
    settings = load_params(
        write_params(tmp_path, {"preprocess.fashion_mnist.validation_count": 60})
    ).preprocess.fashion_mnist
    return processed.prepare(
        ImageSplit(images[..., np.newaxis], labels),
        ImageSplit(test_images[..., np.newaxis], test_labels),
        processed.SplitPlan.from_settings(settings.model_dump()),
        {"dataset": "fashion_mnist", "source": "tests", "class_names": list(CLASS_NAMES)},
    )


def _validation_loss(model_path: Path, data: processed.ProcessedData) -> float:
    """A fresh evaluation of the saved file, batched as fit validated (batch_size 16)."""
    model = keras.saving.load_model(model_path)
    validation = data.validation
    scores = model.evaluate(
        validation.images, validation.onehot, batch_size=16, verbose=0, return_dict=True
    )
    return scores["loss"]


def test_keep_best_restores_the_best_epoch_also_after_a_crash_and_resume(
    tmp_path: Path, mlflow_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _disagreeing_data(tmp_path)
    params = load_params(write_params(tmp_path, TINY))
    assert params.train["fashion"].keep_best
    outputs = training_outputs(tmp_path / "out", "fashion")
    with monkeypatch.context() as patch:
        crash_after_epoch(patch, epochs=2)
        with pytest.raises(InjectedCrash):
            train_variant("fashion", params, data, outputs)
    # The resumed process holds no weights in memory: the best ones come from the checkpoint.
    record = train_variant("fashion", params, data, outputs)

    val_losses = record["history"]["val_loss"]
    best = int(np.argmin(val_losses))
    assert len(val_losses) == 4 and record["epochs"] == 4
    assert record["kept_epoch"] == best < 3, val_losses  # not the last epoch
    kept_loss = _validation_loss(outputs.model, data)
    assert kept_loss == pytest.approx(val_losses[best], rel=1e-5)
    assert kept_loss != pytest.approx(val_losses[-1], rel=1e-3)
    assert not list(outputs.checkpoints.glob("*/*"))
    (run,) = mlflow.search_runs(experiment_names=["fashion_mnist"], output_format="list")
    assert run.info.status == "FINISHED" and run.data.metrics["kept_epoch"] == best
    assert run.data.params["keep_best"] == "True" and run.data.tags["variant"] == "fashion"


def test_without_keep_best_the_last_epoch_is_kept(tmp_path: Path, mlflow_store: str) -> None:
    data = _disagreeing_data(tmp_path)
    params = load_params(write_params(tmp_path, {**TINY, "train.fashion.keep_best": False}))
    outputs = training_outputs(tmp_path / "out", "fashion")
    record = train_variant("fashion", params, data, outputs)
    val_losses = record["history"]["val_loss"]
    assert record["kept_epoch"] == 3 != int(np.argmin(val_losses))
    assert _validation_loss(outputs.model, data) == pytest.approx(val_losses[-1], rel=1e-5)


# --- the download and preprocess stages -------------------------------------------------------


@pytest.fixture
def idx_folder(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    folder = tmp_path / "served"
    folder.mkdir()
    return folder, write_idx_folder(folder)


def test_download_stage_fetches_the_four_files_from_a_base_url(
    tmp_path: Path, idx_folder: tuple[Path, dict[str, str]]
) -> None:
    served, checksums = idx_folder
    work, out = tmp_path / "work", tmp_path / "raw" / "fashion_mnist"
    work.mkdir()
    with serve_directory(served) as server:
        # A base URL with and without its trailing slash names the same files.
        for base in (server.base_url + "/", server.base_url):
            write_params(
                work, {"data.fashion_mnist.source": base, "data.fashion_mnist.checksum": checksums}
            )
            stage = run_stage("download", work, "fashion_mnist", "--out", out)
            assert stage.returncode == 0, stage.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(NAMES)  # no temporary file left
    for name in NAMES:
        assert (out / name).read_bytes() == (served / name).read_bytes()
        assert server.hits[name] == 1  # the second run found each file verified in place


def test_download_stage_refuses_a_file_that_fails_its_own_hash(
    tmp_path: Path, idx_folder: tuple[Path, dict[str, str]]
) -> None:
    served, checksums = idx_folder
    work, out = tmp_path / "work", tmp_path / "raw"
    work.mkdir()
    wrong = {**checksums, NAMES[2]: "sha256:" + "0" * 64}
    with serve_directory(served) as server:
        write_params(
            work,
            {"data.fashion_mnist.source": server.base_url, "data.fashion_mnist.checksum": wrong},
        )
        stage = run_stage("download", work, "fashion_mnist", "--out", out)
    assert_refused(
        stage,
        f"checksum mismatch for {server.url(NAMES[2])}",
        f"-S 'data.fashion_mnist.checksum={{{NAMES[2]}: {checksums[NAMES[2]]}, ",
    )
    assert sorted(p.name for p in out.iterdir()) == sorted(NAMES[:2])  # verified ones stay

    # Offline: the hint names a folder for all four files, not a path to one of them.
    write_params(work, {"data.fashion_mnist.source": closed_port_url("fm").rsplit("/", 1)[0]})
    offline = run_stage("download", work, "fashion_mnist", "--out", tmp_path / "raw2")
    assert_refused(offline, "into one folder", "-S data.fashion_mnist.source=/path/to/folder")


def test_preprocess_stage_reads_the_idx_folder_as_one_channel_images(
    tmp_path: Path, idx_folder: tuple[Path, dict[str, str]]
) -> None:
    served, _ = idx_folder
    work, out = tmp_path / "work", tmp_path / "processed"
    work.mkdir()
    write_params(work, {"preprocess.fashion_mnist.validation_count": 100})
    stage = run_stage("preprocess", work, "fashion_mnist", "--raw", served, "--out", out)
    assert stage.returncode == 0, stage.stderr
    data = processed.load(out)
    assert (len(data.train), len(data.validation), len(data.test)) == (400, 100, 100)
    assert data.train.images.shape[1:] == (28, 28, 1) and data.train.images.dtype == np.uint8
    assert data.info["class_names"] == list(CLASS_NAMES)
    assert data.scaling == Scaling.divide255(1)
    missing = run_stage("preprocess", work, "fashion_mnist", "--out", out)
    assert missing.returncode == 2 and "--raw" in missing.stderr


# --- the real pipeline ------------------------------------------------------------------------

STAGES = ("download", "preprocess", "train", "evaluate")


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A committed copy of the project with `dvc exp run fashion_mnist/dvc.yaml` run once, in
    the smoke profile, on a local folder of tiny IDX files with explicit per-file checksums."""
    root = make_project_repo(tmp_path_factory.mktemp("fashion-project"))
    source = tmp_path_factory.mktemp("fashion-idx")
    checksums = write_idx_folder(source)
    output = run_command(
        [
            "dvc", "exp", "run", "fashion_mnist/dvc.yaml",
            "-S", "profile=smoke",
            "-S", f"data.fashion_mnist.source={source}",
            "-S", f"data.fashion_mnist.checksum={checksum_override(checksums)}",
        ],
        root,
    )  # fmt: skip
    (root / "first_run.log").write_text(output)
    return root


@pytest.mark.slow
def test_every_stage_runs_and_writes_the_contract_files(repo: Path) -> None:
    output = (repo / "first_run.log").read_text()
    for stage in STAGES:
        assert f"Running stage 'fashion_mnist/dvc.yaml:{stage}'" in output
    assert "@cifar10" not in output  # the root pipeline is not part of this run
    assert sorted(p.name for p in (repo / "data" / "raw" / "fashion_mnist").iterdir()) == sorted(
        NAMES
    )
    assert (repo / "data" / "processed" / "fashion_mnist" / "info.json").is_file()
    assert keras.saving.load_model(repo / "models/fashion_mnist/fashion.keras").count_params() == (
        412_778
    )
    record = json.loads((repo / "models/fashion_mnist/fashion.train.json").read_text())
    assert record["kept_epoch"] in (0, 1)
    assert (repo / "plots/history/fashion_mnist/fashion.csv").read_text().count("\n") == 1 + 2
    assert (repo / "plots/predictions/fashion_mnist/fashion.csv").read_text().count("\n") == 1 + 100

    # Written by the same evaluate stage as CIFAR-10's, so with the same keys.
    metrics = json.loads((repo / "metrics/fashion_mnist/fashion.json").read_text())
    assert set(CONTRACT_METRIC_KEYS) <= set(metrics) and metrics["lecture_accuracy"] == 0.92
    assert (metrics["param_count"], metrics["epochs"], metrics["test_images"]) == (412_778, 2, 100)
    per_class = (repo / "plots/per_class/fashion_mnist/fashion.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in per_class[1:]] == list(CLASS_NAMES)

    again = run_command(["dvc", "repro", "fashion_mnist/dvc.yaml"], repo)
    assert "Running stage" not in again


@pytest.mark.slow
def test_the_mlflow_store_holds_one_complete_fashionrun_command(repo: Path) -> None:
    mlflow.set_tracking_uri(f"sqlite:///{repo / 'mlflow.db'}")
    (run,) = mlflow.search_runs(experiment_names=["fashion_mnist"], output_format="list")
    assert run.info.status == "FINISHED"
    assert run.data.tags["variant"] == "fashion" and run.data.tags["dataset"] == "fashion_mnist"
    assert run.data.tags["dvc_exp_name"] and run.data.tags["git_commit"]
    assert run.data.params["profile"] == "smoke" and run.data.params["epochs"] == "2"
    assert run.data.params["keep_best"] == "True" and run.data.params["param_count"] == "412778"
    client = mlflow.MlflowClient()
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == [0, 1]
    assert {"test_accuracy", "test_loss", "kept_epoch"} <= set(run.data.metrics)
    assert run.inputs.dataset_inputs[0].dataset.digest
    assert run.info.artifact_uri.startswith((repo / "mlartifacts").as_uri())
