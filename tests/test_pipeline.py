"""The real pipeline: `dvc exp run -S profile=smoke` in a temporary git repository.

Slow (about two minutes on 2 cores): every stage is a real process that imports TensorFlow.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import keras
import mlflow
import mlflow.keras
import pytest

from conftest import PROJECT_ROOT, shipped_params_text

pytestmark = pytest.mark.slow

VARIANTS = ("cnn74", "cnn79", "cnn84", "cnn88")
# Smaller than the smoke profile itself, to keep the suite quick; same code path.
FAST = [
    "-S",
    "profiles.smoke.preprocess.cifar10.train_limit=400",
    "-S",
    "profiles.smoke.train.cnn88.steps_per_epoch=8",
]


def _run(args: list[str], cwd: Path) -> str:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        # dvc exp run commits experiment refs: give git an identity on machines without one.
        "GIT_AUTHOR_NAME": "pipeline test",
        "GIT_AUTHOR_EMAIL": "test@deeplecture.invalid",
        "GIT_COMMITTER_NAME": "pipeline test",
        "GIT_COMMITTER_EMAIL": "test@deeplecture.invalid",
    }
    env.pop("MLFLOW_TRACKING_URI", None)  # the project's default store: mlflow.db at the root
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{output[-6000:]}"
    return output


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh clone-like copy of the project, committed, with the smoke pipeline run once."""
    root = tmp_path_factory.mktemp("project")
    for name in ("dvc.yaml", "pyproject.toml", ".dvcignore"):
        shutil.copy(PROJECT_ROOT / name, root / name)
    (root / "params.yaml").write_text(shipped_params_text())
    for folder in ("src", "stages", "data/sample"):
        shutil.copytree(
            PROJECT_ROOT / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__")
        )
    _run(["git", "init", "-q"], root)
    _run(["dvc", "init", "-q"], root)
    _run(["dvc", "config", "core.analytics", "false"], root)
    _run(["git", "add", "-A"], root)
    _run(["git", "commit", "-qm", "init"], root)
    output = _run(["dvc", "exp", "run", "-S", "profile=smoke", *FAST], root)
    (root / "first_run.log").write_text(output)
    return root


def test_every_stage_runs_and_writes_the_contract_files(repo: Path) -> None:
    output = (repo / "first_run.log").read_text()
    for stage in ["download@cifar10", "preprocess@cifar10"] + [
        f"{kind}@{variant}" for kind in ("train", "evaluate") for variant in VARIANTS
    ]:
        assert f"Running stage '{stage}'" in output
    import json

    for variant in VARIANTS:
        assert (repo / "models" / "cifar10" / f"{variant}.keras").is_file()
        metrics = json.loads((repo / "metrics" / "cifar10" / f"{variant}.json").read_text())
        for key in (
            "test_accuracy",
            "test_loss",
            "param_count",
            "epochs",
            "train_seconds",
            "lecture_accuracy",
        ):
            assert key in metrics
        assert metrics["epochs"] == 2 and metrics["test_images"] == 200


def test_the_mlflow_store_holds_four_complete_runs(repo: Path) -> None:
    mlflow.set_tracking_uri(f"sqlite:///{repo / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["cifar10"], output_format="list")
    assert sorted(run.data.tags["variant"] for run in runs) == sorted(VARIANTS)
    client = mlflow.MlflowClient()
    for run in runs:
        assert run.info.status == "FINISHED"
        assert run.data.params["epochs"] == "2" and run.data.params["profile"] == "smoke"
        assert "test_accuracy" in run.data.metrics and "test_loss" in run.data.metrics
        assert [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")] == [
            0,
            1,
        ]
        assert run.data.tags["git_commit"] and run.data.tags["dvc_exp_name"]
        assert run.inputs.dataset_inputs[0].dataset.digest
        assert run.info.artifact_uri.startswith((repo / "mlartifacts").as_uri())
    model = mlflow.keras.load_model(f"runs:/{runs[0].info.run_id}/model")
    assert isinstance(model, keras.Model)


def test_the_written_accuracy_is_a_fresh_evaluation_of_the_saved_file(repo: Path) -> None:
    import json

    import numpy as np

    with np.load(repo / "data" / "processed" / "cifar10" / "test.npz") as test:
        images, onehot = test["images"], test["onehot"]
    for variant in VARIANTS:
        model = keras.saving.load_model(repo / "models" / "cifar10" / f"{variant}.keras")
        fresh = model.evaluate(images, onehot, verbose=0, return_dict=True)
        written = json.loads((repo / "metrics" / "cifar10" / f"{variant}.json").read_text())
        assert written["test_accuracy"] == pytest.approx(fresh["accuracy"], abs=1e-6)


def test_a_second_run_skips_everything_and_one_epoch_change_reruns_one_variant(repo: Path) -> None:
    again = _run(["dvc", "repro"], repo)
    assert "Running stage" not in again

    changed = _run(["dvc", "exp", "run", "-S", "profiles.smoke.train.cnn74.epochs=1"], repo)
    ran = sorted(
        line.split("'")[1] for line in changed.splitlines() if line.startswith("Running stage")
    )
    assert ran == ["evaluate@cnn74", "train@cnn74"]

    # Back to 2 epochs: DVC restores train@cnn74 from its run cache; no empty duplicate run.
    restored = _run(["dvc", "exp", "run", "-S", "profiles.smoke.train.cnn74.epochs=2"], repo)
    assert "Running stage 'train@cnn74'" not in restored
    mlflow.set_tracking_uri(f"sqlite:///{repo / 'mlflow.db'}")
    cnn74_runs = mlflow.search_runs(
        experiment_names=["cifar10"], filter_string="tags.variant = 'cnn74'", output_format="list"
    )
    assert sorted(run.data.params["epochs"] for run in cnn74_runs) == ["1", "2"]


def _lock(repo: Path) -> dict:
    from ruamel.yaml import YAML

    return YAML(typ="safe").load((repo / "dvc.lock").read_text())


def test_two_queued_experiments_in_parallel_log_to_the_root_store(repo: Path) -> None:
    for seed in (101, 102):
        _run(
            ["dvc", "exp", "run", "--queue", "-S", f"train.cnn74.seed={seed}", "evaluate@cnn74"],
            repo,
        )
    _run(["dvc", "queue", "start", "-j", "2"], repo)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        status = _run(["dvc", "queue", "status"], repo)
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(5)
    _run(["dvc", "queue", "stop", "--kill"], repo)
    assert status.count("Success") == 2, status

    mlflow.set_tracking_uri(f"sqlite:///{repo / 'mlflow.db'}")
    runs = mlflow.search_runs(
        experiment_names=["cifar10"],
        filter_string="params.seed IN ('101', '102')",
        output_format="list",
    )
    assert sorted(run.data.params["seed"] for run in runs) == ["101", "102"]
    assert all(
        run.info.status == "FINISHED" and "test_accuracy" in run.data.metrics for run in runs
    )
    assert not list((repo / ".dvc" / "tmp").rglob("mlflow.db"))  # none left in a temp copy


def test_a_second_dvc_repro_in_the_same_workspace_fails_fast_on_the_lock(repo: Path) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    first = subprocess.Popen(
        ["dvc", "repro", "-f", "train@cnn84"], cwd=repo, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert "Running stage" in first.stdout.readline() + first.stdout.readline()
    started = time.monotonic()
    second = subprocess.run(["dvc", "repro"], cwd=repo, env=env, capture_output=True, text=True)
    assert second.returncode != 0
    assert "lock" in (second.stdout + second.stderr).lower()
    assert time.monotonic() - started < 60
    first.communicate(timeout=600)
    assert first.returncode == 0
    assert "train@cnn84" in _lock(repo)["stages"]  # dvc.lock still parses and holds the stage
    _run(["dvc", "status"], repo)


def test_a_diverging_run_exits_non_zero_and_dvc_does_not_record_it(repo: Path) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    recorded_before = _lock(repo)["stages"]["train@cnn74"]
    result = subprocess.run(
        ["dvc", "exp", "run", "-S", "profiles.smoke.train.cnn74.learning_rate=1e9", "train@cnn74"],
        cwd=repo, env=env, capture_output=True, text=True,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "NaN" in output and "no model was saved" in output
    assert _lock(repo)["stages"]["train@cnn74"] == recorded_before
    assert not (repo / "models" / "cifar10" / "cnn74.keras").exists()
    mlflow.set_tracking_uri(f"sqlite:///{repo / 'mlflow.db'}")
    latest = mlflow.search_runs(
        experiment_names=["cifar10"], filter_string="tags.variant = 'cnn74'",
        order_by=["attributes.start_time DESC"], max_results=1, output_format="list",
    )[0]  # fmt: skip
    assert latest.info.status == "FAILED" and latest.data.params["learning_rate"] == "1000000000.0"
