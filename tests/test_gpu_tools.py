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
sys.path.insert(0, str(PROJECT_ROOT / "benchmarks"))
import run_progression  # noqa: E402
import train_speed  # noqa: E402


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


def _bench(arm: str, seeds: int, images_per_s: float, first_call_s: float = 5.0) -> dict:
    return {"arm": arm, "seeds": seeds, "images_per_s": images_per_s, "first_call_s": first_call_s}


def test_the_seeds_phase_estimates_a_stage_from_the_rate_measured_for_its_strategy(
    tmp_path: Path,
) -> None:
    from deeplecture.params import load_params

    train = load_params(write_params(tmp_path, {})).train  # full: 25 epochs; cnn88 125 x 2,000
    benchmarks = {
        "cnn74": {"arms": [
            _bench("seeds-one-by-one", 1, 999.0), _bench("seeds-together", 1, 1000.0),
            _bench("seeds-together", 4, 3000.0), _bench("seeds-sequential", 4, 900.0),
        ]},
        "cnn88": {"arms": [{"arm": "seeds-together", "seeds": 4, "error": "exit 1"}]},
    }  # fmt: skip
    estimate = run_progression.estimate_together_seconds

    # 25 epochs x 45,000 images x 8 seeds at 4 seeds' 3,000 images/s (more seeds: no gain
    # assumed), + its first call + the overhead
    assert estimate("cnn74", 8, "vmap", benchmarks, 45_000, train["cnn74"], 20.0) == (
        25 * 45_000 * 8 / 3000 + 5 + 20
    )
    # fewer seeds than measured up to: the most measured below; sequential: its own arm
    assert estimate("cnn74", 2, "vmap", benchmarks, 45_000, train["cnn74"], 0.0) == (
        25 * 45_000 * 2 / 1000 + 5
    )
    assert estimate("cnn74", 4, "sequential", benchmarks, 45_000, train["cnn74"], 0.0) == (
        25 * 45_000 * 4 / 900 + 5
    )
    # cnn79 borrows cnn74's rate, stretched; cnn88's own arm failed, so it borrows too, and
    # its epochs are 2,000 steps of 32
    assert estimate("cnn79", 4, "vmap", benchmarks, 45_000, train["cnn79"], 0.0) == (
        1.5 * 25 * 45_000 * 4 / 3000 + 5
    )
    assert estimate("cnn88", 4, "vmap", benchmarks, 50_000, train["cnn88"], 0.0) == (
        1.5 * 125 * 2000 * 32 * 4 / 3000 + 5
    )
    assert estimate("cnn74", 4, "vmap", {}, 45_000, train["cnn74"], 0.0) is None


def test_the_seed_table_of_the_committed_cpu_figures() -> None:
    report = json.loads((PROJECT_ROOT / "reports/benchmarks/cpu-seeds-cnn74-jax.json").read_text())
    table = train_speed.format_table(report)

    alone = next(a for a in report["arms"] if a["arm"] == "seeds-one-by-one" and a["seeds"] == 1)
    for arm in report["arms"]:
        row = next(
            line.split() for line in table.splitlines()
            if line.split()[:3] == [arm["arm"], arm["strategy"], str(arm["seeds"])]
        )  # fmt: skip
        assert row[8] == f"{arm['images_per_s'] / alone['images_per_s']:.2f}x"  # vs one alone
        assert arm["images_per_s_per_seed"] == pytest.approx(
            arm["images_per_s"] / arm["seeds"], abs=0.1
        )
    # through one compiled step in turn: bit for bit what each seed trains alone
    for arm in report["arms"]:
        if arm["arm"] == "seeds-sequential":
            assert f"{arm['seeds']}/{arm['seeds']} seeds identical" in table


@pytest.mark.slow
def test_the_gpu_scripts_seeds_phase_benchmarks_then_trains_seeds_together_within_its_budget(
    tmp_path: Path,
) -> None:
    root = tmp_path / "checkout"
    for folder in ("src", "stages", "benchmarks", "scripts/gpu", "data/sample", "sweeps"):
        shutil.copytree(
            PROJECT_ROOT / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(PROJECT_ROOT / "dvc.yaml", root / "dvc.yaml")
    (root / "params.yaml").write_text(shipped_params_text())
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "DVC_ROOT")}
    done = subprocess.run(
        [
            "bash", "scripts/gpu/run.sh", "--phases", "seeds", "--profile", "smoke",
            "--archive", "data/sample/cifar10-sample.tar.gz", "--out", str(out),
            "--set", "preprocess.cifar10.train_limit=200",
            "--bench-variants", "cnn74", "--bench-seeds", "2", "--bench-sequential-seeds", "",
            "--bench-epochs", "1", "--together-seeds", "2", "--budget", "600", "--reserve", "30",
            # cnn88 at 50 epochs cannot fit what is left: it is not started
            "--variants", "cnn74,cnn88", "--set", "train.cnn88.epochs=50",
        ],
        cwd=root, env={**env, "PYTHON": sys.executable, "KERAS_BACKEND": "jax"},
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]

    # every result in OUT, as few files as the device brings back
    names = sorted(path.name for path in out.iterdir())
    assert names == [
        "gpu-results.tar.gz", "gpu-run.json", "gpu-smoke-together2.json", "results.md",
        "seeds-bench-cnn74.json",
    ]  # fmt: skip
    phase = json.loads((out / "gpu-run.json").read_text())["seeds_phase"]
    assert phase["ok"] and phase["left_s"] > 0
    bench = json.loads((out / "seeds-bench-cnn74.json").read_text())
    assert [(a["arm"], a["seeds"]) for a in bench["arms"]] == [
        ("seeds-one-by-one", 1), ("seeds-together", 2),
    ]  # fmt: skip
    assert bench["arms"][1]["strategy"] == "vmap" and len(bench["arms"][1]["weights_sha256"]) == 2
    assert "seeds-together     vmap           2" in done.stdout
    cnn74, cnn88 = phase["together"]["cnn74"], phase["together"]["cnn88"]
    assert cnn74["results"]["n"] == 2 and cnn74["estimate_s"] <= cnn74["left_s"]
    assert cnn88["skipped"] == "does not fit" and cnn88["estimate_s"] > cnn88["left_s"]
    sweep = json.loads((out / "gpu-smoke-together2.json").read_text())
    assert sorted((r["variant"], r["seed"], r["trained"]) for r in sweep["runs"]) == [
        ("cnn74", 0, "together (sequential)"), ("cnn74", 1, "together (sequential)"),
    ]  # fmt: skip
    assert "## Seed sweep `gpu-smoke-together2`" in (out / "results.md").read_text()
    with tarfile.open(out / "gpu-results.tar.gz") as archive:
        packed = set(archive.getnames())
    assert {"mlflow.db", "models/sweeps/cifar10/cnn74/seed1/metrics.json"} <= packed
