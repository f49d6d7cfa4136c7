"""Training on the user's own GPU: the extras that install it, and the loud warning when a
machine with an NVIDIA GPU trains on its CPU anyway (a framework without its CUDA build)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from conftest import PROJECT_ROOT, write_params
from deeplecture import runtime
from deeplecture.data import processed
from deeplecture.params import load_params
from deeplecture.training import TrainingOutputs, train_variant


def _fake_nvidia_smi(folder: Path, listing: str, status: int = 0) -> Path:
    """An `nvidia-smi` that answers `-L` as the driver's tool does on a GPU machine."""
    folder.mkdir(parents=True, exist_ok=True)
    tool = folder / "nvidia-smi"
    tool.write_text(f"#!/bin/sh\nprintf '%s' '{listing}'\nexit {status}\n")
    tool.chmod(0o755)
    return folder


H200 = "GPU 0: NVIDIA H200 (UUID: GPU-1b2c3d4e-0000-1111-2222-333344445555)\n"


def test_the_gpus_are_the_names_nvidia_smi_lists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    two = H200 + "GPU 1: NVIDIA H200 (UUID: GPU-9f8e7d6c-0000-1111-2222-333344445555)\n"
    monkeypatch.setenv("PATH", str(_fake_nvidia_smi(tmp_path / "bin", two)))
    assert runtime.nvidia_gpus(tmp_path / "no-driver") == ["NVIDIA H200", "NVIDIA H200"]


def test_without_nvidia_smi_the_drivers_own_listing_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(_fake_nvidia_smi(tmp_path / "bin", "", status=9)))  # broken
    driver = tmp_path / "proc" / "driver" / "nvidia" / "gpus"
    (driver / "0000:3b:00.0").mkdir(parents=True)
    assert runtime.nvidia_gpus(driver) == ["NVIDIA GPU 0000:3b:00.0"]
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert runtime.nvidia_gpus(tmp_path / "no-driver") == []


def test_training_on_a_gpu_or_on_a_cpu_only_machine_says_nothing_more() -> None:
    assert runtime.gpu_unused_warning("NVIDIA H200") is None
    if not runtime.nvidia_gpus():  # this machine and CI: no GPU at all
        assert runtime.gpu_unused_warning("CPU (x86_64, 2 cores)") is None


def test_a_gpu_machine_that_trains_on_its_cpu_is_warned_loudly_and_it_is_recorded(
    tmp_path: Path,
    tiny_data: Path,
    mlflow_store: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("PATH", f"{_fake_nvidia_smi(tmp_path / 'bin', H200)}:/usr/bin:/bin")
    params = load_params(write_params(tmp_path, {"train.cnn74.epochs": 1}))
    out = tmp_path / "out"
    outputs = TrainingOutputs(out / "m.keras", out / "m.train.json", out / "h.csv", out / "ck")
    record = train_variant("cnn74", params, processed.load(tiny_data), outputs)
    printed = capsys.readouterr()

    assert "training cnn74 on CPU (" in printed.out and "on tensorflow" in printed.out
    (warning,) = [line for line in printed.err.splitlines() if line.startswith("WARNING: this")]
    assert "1 NVIDIA GPU(s) (NVIDIA H200), but tensorflow trains on the CPU" in warning
    assert 'pip install -e ".[gpu-tensorflow]"' in warning
    # The device is recorded where a reader of the results looks.
    assert record["device"].startswith("CPU")
    assert json.loads(outputs.record.read_text())["device"] == record["device"]
    (run,) = mlflow.search_runs(experiment_names=["cifar10"], output_format="list")
    assert run.data.tags["device"] == record["device"]


@pytest.mark.slow
def test_the_gpu_extras_resolve_to_the_cuda_builds() -> None:
    """What `pip install -e ".[gpu-tensorflow]"` / `".[gpu-jax]"` would install, resolved
    against the package index without installing anything."""

    def resolve(extra: str) -> subprocess.Popen:
        return subprocess.Popen(
            [
                sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed",
                "--quiet", "--report", "-", f"{PROJECT_ROOT}[{extra}]",
            ],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    running = {extra: resolve(extra) for extra in ("gpu-tensorflow", "gpu-jax")}
    installs = {}
    for extra, process in running.items():
        stdout, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr[-3000:]
        report = json.loads(stdout[stdout.index("{") :])
        installs[extra] = {item["metadata"]["name"].lower() for item in report["install"]}

    assert {"tensorflow", "nvidia-cudnn-cu12", "nvidia-cublas-cu12"} <= installs["gpu-tensorflow"]
    assert {"jax", "jax-cuda12-plugin", "nvidia-cudnn-cu12"} <= installs["gpu-jax"]
