"""The typed params loader: the shipped file is valid, bad files fail early and name the key."""

from __future__ import annotations

import re
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import shipped_params_text, write_params
from deeplecture.params import MAX_SEED, ParamsError, load_params


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
    assert (cnn88.augmentation, cnn88.validation, cnn88.lr_schedule) == (
        "lecture",
        "test",
        "lecture88",
    )
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


def _alias_bomb(levels: int = 9, width: int = 9, *, mappings: bool) -> str:
    """A flow-style YAML value of `levels` anchored levels, each `width` aliases of the one
    below: a few hundred bytes that stand for width**levels leaves once expanded."""
    parts = ["&l0 {leaf: lol}" if mappings else "&l0 [lol]"]
    for level in range(1, levels + 1):
        aliases = [f"*l{level - 1}"] * width
        if mappings:
            inner = "{" + ", ".join(f"k{i}: {alias}" for i, alias in enumerate(aliases)) + "}"
        else:
            inner = "[" + ", ".join(aliases) + "]"
        parts.append(f"&l{level} {inner}")
    if mappings:
        return "{" + ", ".join(f"l{level}: {part}" for level, part in enumerate(parts)) + "}"
    return "[" + ", ".join(parts) + "]"


def _load_in_a_subprocess(path: Path) -> subprocess.CompletedProcess:
    """`load_params(path)` in a child limited to 20 s and 2 GiB, so a loader that expands the
    document fails this test instead of taking the machine's memory."""
    script = (
        "import sys\n"
        "from deeplecture.params import ParamsError, load_params\n"
        "try:\n    load_params(sys.argv[1])\n"
        "except ParamsError as error:\n    sys.exit(f'error: {error}')\n"
    )

    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2 * 2**30, 2 * 2**30))

    try:
        return subprocess.run(
            [sys.executable, "-c", script, str(path)],
            capture_output=True, text=True, timeout=20, preexec_fn=limit_memory,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail(f"load_params({path}) still ran after 20 s: the aliases were expanded")


@pytest.mark.parametrize(
    ("edit", "where"),
    [
        # an unknown key of nested mappings (the profile resolver copied it before refusing it)
        (lambda text: text + f"bomb: {_alias_bomb(mappings=True)}\n", "unknown key"),
        # a known key of free-form lists (validation quoted it whole in its error line)
        (
            lambda text: text.replace("    cnn74: []", f"    cnn74: {_alias_bomb(mappings=False)}"),
            "known key",
        ),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_an_alias_bomb_is_refused_in_one_line_naming_the_file(
    tmp_path: Path, edit, where: str
) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(edit(shipped_params_text()))
    assert path.stat().st_size < 20_000  # a few hundred bytes for 9**9 values
    loaded = _load_in_a_subprocess(path)
    assert loaded.returncode == 1
    message = loaded.stderr.strip()
    assert "\n" not in message
    assert message.startswith(f"error: {path}:")
    assert "aliases expand it to more than 100,000 YAML nodes" in message


def test_a_recursive_alias_is_refused_naming_the_file(tmp_path: Path) -> None:
    text = shipped_params_text().replace(
        "    checksum: auto\n  fashion_mnist:",
        "    checksum: &loop {again: *loop}\n  fashion_mnist:",
    )
    (tmp_path / "params.yaml").write_text(text)
    with pytest.raises(ParamsError, match=r"params\.yaml:\d+:\d+: a recursive alias"):
        load_params(tmp_path / "params.yaml")


def test_anchors_and_merge_keys_still_load_as_written_out(tmp_path: Path) -> None:
    """Aliases within the bound are plain YAML: `<<: *cnn74` gives cnn79 cnn74's settings."""
    plain = load_params(write_params(tmp_path, {}))
    text = shipped_params_text().replace("\n  cnn74:", "\n  cnn74: &cnn74", 1)
    start = text.index("\n  cnn79:")  # under train:, indented by two
    end = text.index("\n  cnn84:")
    merged = "\n  cnn79:\n    <<: *cnn74\n    lecture_accuracy: 0.79\n    seed: 79"
    (tmp_path / "params.yaml").write_text(text[:start] + merged + text[end:])
    assert load_params(tmp_path / "params.yaml") == plain


def test_unknown_keys_are_named_before_profiles_are_resolved(tmp_path: Path) -> None:
    """An unknown key is refused as unknown, whatever its value: it is never resolved."""
    path = write_params(tmp_path, {"train.cnn74.epochz": {"smoke": 2}, "extra": {"full": 1}})
    with pytest.raises(ParamsError) as raised:
        load_params(path)
    assert str(raised.value) == f"{path}: train.cnn74.epochz: unknown key; extra: unknown key"


def test_an_unknown_key_inside_a_per_profile_entry_is_named_once(tmp_path: Path) -> None:
    shipped = load_params(write_params(tmp_path, {})).edge.model_dump()
    edge = {profile: {**shipped, "latency_runs": 5} for profile in ("full", "smoke")}
    with pytest.raises(ParamsError, match=r"params\.yaml: edge\.latency_runs: unknown key$"):
        load_params(write_params(tmp_path, {"edge": edge}))


SEED_KEYS = ("train.cnn74.seed", "train.fashion.seed", "preprocess.cifar10.shuffle_seed",
             "edge.calibration_seed")  # fmt: skip


@pytest.mark.parametrize("key", SEED_KEYS)
@pytest.mark.parametrize("seed", [-5, MAX_SEED + 1])
def test_a_seed_outside_0_to_2_32_minus_1_is_named_by_its_key(
    tmp_path: Path, key: str, seed: int
) -> None:
    """numpy's seeding, which Keras' set_random_seed calls, takes 0 ... 2**32 - 1 only."""
    with pytest.raises(ParamsError, match=re.escape(key) + ": Input should be "):
        load_params(write_params(tmp_path, {key: seed}))


@pytest.mark.parametrize("key", SEED_KEYS)
def test_the_seed_range_ends_at_2_32_minus_1(tmp_path: Path, key: str) -> None:
    params = load_params(write_params(tmp_path, {key: MAX_SEED}))
    section, *rest = key.split(".")
    value = getattr(params, section)
    for part in rest:
        value = value[part] if isinstance(value, dict) else getattr(value, part)
    assert value == 2**32 - 1


def test_a_bad_value_is_quoted_short_in_the_error_line(tmp_path: Path) -> None:
    path = write_params(tmp_path, {"train.cnn74.batch_size": list(range(10_000))})
    with pytest.raises(
        ParamsError, match=r"train\.cnn74\.batch_size: .*\(got \[0, 1, 2, 3, \.\.\.\]\)"
    ):
        load_params(path)
