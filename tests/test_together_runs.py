"""Seeds trained together as runs: one record, model file and MLflow run per seed, resumed
after a kill, and (where the seeds train one after another) the very numbers of each seed alone.

Runs under TensorFlow in this process, where the together path trains the seeds one by one;
the vectorised JAX path and its equivalence are tests/test_together.py's.
"""

from __future__ import annotations

from pathlib import Path

import keras
import mlflow
import numpy as np
import pytest

from conftest import InjectedCrash, crash_after_epoch, write_params
from deeplecture.data import processed
from deeplecture.params import ParamsError, load_params
from deeplecture.together import train_together
from deeplecture.training import TrainingOutputs, train_variant

SETTINGS = {"train.cnn74.epochs": 3, "train.cnn74.batch_size": 16, "sweep": "t"}
SEEDS = [3, 5]


def _outputs_in(folder: Path):  # noqa: ANN202
    def outputs_of(seed: int) -> TrainingOutputs:
        return TrainingOutputs(
            model=folder / f"seed{seed}" / "model.keras",
            record=folder / f"seed{seed}" / "train.json",
            history=folder / f"seed{seed}" / "history.csv",
            checkpoints=folder.parent / "checkpoints",
        )

    return outputs_of


def _weights(path: Path) -> list[np.ndarray]:
    return keras.saving.load_model(path).get_weights()


def test_each_seed_trained_together_is_its_own_run_and_a_kill_is_resumed(
    tmp_path: Path, tiny_data: Path, mlflow_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = load_params(write_params(tmp_path, {**SETTINGS, "together.seeds": SEEDS}))
    data = processed.load(tiny_data)
    outputs_of = _outputs_in(tmp_path / "together")

    with monkeypatch.context() as patch:
        crash_after_epoch(patch, 2)  # the first seed, after its second epoch was checkpointed
        with pytest.raises(InjectedCrash):
            train_together("cnn74", params, data, outputs_of)
    # Runs open when training ends: a kill during training leaves none RUNNING.
    assert mlflow.search_runs(experiment_names=["cifar10"], output_format="list") == []

    records = train_together("cnn74", params, data, outputs_of)
    assert [record["seed"] for record in records] == SEEDS
    assert [record["epochs"] for record in records] == [3, 3]
    runs = mlflow.search_runs(
        experiment_names=["cifar10"], filter_string="tags.sweep = 't'", output_format="list"
    )
    by_seed = {int(run.data.params["seed"]): run for run in runs}
    assert sorted(by_seed) == SEEDS and {run.info.status for run in runs} == {"FINISHED"}
    for record in records:
        run = by_seed[record["seed"]]
        assert run.info.run_id == record["run_id"]
        assert run.data.tags["trained_together"] == "one by one"
        steps = mlflow.MlflowClient().get_metric_history(run.info.run_id, "loss")
        assert sorted(metric.step for metric in steps) == [0, 1, 2]  # every epoch, once
        assert run.outputs.model_outputs == []  # the stage logs each model as it evaluates it
    assert not list((tmp_path / "checkpoints").iterdir())  # cleared once all were finished

    # Seed 3 alone, as its own train stage would train it: the same weights, bit for bit,
    # although the together run was killed and resumed in between.
    alone = load_params(write_params(tmp_path, {**SETTINGS, "train.cnn74.seed": 3}))
    single = TrainingOutputs(
        tmp_path / "alone.keras",
        tmp_path / "alone.json",
        tmp_path / "alone.csv",
        tmp_path / "checkpoints",
    )
    train_variant("cnn74", alone, data, single)
    for together, by_itself in zip(
        _weights(outputs_of(3).model), _weights(single.model), strict=True
    ):
        np.testing.assert_array_equal(together, by_itself)


def test_a_together_run_without_seeds_is_refused_before_any_work(
    tmp_path: Path, tiny_data: Path, mlflow_store: str
) -> None:
    params = load_params(write_params(tmp_path, SETTINGS))
    with pytest.raises(ParamsError, match=r"together.seeds: null; name the seeds"):
        train_together("cnn74", params, processed.load(tiny_data), _outputs_in(tmp_path))
    assert not (tmp_path / "seed3").exists()


def test_the_same_seed_twice_is_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(
        ParamsError, match=r"together.seeds: .*a seed is named more than once \(got \[1, 1\]\)"
    ):
        load_params(write_params(tmp_path, {"together.seeds": [1, 1]}))
