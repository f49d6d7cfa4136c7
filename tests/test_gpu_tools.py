"""The benchmark and the GPU script, run for real on this CPU at a tiny size."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from conftest import PROJECT_ROOT, shipped_params_text, write_params

sys.path.insert(0, str(PROJECT_ROOT / "scripts" / "gpu"))
import run_progression  # noqa: E402


def test_the_gpu_script_runs_the_commands_dvc_yaml_gives() -> None:
    command = run_progression.stage_command("evaluate", "cnn88")

    assert command[:3] == [sys.executable, "stages/evaluate.py", "cnn88"]
    assert "data/processed/cifar10" in command and "metrics/cifar10/cnn88.json" in command
    with pytest.raises(SystemExit, match="no foreach entry 'cnn99'"):
        run_progression.stage_command("train", "cnn99")


def test_the_xla_flag_probe_compiles_a_maxpool_gradient_or_names_the_refusal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert run_progression.probe_xla_deterministic_flag()["accepted"]

    monkeypatch.setenv("XLA_FLAGS", "--xla_no_such_flag=true")  # as an XLA without the flag
    refused = run_progression.probe_xla_deterministic_flag()
    assert not refused["accepted"] and "xla_no_such_flag" in refused["error"]


@pytest.mark.slow
def test_the_benchmark_prints_the_arms_side_by_side(tmp_path: Path, tiny_data: Path) -> None:
    params = write_params(tmp_path, {})
    report_path = tmp_path / "bench.json"
    done = subprocess.run(
        [
            sys.executable, str(PROJECT_ROOT / "benchmarks" / "train_speed.py"),
            "--data", str(tiny_data), "--variant", "cnn74", "--epochs", "2",
            "--arms", "plain,pipeline,pipeline", "--params", str(params),
            "--json", str(report_path),
        ],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]

    report = json.loads(report_path.read_text())
    assert [arm["arm"] for arm in report["arms"]] == ["plain", "pipeline", "pipeline"]
    for arm in report["arms"]:
        assert arm["epochs"] == 2 and arm["train_images"] == 180
        assert arm["median_epoch_s"] > 0 and arm["images_per_s"] > 0
        assert 0.0 <= arm["test_accuracy"] <= 1.0
    assert report["arms"][1]["engine"]["loop"] == "fast"
    # seeded, deterministic kernels: the pipeline repeats itself bit for bit
    assert report["repeats_identical"] == {"pipeline": True}
    table = done.stdout[done.stdout.index("cnn74, 2 epochs of 180 images") :]
    assert "speed-up" in table and "pipeline, repeated: identical weights" in table


@pytest.mark.slow
def test_the_gpu_script_runs_the_progression_and_packs_its_results(tmp_path: Path) -> None:
    root = tmp_path / "checkout"
    for folder in ("src", "stages", "benchmarks", "scripts/gpu", "data/sample"):
        shutil.copytree(
            PROJECT_ROOT / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(PROJECT_ROOT / "dvc.yaml", root / "dvc.yaml")
    (root / "params.yaml").write_text(shipped_params_text())
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "DVC_ROOT")}
    done = subprocess.run(
        [
            "bash", "scripts/gpu/run.sh", "--profile", "smoke", "--variants", "cnn74,cnn88",
            "--archive", "data/sample/cifar10-sample.tar.gz", "--out", str(out), "--seeds", "2",
            "--set", "train.cnn88.augmentation=keras_layers",
        ],
        cwd=root, env={**env, "PYTHON": sys.executable, "KERAS_BACKEND": "tensorflow"},
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]

    summary = json.loads((out / "gpu-run.json").read_text())
    progression = summary["progression"]
    assert progression["ok"] and set(progression["variants"]) == {"cnn74", "cnn88"}
    assert progression["total_train_seconds"] == pytest.approx(
        sum(v["train_seconds"] for v in progression["variants"].values()), abs=0.2
    )
    assert summary["environment"]["keras_backend"] == "tensorflow"
    assert "ordering cnn74 < cnn88" in done.stdout
    with tarfile.open(out / "gpu-results.tar.gz") as archive:
        names = set(archive.getnames())
    assert {"metrics/cifar10/cnn74.json", "metrics/cifar10/cnn88.json", "mlflow.db"} <= names
    assert {"plots/history/cifar10/cnn88.csv", "gpu-results/params.yaml"} <= names
    assert "plots/provenance/cifar10/cnn88.json" in names
    # --seeds 2: a sweep of its own, collected from the runs and shown by the report
    seeds = summary["seeds"]
    assert seeds["ok"] and seeds["variants"]["cnn74"]["n"] == 2
    assert "reports/sweeps/gpu-smoke-seeds.json" in names
    sweep = json.loads((root / "reports" / "sweeps" / "gpu-smoke-seeds.json").read_text())
    assert sorted((r["variant"], r["seed"]) for r in sweep["runs"]) == [
        ("cnn74", 0), ("cnn74", 1), ("cnn88", 0), ("cnn88", 1),
    ]  # fmt: skip
    assert "## Seed sweep `gpu-smoke-seeds`" in (root / "reports" / "results.md").read_text()
    # the overrides applied to this run only
    assert (root / "params.yaml").read_text() == shipped_params_text()
    as_run = (root / "gpu-results" / "params.yaml").read_text()
    assert "profile: smoke" in as_run and "cifar10-sample.tar.gz" in as_run
    assert "augmentation: keras_layers" in as_run  # cnn88 with the other augmentation


@pytest.mark.slow
def test_the_benchmarks_devices_arm_trains_data_parallel_on_two_virtual_devices(
    tmp_path: Path, tiny_data: Path
) -> None:
    report_path, params = tmp_path / "devices.json", write_params(tmp_path, {})
    done = subprocess.run(
        [
            sys.executable, str(PROJECT_ROOT / "benchmarks" / "train_speed.py"),
            "--data", str(tiny_data), "--variant", "cnn74", "--epochs", "2",
            "--arms", "pipeline,pipeline-data-parallel", "--params", str(params),
            "--json", str(report_path),
        ],
        env={**os.environ, "KERAS_BACKEND": "jax"}, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]

    one, two = json.loads(report_path.read_text())["arms"]
    assert (one["devices"], two["devices"]) == (1, 2)
    assert two["engine"]["distribution"] == "data_parallel"
    # the same steps on the same batches, split in two: the same model within float rounding
    assert two["test_accuracy"] == pytest.approx(one["test_accuracy"], abs=0.02)
    assert "pipeline-data-parallel (2 devices)" in done.stdout
