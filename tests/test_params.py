"""The typed params loader: the shipped file is valid, bad files fail early and name the key."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from conftest import shipped_params_text, write_params
from deeplecture.params import ParamsError, load_params


def test_shipped_params_are_the_lecture_settings(tmp_path: Path) -> None:
    params = load_params(write_params(tmp_path, {}))
    assert params.profile == "full"
    assert params.data.cifar10.effective_source.endswith("cifar-10-binary.tar.gz")
    assert [params.train[v].lecture_accuracy for v in ("cnn74", "cnn79", "cnn84", "cnn88")] == [
        0.74,
        0.79,
        0.84,
        0.88,
    ]
    for variant in ("cnn74", "cnn79", "cnn84"):
        assert params.train[variant].epochs == 25
        assert params.train[variant].validation == "split"
    cnn88 = params.train["cnn88"]
    assert (cnn88.epochs, cnn88.steps_per_epoch, cnn88.batch_size) == (125, 2000, 32)
    assert (cnn88.augment, cnn88.validation, cnn88.lr_schedule) == (True, "test", "lecture88")
    assert params.preprocess.cifar10.validation_fraction == 0.1


def test_the_smoke_profile_takes_the_smoke_entry_of_each_per_profile_value(
    tmp_path: Path,
) -> None:
    params = load_params(write_params(tmp_path, {"profile": "smoke"}))
    assert params.data.cifar10.effective_source == "data/sample/cifar10-sample.tar.gz"
    assert params.train["cnn74"].epochs == 2
    assert params.train["cnn74"].batch_size == 32  # a single value applies in every profile


def test_an_explicit_source_wins_over_the_profile_default(tmp_path: Path) -> None:
    path = write_params(tmp_path, {"profile": "smoke", "data.cifar10.source": "/data/c.tar.gz"})
    assert load_params(path).data.cifar10.effective_source == "/data/c.tar.gz"


@pytest.mark.parametrize(
    ("key", "value", "read"),
    [
        ("train.cnn74.epochs", 1, lambda p: p.train["cnn74"].epochs),
        ("train.cnn88.steps_per_epoch", 3, lambda p: p.train["cnn88"].steps_per_epoch),
        ("preprocess.cifar10.train_limit", 300, lambda p: p.preprocess.cifar10.train_limit),
        ("engine.steps_per_call", 2, lambda p: p.engine.steps_per_call),
    ],
)
def test_a_value_set_with_dash_s_wins_over_the_smoke_profile(
    tmp_path: Path, key: str, value: int, read
) -> None:
    """`-S profile=smoke -S KEY=VALUE` replaces the per-profile mapping by VALUE: it trains."""
    assert read(load_params(write_params(tmp_path, {"profile": "smoke", key: value}))) == value


def test_a_bad_value_set_over_the_smoke_profile_is_still_refused(tmp_path: Path) -> None:
    path = write_params(tmp_path, {"profile": "smoke", "train.cnn74.epochs": -1})
    with pytest.raises(ParamsError, match=r"train\.cnn74\.epochs: Input should be greater than 0"):
        load_params(path)


def test_a_per_profile_value_must_name_every_profile(tmp_path: Path) -> None:
    path = write_params(tmp_path, {"train.cnn74.epochs": {"smoke": 2}})
    with pytest.raises(ParamsError, match=r"train\.cnn74\.epochs: .*every profile.*missing full"):
        load_params(path)


def test_several_problems_are_one_line(tmp_path: Path) -> None:
    path = write_params(tmp_path, {"train.cnn74.epochs": 0, "engine.loop": "turbo"})
    with pytest.raises(ParamsError) as raised:
        load_params(path)
    message = str(raised.value)
    assert "\n" not in message
    assert "train.cnn74.epochs" in message and "engine.loop" in message


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (
            lambda text: text.replace("    seed: 74\n", "    seed: 74\n    seed: 75\n", 1),
            r"params\.yaml:\d+:\d+: duplicate key 'seed'",
        ),
        (
            lambda text: text.replace("  cnn74:", "  cnn74: [", 1),
            r"params\.yaml:\d+:\d+: not valid YAML: ",
        ),
    ],
)
def test_yaml_syntax_errors_and_duplicate_keys_are_one_line_naming_the_line(
    tmp_path: Path, edit, named: str
) -> None:
    (tmp_path / "params.yaml").write_text(edit(shipped_params_text()))
    with pytest.raises(ParamsError, match=named) as raised:
        load_params(tmp_path / "params.yaml")
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"train.cnn74.epochz": 3}, "train.cnn74.epochz: unknown key"),
        ({"train.cnn74.epochs": "25"}, "train.cnn74.epochs"),
        ({"train.cnn74.learning_rate": "fast"}, "train.cnn74.learning_rate"),
        ({"preprocess.cifar10.scaling": "minmax"}, "preprocess.cifar10.scaling"),
        ({"engine.loop": "turbo"}, "engine.loop"),
        ({"engine.steps_per_call": 0}, "engine.steps_per_call"),
        ({"engine.precision": "float16"}, "engine.precision"),
        ({"profile": "tiny"}, "profile: unknown profile 'tiny'"),
        ({"profile": "smoke", "train.cnn74.epochs": "2"}, "train.cnn74.epochs"),
    ],
)
def test_bad_values_name_their_dotted_key(tmp_path: Path, changes: dict, named: str) -> None:
    with pytest.raises(ParamsError, match=named.replace(".", r"\.").replace("'", ".")):
        load_params(write_params(tmp_path, changes))


def test_a_missing_key_is_named(tmp_path: Path) -> None:
    text = shipped_params_text().replace("    seed: 79\n", "", 1)
    (tmp_path / "params.yaml").write_text(text)
    with pytest.raises(ParamsError, match=r"train\.cnn79\.seed: missing key"):
        load_params(tmp_path / "params.yaml")


def test_values_are_read_as_dvc_reads_them(tmp_path: Path) -> None:
    """`learning_rate: 1e-3` is a float for DVC (YAML 1.2); the loader must agree."""
    text = shipped_params_text()
    text = text.replace("learning_rate: 0.001       # Adam", "learning_rate: 1e-3  # Adam", 1)
    (tmp_path / "params.yaml").write_text(text)
    subprocess.run(["dvc", "init", "--no-scm", "-q"], cwd=tmp_path, check=True)
    import dvc.api

    shown = dvc.api.params_show(repo=str(tmp_path))
    loaded = load_params(tmp_path / "params.yaml")
    assert shown["train"]["cnn74"]["learning_rate"] == loaded.train["cnn74"].learning_rate == 1e-3
    per_profile = shown["train"]["cnn88"]["steps_per_epoch"]
    assert per_profile["full"] == loaded.train["cnn88"].steps_per_epoch
