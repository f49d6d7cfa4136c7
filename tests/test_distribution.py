"""`engine.distribution: data_parallel`: Keras' DataParallel on JAX over two virtual CPU devices
(`XLA_FLAGS=--xla_force_host_platform_device_count=2`), and two processes joined by
`jax.distributed` on 127.0.0.1. JAX fixes its devices when it starts, so every JAX run here is a
process of its own."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import keras
import mlflow
import numpy as np
import pytest

from conftest import PROJECT_ROOT, write_params
from deeplecture import distribution
from deeplecture.distribution import DistributionError, Layout
from deeplecture.params import load_params
from mlflow_server import free_port
from processes import stop
from training_stage import (
    one_error_line,
    stage_process,
    train_args,
    train_process,
    wait_for_epochs,
)

TWO_DEVICES = {"KERAS_BACKEND": "jax", "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
ONE_DEVICE = {"KERAS_BACKEND": "jax", "XLA_FLAGS": ""}


def _data_parallel_run(loop: str, setting: str, env: dict[str, str]) -> dict:
    flags = ["--loop", "fast", "--device-loop"] if loop == "device-loop" else ["--loop", loop]
    result = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "tests" / "data_parallel_run.py"),
         *flags, "--distribution", setting],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("loop", ["fast", "device-loop", "fit"])
def test_two_devices_split_each_batch_and_train_what_one_device_trains(loop: str) -> None:
    one = _data_parallel_run(loop, "none", ONE_DEVICE)
    two = _data_parallel_run(loop, "data_parallel", TWO_DEVICES)

    assert (one["devices"], two["devices"]) == (1, 2)
    if loop != "fit":
        # The batch of 32 is the global batch: 16 images on each device; weights replicated.
        assert [shape for _, shape in two["batch_shards"]] == [[16, 32, 32, 3]] * 2
        assert len({device for device, _ in two["batch_shards"]}) == 2
        assert two["variable_shards"] == [[3, 3, 3, 32], [3, 3, 3, 32]]
    # The same steps on the same batches: equal within float rounding (the gradient's sum is
    # all-reduced across devices in another order than one device adds it).
    for epoch_one, epoch_two in zip(one["epochs"], two["epochs"], strict=True):
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            assert epoch_two[key] == pytest.approx(epoch_one[key], rel=1e-4, abs=1e-5), key
    np.testing.assert_allclose(two["weights"], one["weights"], rtol=1e-4, atol=1e-3)


def _stop_after_epochs(tmp_path: Path, data: Path, store: str, epochs: int) -> str:
    """The data-parallel train stage on two devices, SIGTERM'd once `epochs` are checkpointed;
    its standard output."""
    process = train_process(tmp_path, data, store, **TWO_DEVICES)
    wait_for_epochs(process, tmp_path / "checkpoints", epochs)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr[-3000:]
    return stdout


@pytest.mark.slow
def test_a_data_parallel_stage_resumes_its_checkpoint_and_records_two_devices(
    tmp_path: Path, tiny_data: Path, mlflow_store: str
) -> None:
    write_params(tmp_path, {"train.cnn74.epochs": 200, "engine.distribution": "data_parallel"})
    _stop_after_epochs(tmp_path, tiny_data, mlflow_store, 1)
    stdout = _stop_after_epochs(tmp_path, tiny_data, mlflow_store, 2)
    assert "resuming cnn74 after epoch" in stdout
    assert "2 devices, data parallel" in stdout

    (run,) = mlflow.search_runs(experiment_names=["cifar10"], output_format="list")
    assert run.data.params["devices"] == "2" and run.data.params["processes"] == "1"
    assert run.data.params["engine_distribution"] == "data_parallel"
    assert run.data.tags["distribution"] == "data_parallel"
    assert int(run.data.tags["resumed_after_epoch"]) >= 1


@pytest.mark.slow
def test_two_processes_on_loopback_end_with_identical_weights_and_one_mlflow_run(
    tmp_path: Path, tiny_data: Path, mlflow_store: str
) -> None:
    write_params(tmp_path, {"train.cnn74.epochs": 2, "engine.distribution": "data_parallel"})
    address = f"127.0.0.1:{free_port()}"
    processes = []
    for process_id in (0, 1):
        args = train_args(tmp_path, tiny_data)
        for flag in ("--model", "--record", "--history"):  # each process its own outputs
            index = args.index(flag) + 1
            args[index] = args[index].replace("/out/", f"/out{process_id}/")
        processes.append(
            stage_process(
                "train.py",
                args,
                tmp_path,
                MLFLOW_TRACKING_URI=mlflow_store,
                KERAS_BACKEND="jax",
                XLA_FLAGS="",
                DEEPLECTURE_COORDINATOR=address,
                DEEPLECTURE_COORDINATOR_BIND=address,
                DEEPLECTURE_NUM_PROCESSES="2",
                DEEPLECTURE_PROCESS_ID=str(process_id),
            )  # fmt: skip
        )
    try:
        outputs = [process.communicate(timeout=300) for process in processes]
    finally:
        for process in processes:
            stop(process)
    for process, (stdout, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, stderr[-3000:]
        assert "2 devices in 2 processes" in stdout

    models = [keras.saving.load_model(tmp_path / f"out{i}" / "cnn74.keras") for i in (0, 1)]
    for chief, other in zip(models[0].get_weights(), models[1].get_weights(), strict=True):
        np.testing.assert_array_equal(chief, other)  # gradients all-reduced: one model
    records = [json.loads((tmp_path / f"out{i}" / "cnn74.train.json").read_text()) for i in (0, 1)]
    assert [(r["devices"], r["processes"]) for r in records] == [(2, 2), (2, 2)]
    (run,) = mlflow.search_runs(experiment_names=["cifar10"], output_format="list")  # the chief's
    assert run.info.run_id == records[0]["run_id"]
    assert run.data.params["processes"] == "2"


def test_data_parallel_off_jax_fails_before_reading_any_data(tmp_path: Path) -> None:
    write_params(tmp_path, {"engine.distribution": "data_parallel"})
    process = stage_process(
        "train.py", train_args(tmp_path, tmp_path / "no-such-data"), tmp_path,
        KERAS_BACKEND="tensorflow",
    )  # fmt: skip
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 1
    line = one_error_line(stderr)
    assert "data_parallel needs KERAS_BACKEND=jax" in line and "tensorflow" in line


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        ({"DEEPLECTURE_NUM_PROCESSES": "2"}, "missing DEEPLECTURE_COORDINATOR, DEEPLECTURE_PRO"),
        (
            {"DEEPLECTURE_COORDINATOR": "127.0.0.1:1", "DEEPLECTURE_NUM_PROCESSES": "2",
             "DEEPLECTURE_PROCESS_ID": "2"},
            "must be in 0..1",
        ),
        (
            {"DEEPLECTURE_COORDINATOR": "localhost", "DEEPLECTURE_NUM_PROCESSES": "2",
             "DEEPLECTURE_PROCESS_ID": "0"},
            "expected host:port",
        ),
    ],
)  # fmt: skip
def test_a_half_or_wrongly_configured_cluster_is_refused_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, environment: dict, message: str
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    engine = load_params(write_params(tmp_path, {"engine.distribution": "data_parallel"})).engine
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(DistributionError, match=message):
        distribution.check(engine)


def test_a_cluster_needs_data_parallel_and_the_fast_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in (
        ("DEEPLECTURE_COORDINATOR", "127.0.0.1:9"),
        ("DEEPLECTURE_NUM_PROCESSES", "2"),
        ("DEEPLECTURE_PROCESS_ID", "1"),
    ):
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(DistributionError, match="needs engine.distribution: data_parallel"):
        distribution.check(load_params(write_params(tmp_path, {})).engine)
    fit = {"engine.distribution": "data_parallel", "engine.loop": "fit"}
    with pytest.raises(DistributionError, match="needs engine.loop: fast"):
        distribution.check(load_params(write_params(tmp_path, fit)).engine)


def test_batches_that_do_not_split_across_the_devices_are_refused_with_their_sizes() -> None:
    two = Layout(devices=2, processes=1, process_id=0)
    distribution.check_batches(two, 180, 32)  # 5 batches of 32 and one of 20: all even
    with pytest.raises(DistributionError, match=r"batches of 15, 33 images \(180 training images"):
        distribution.check_batches(two, 180, 33)
    with pytest.raises(DistributionError, match="batches of 1 images"):
        distribution.check_batches(two, 161, 32)
    distribution.check_batches(distribution.SINGLE, 161, 33)  # one device takes any batch
