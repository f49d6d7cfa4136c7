"""The training loops: their batches, the fast loop's agreement with Model.fit on every
backend, and the engine settings as train_variant applies them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from conftest import PROJECT_ROOT, learnable_images, write_params
from deeplecture import runtime, training
from deeplecture.data import processed
from deeplecture.data.splits import ImageSplit
from deeplecture.loops.batches import (
    endless_batches,
    group_steps,
    shuffled_passes,
    steps_in_epoch,
)
from deeplecture.loops.runners import pad_rows
from deeplecture.params import load_params
from loop_equivalence import train_both_ways

TINY = {"train.cnn74.epochs": 2, "train.cnn74.batch_size": 16}


def test_an_epoch_is_one_pass_or_steps_per_epoch_batches() -> None:
    assert steps_in_epoch(45_000, 32, None) == 1_407  # 1,406 full batches and one of 8
    assert steps_in_epoch(50_000, 32, 2_000) == 2_000  # cnn88: 1.28 passes


def test_calls_group_full_batches_and_keep_a_short_batch_alone() -> None:
    stream = shuffled_passes(10, batch_size=4, seed=0)  # passes of 4 + 4 + 2
    batches = [next(stream) for _ in range(6)]
    calls = list(group_steps(batches, batch_size=4, steps_per_call=3))

    assert [call.shape for call in calls] == [(2, 4), (1, 2), (2, 4), (1, 2)]
    assert np.array_equal(np.concatenate([c.ravel() for c in calls]), np.concatenate(batches))


def test_full_batch_calls_share_one_shape_and_short_batches_keep_theirs() -> None:
    full = np.arange(8).reshape(2, 4)
    padded = pad_rows(full, batch_size=4, steps_per_call=5)
    assert padded.shape == (5, 4) and np.array_equal(padded[:2], full)
    short = np.arange(3).reshape(1, 3)
    assert pad_rows(short, batch_size=4, steps_per_call=5).shape == (1, 3)


# One Adam step moves a weight by lr · m/(√v + ε): for a gradient near ε (1e-7), a rounding-level
# change of the gradient moves that weight anywhere within ±lr, so after one step at lr 1e-3 a
# few weights may differ by up to 2e-3 while the rest agree to rounding (cnn88, TensorFlow,
# measured: 6 of 300,214 weights past 1e-5, the largest 7e-4).
ONE_STEP_SWING = 2e-3
FEW = 1e-4  # of the weights: "a few" (30 of cnn88's 300,214)


@pytest.mark.parametrize(
    ("variant", "steps_per_epoch", "epochs", "tolerance"),
    [
        # no batch normalization: bit for bit, across passes, calls and a schedule change
        ("cnn74", 15, 2, 0.0),
        # augmentation, batch normalization, L2: one step, before rounding is amplified
        ("cnn88", 1, 1, ONE_STEP_SWING),
    ],
)
def test_the_fast_path_trains_what_fit_trains_on_tensorflow(
    variant: str, steps_per_epoch: int, epochs: int, tolerance: float
) -> None:
    result = train_both_ways(variant, steps_per_epoch, epochs)

    assert result["max_weight_difference"] <= tolerance
    # the same batches, augmentations and masks: all but a few weights agree to rounding
    assert result["weights_differing"] <= FEW * result["weight_count"]
    last_rate = 5e-4 if epochs > 1 else 1e-3  # the schedule halves it from the second epoch
    assert result["fast_learning_rate"] == result["fit_learning_rate"] == pytest.approx(last_rate)
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert result[f"fast_{key}"] == pytest.approx(result[f"fit_{key}"], abs=1e-3), key


def _equivalence_under(backend: str, *arguments: str) -> list[dict]:
    done = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "tests" / "loop_equivalence.py"), *arguments],
        env={**os.environ, "KERAS_BACKEND": backend},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


@pytest.mark.slow
@pytest.mark.parametrize("device_loop", [False, True], ids=["step-by-step", "on-device-loop"])
def test_the_fast_path_trains_what_fit_trains_on_jax(device_loop: bool, tmp_path: Path) -> None:
    # On a CPU, JAX runs one compiled step per batch (the same program as fit: bit for bit);
    # --device-loop runs the lax.fori_loop a GPU runs, a program of its own whose rounding
    # differs in the last bits (measured: 5e-4 after 30 steps of cnn74).
    flags = ["--device-loop"] if device_loop else []
    saved = tmp_path / "cnn88-jax.keras"
    few_steps, one_step = _equivalence_under(
        "jax", "cnn74:15:2", "cnn88:1:1", "--save-model", str(saved), *flags
    )

    assert few_steps["backend"] == "jax"
    assert few_steps["max_weight_difference"] <= (2e-3 if device_loop else 0.0)
    assert few_steps["fast_val_loss"] == pytest.approx(few_steps["fit_val_loss"], abs=1e-4)
    assert one_step["max_weight_difference"] <= ONE_STEP_SWING
    assert one_step["weights_differing"] <= FEW * one_step["weight_count"]
    # the model file is backend-neutral: trained with JAX, it predicts the same here (TensorFlow)
    images, _ = learnable_images(200, seed=1)
    probabilities = keras.saving.load_model(saved).predict(images[180:], verbose=0)
    np.testing.assert_allclose(probabilities, np.load(f"{saved}.npy"), atol=1e-5)


@pytest.mark.slow
def test_the_fast_path_trains_what_fit_trains_on_torch() -> None:
    (result,) = _equivalence_under("torch", "probe:15:2")

    assert result["backend"] == "torch"
    assert result["max_weight_difference"] == 0.0
    assert result["fast_loss"] == pytest.approx(result["fit_loss"])


@pytest.mark.parametrize("loop", ["fast", "fit"])
def test_both_loops_train_and_record_their_engine(
    loop: str, tmp_path: Path, tiny_data: Path, mlflow_store: str
) -> None:
    params = load_params(write_params(tmp_path, {**TINY, "engine.loop": loop}))
    data = processed.load(tiny_data)
    outputs = training.TrainingOutputs(
        tmp_path / "m.keras", tmp_path / "r.json", tmp_path / "h.csv", tmp_path / "ckpt"
    )
    record = training.train_variant("cnn74", params, data, outputs)

    assert record["engine"]["loop"] == loop and record["epochs"] == 2
    history = record["history"]
    assert len(history["val_accuracy"]) == 2 and all(np.isfinite(history["loss"]))
    # the learnable tiny data: two epochs move validation accuracy off chance
    assert max(history["val_accuracy"]) > 0.2


def test_mixed_bfloat16_trains_in_bfloat16_with_float32_weights_and_output(
    tmp_path: Path, tiny_data: Path, mlflow_store: str
) -> None:
    params = load_params(write_params(tmp_path, {**TINY, "engine.precision": "mixed_bfloat16"}))
    outputs = training.TrainingOutputs(
        tmp_path / "m.keras", tmp_path / "r.json", tmp_path / "h.csv", tmp_path / "ckpt"
    )
    record = training.train_variant("cnn74", params, processed.load(tiny_data), outputs)

    model = keras.saving.load_model(outputs.model)
    conv = model.get_layer("conv1")
    assert conv.compute_dtype == "bfloat16" and conv.kernel.dtype == "float32"
    assert model.get_layer("output").compute_dtype == "float32"
    assert model.count_params() == 1_639_914
    assert all(np.isfinite(record["history"]["loss"]))
    assert keras.config.dtype_policy().name == "float32"  # the policy was put back


def test_deterministic_kernels_are_requested_once_in_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("XLA_FLAGS", "--xla_dump_to=/tmp/x")
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    runtime.request_deterministic_kernels()
    runtime.request_deterministic_kernels()

    assert os.environ["XLA_FLAGS"] == "--xla_dump_to=/tmp/x --xla_gpu_deterministic_ops=true"
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"


def test_endless_batches_cross_pass_boundaries_and_cover_every_image() -> None:
    images = np.arange(10, dtype="uint8").reshape(10, 1, 1, 1)
    split = ImageSplit(images, np.arange(10, dtype="uint8") % 10)
    batches = endless_batches(split, batch_size=4, seed=0)
    sizes, seen = [], []
    for _ in range(6):  # two full passes: 4 + 4 + 2, twice
        batch_images, batch_onehot = next(batches)
        sizes.append(len(batch_images))
        seen.extend(batch_images.ravel().tolist())
        assert (batch_onehot.argmax(1) == batch_images.ravel() % 10).all()
    assert sizes == [4, 4, 2, 4, 4, 2]
    assert sorted(seen[:10]) == sorted(seen[10:]) == list(range(10))
