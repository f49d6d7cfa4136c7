"""The real pipeline: `dvc exp run -S profile=smoke` in a temporary git repository.

Slow (about two minutes on 2 cores): every stage is a real process that imports TensorFlow.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
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
