"""Seed sweeps: the statistics, the report's section from a collected sweep, the spread-derived
drift tolerances, the DVC commands a sweep queues, and one real sweep of the smoke profile."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import mlflow
import pytest

from conftest import PROJECT_ROOT, table_row, write_params
from deeplecture.params import load_params
from deeplecture.reporting import drift
from deeplecture.reporting.build import build_report
from deeplecture.reporting.results import planned_variants
from deeplecture.sweeps import cli as sweep_cli
from deeplecture.sweeps import stats
from deeplecture.sweeps.queue import SweepError, SweepPlan, queue_statuses
from project_repo import make_project_repo, run_command

# Student's t quantiles for a two-sided 95 % interval, from a printed table (not from scipy).
T_975 = {2: 4.303, 4: 2.776}


def _run(variant: str, seed: int, accuracy: float, loss: float = 1.0, **scale: object) -> dict:
    """A run as `deeplecture-sweep collect` writes it."""
    return {
        "variant": variant, "dataset": "cifar10", "seed": seed, "test_accuracy": accuracy,
        "test_loss": loss, "profile": "smoke", "epochs": 2, "train_images": 1800,
        "test_images": 1000, "data_source": "/data/cifar10-jpeg.tar.gz", "backend": "tensorflow",
        "device": "CPU (x86_64, 2 cores)", "run_id": f"{variant}{seed}", **scale,
    }  # fmt: skip


def _write_sweep(folder: Path, name: str, runs: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps({"sweep": name, "collected": "now", "runs": runs}))
    return path


def _section(report: str, name: str) -> str:
    start = report.index(f"## Seed sweep `{name}`")
    end = report.find("\n## ", start + 1)
    return report[start : end if end > 0 else None]


def _report_with_sweeps(root: Path, sweeps: Path) -> str:
    planned = planned_variants(load_params(write_params(root, {})))
    (root / "metrics").mkdir(exist_ok=True)
    build_report(
        root / "metrics", root / "plots", root / "none.json", root / "reports", planned, sweeps
    )
    return (root / "reports" / "results.md").read_text()


def test_a_spread_is_the_mean_the_sample_std_and_a_student_t_interval() -> None:
    accuracy = stats.spread([0.70, 0.72, 0.74])
    assert accuracy.n == 3 and accuracy.mean == pytest.approx(0.72)
    assert accuracy.std == pytest.approx(0.02)  # n - 1 in the denominator
    half = T_975[2] * 0.02 / math.sqrt(3)
    assert accuracy.interval == pytest.approx((0.72 - half, 0.72 + half), abs=1e-4)


def test_one_value_has_no_spread_and_no_verdict() -> None:
    alone = stats.spread([0.7])
    assert alone.std is None and alone.interval is None
    step = stats.gain(alone, stats.spread([0.8, 0.82]))
    assert step.difference == pytest.approx(0.11)
    assert step.interval is None and step.p_value is None and step.beyond_noise is None


def test_welchs_interval_decides_whether_a_gain_is_beyond_noise() -> None:
    before = stats.spread([0.60, 0.61, 0.62, 0.63, 0.64])
    clear = stats.gain(before, stats.spread([0.70, 0.71, 0.72, 0.73, 0.74]))
    # Equal spreads and sizes: Welch's df is 8, its standard error sqrt(2 s^2 / n).
    se = math.sqrt(2 * before.std**2 / 5)
    assert clear.difference == pytest.approx(0.10)
    assert clear.interval == pytest.approx((0.10 - 2.306 * se, 0.10 + 2.306 * se), abs=1e-4)
    assert clear.beyond_noise is True and clear.p_value < 0.001
    noise = stats.gain(before, stats.spread([0.605, 0.625, 0.615, 0.645, 0.63]))
    assert noise.beyond_noise is False and noise.p_value > 0.05


def test_the_report_section_shows_each_variant_from_the_runs(tmp_path: Path) -> None:
    runs = [_run("cnn74", s, a) for s, a in enumerate([0.60, 0.62, 0.64])]
    runs += [_run("cnn79", s, a) for s, a in enumerate([0.70, 0.71, 0.75])]
    _write_sweep(tmp_path / "sweeps", "s3", runs)
    section = _section(_report_with_sweeps(tmp_path, tmp_path / "sweeps"), "s3")

    cnn74 = table_row(section[section.index("| model") :], "`cnn74`")
    half = T_975[2] * 0.02 / math.sqrt(3)
    assert cnn74[:5] == ["`cnn74`", "3", "62.00 %", "2.00 pt", cnn74[4]]
    low, high = (float(x) for x in cnn74[4].strip("[] %").split(", "))
    assert (low, high) == pytest.approx((100 * (0.62 - half), 100 * (0.62 + half)), abs=0.01)
    assert cnn74[6] == "0: 60.00, 1: 62.00, 2: 64.00"
    step = table_row(section[section.index("| step") :], "`cnn74` → `cnn79`")
    assert step[1] == "+10.00 pt" and step[4] in ("yes", "no: within seed noise")
    assert "Welch's t-test" in section
    assert "profile smoke; epochs 2; training images 1,800; test images 1,000" in section
    assert "CIFAR-10 re-encoded as JPEG" in section
    assert (tmp_path / "reports" / "figures" / "sweeps" / "s3.png").stat().st_size > 10_000


def test_a_sweep_of_one_seed_says_no_spread_is_known(tmp_path: Path) -> None:
    _write_sweep(tmp_path / "sweeps", "one", [_run("cnn74", 0, 0.6), _run("cnn79", 0, 0.7)])
    section = _section(_report_with_sweeps(tmp_path, tmp_path / "sweeps"), "one")
    row = table_row(section[section.index("| model") :], "`cnn74`")
    assert row[1] == "1" and row[3] == "no spread known (n = 1)" and row[4] == "—"
    assert "unknown: a variant has n = 1" in section
    assert "± 0" not in section and "| 0.00 pt |" not in section


def test_drift_tolerances_become_two_sigma_of_a_sweep_of_the_pins_profile(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from test_drift import _metrics

    metrics, pinned = tmp_path / "metrics", tmp_path / "pinned.json"
    _metrics(metrics, "cnn74", 0.30, 1.90)
    assert drift.main(["pin", "--pinned", str(pinned), "--metrics", str(metrics)]) == 0
    # seeds spread by 0.005 (std): 2 sigma = 0.01, tighter than the fixed 0.02
    seeds = [(0.295, 1.8), (0.30, 1.9), (0.305, 2.0)]
    runs = [_run("cnn74", seed, accuracy, loss) for seed, (accuracy, loss) in enumerate(seeds)]
    sweep = _write_sweep(tmp_path / "sweeps", "smoke-seeds", runs)
    _metrics(metrics, "cnn74", 0.315, 1.90)  # +0.015: within the fixed 0.02, beyond 2 sigma
    check = ["check", "--pinned", str(pinned), "--metrics", str(metrics)]
    assert drift.main(check) == 0
    capsys.readouterr()
    assert drift.main([*check, "--spread", str(sweep)]) == 1
    table = capsys.readouterr().out
    (accuracy,) = [line for line in table.splitlines() if "test_accuracy" in line]
    assert "±0.01 | 2σ of smoke-seeds, n=3 | MOVED" in accuracy
    (loss,) = [line for line in table.splitlines() if "test_loss" in line]
    assert "±0.2 | 2σ of smoke-seeds, n=3 | ok" in loss


def test_a_sweep_of_another_profile_cannot_set_the_tolerances(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from test_drift import _metrics

    metrics, pinned = tmp_path / "metrics", tmp_path / "pinned.json"
    _metrics(metrics, "cnn74", 0.30, 1.90)
    drift.main(["pin", "--pinned", str(pinned), "--metrics", str(metrics)])
    sweep = _write_sweep(tmp_path, "full", [_run("cnn74", s, 0.7, profile="full") for s in (0, 1)])
    check = ["check", "--pinned", str(pinned), "--metrics", str(metrics), "--spread", str(sweep)]
    assert drift.main(check) == 1
    assert "measured the full profile, the pin holds the smoke profile" in capsys.readouterr().err


def test_a_sweep_queues_one_experiment_per_seed_with_every_variants_seed() -> None:
    plan = SweepPlan(
        "s", {"cnn74": "cifar10", "fashion": "fashion_mnist"}, (0, 1), ("profile=smoke",)
    )
    command = plan.queue_command(1)
    assert command[:6] == ["dvc", "exp", "run", "--queue", "--name", "s-seed1"]
    settings = [command[i + 1] for i, word in enumerate(command) if word == "-S"]
    assert settings == ["sweep=s", "profile=smoke", "train.cnn74.seed=1", "train.fashion.seed=1"]
    assert command[-2:] == ["evaluate@cnn74", "fashion_mnist/dvc.yaml:evaluate"]
    assert plan.experiments == ["s-seed0", "s-seed1"]


def test_a_together_sweep_is_one_experiment_with_every_seed_and_the_users_settings() -> None:
    plan = SweepPlan("s", {"cnn74": "cifar10", "cnn88": "cifar10"}, (3, 4), ("profile=smoke",))
    command = plan.together_command()
    assert command[:8] == [
        "dvc", "exp", "run", "--temp", "--name", "s-together", "--copy-paths", "sweeps/dvc.yaml",
    ]  # fmt: skip
    settings = [command[i + 1] for i, word in enumerate(command) if word == "-S"]
    assert settings == ["sweep=s", "together.seeds=[3, 4]", "profile=smoke"]
    assert command[-2:] == ["sweeps/dvc.yaml:together@cnn74", "sweeps/dvc.yaml:together@cnn88"]
    with pytest.raises(SweepError, match=r"CIFAR-10 variants only; drop fashion \(Fashion-MNIST\)"):
        SweepPlan("s", {"fashion": "fashion_mnist"}, (0,), ()).together_command()


@pytest.mark.parametrize("setting", ["together.seeds=[1]", "train.cnn74.seed=3", "sweep=x"])
def test_a_sweep_refuses_a_setting_it_makes_itself(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    setting: str,
) -> None:
    write_params(tmp_path, {})
    monkeypatch.chdir(tmp_path)
    argv = ["run", "s", "--seeds", "2", "--together", "-S", setting]
    assert sweep_cli.main(argv) == 1
    assert capsys.readouterr().err == (
        f"error: -S {setting}: the sweep sets {setting.split('=')[0]} itself\n"
    )


def test_queue_statuses_are_read_from_dvc_queue_status() -> None:
    output = (
        "Task     Name     Created    Status\n"
        "ce77d60  s-seed0  07:35 AM   Success\n"
        "4277c1f  s-seed1  07:35 AM   Running\n"
        "\nWorker status: 1 active, 0 idle\n"
    )
    assert queue_statuses(output, ["s-seed0", "s-seed1", "s-seed2"]) == {
        "s-seed0": "Success", "s-seed1": "Running", "s-seed2": "Unknown",
    }  # fmt: skip


def _exp_show_accuracies(repo: Path, sweep: str) -> dict[int, float]:
    """seed -> test accuracy of cnn74, as `dvc exp show --json` reports the sweep's experiments."""
    found = {}
    for baseline in json.loads(run_command(["dvc", "exp", "show", "--json"], repo)):
        for experiment in baseline.get("experiments") or []:
            for revision in experiment.get("revs") or []:
                if not (revision.get("name") or "").startswith(f"{sweep}-seed"):
                    continue
                data = revision["data"]
                params = data["params"]["params.yaml"]["data"]
                metrics = data["metrics"]["metrics/cifar10/cnn74.json"]["data"]
                found[params["train"]["cnn74"]["seed"]] = metrics["test_accuracy"]
    return found


@pytest.mark.slow
def test_a_smoke_sweep_of_three_seeds_reports_n_3_with_the_runs_own_metrics(
    tmp_path: Path,
) -> None:
    for folder in ("reports", "metrics", "plots"):  # the report stage's committed inputs
        shutil.copytree(PROJECT_ROOT / folder, tmp_path / folder)
    repo = make_project_repo(tmp_path)
    run_command(
        ["deeplecture-sweep", "run", "smoke3", "--seeds", "3", "--variants", "cnn74",
         "-S", "profile=smoke", "-S", "train.cnn74.epochs=1"],
        repo,
    )  # fmt: skip

    summary = json.loads((repo / "reports" / "sweeps" / "smoke3.json").read_text())
    by_seed = {run["seed"]: run["test_accuracy"] for run in summary["runs"]}
    assert by_seed == _exp_show_accuracies(repo, "smoke3")  # the runs' own metrics files
    mlflow.set_tracking_uri(f"sqlite:///{repo / 'mlflow.db'}")
    tagged = mlflow.search_runs(
        experiment_names=["cifar10"], filter_string="tags.sweep = 'smoke3'", output_format="list"
    )
    assert {int(r.data.params["seed"]): r.data.metrics["test_accuracy"] for r in tagged} == by_seed

    section = _section((repo / "reports" / "results.md").read_text(), "smoke3")
    row = table_row(section[section.index("| model") :], "`cnn74`")
    mean = sum(by_seed.values()) / 3
    assert row[1] == "3" and row[2] == f"{100 * mean:.2f} %"
    assert row[6] == ", ".join(f"{seed}: {100 * by_seed[seed]:.2f}" for seed in (0, 1, 2))

    # The same sweep with the seeds together: one experiment, one run and model file per seed.
    # Under TensorFlow the together stage trains them one after another exactly as the train
    # stage would, so each seed's numbers are the one-by-one sweep's, bit for bit.
    run_command(
        ["deeplecture-sweep", "run", "smoke3t", "--seeds", "3", "--together", "--variants",
         "cnn74", "-S", "profile=smoke", "-S", "train.cnn74.epochs=1"],
        repo,
    )  # fmt: skip
    together = json.loads((repo / "reports" / "sweeps" / "smoke3t.json").read_text())
    assert {run["seed"]: run["test_accuracy"] for run in together["runs"]} == by_seed
    assert {run["trained"] for run in together["runs"]} == {"together (one by one)"}
    tagged = mlflow.search_runs(
        experiment_names=["cifar10"], filter_string="tags.sweep = 'smoke3t'", output_format="list"
    )
    assert sorted(int(run.data.params["seed"]) for run in tagged) == [0, 1, 2]
    assert all(run.outputs.model_outputs for run in tagged)  # each its own LoggedModel
    # the sweep brought each seed's folder into the workspace, from the experiment's commit
    folders = repo / "models" / "sweeps" / "cifar10" / "cnn74"
    for seed in (0, 1, 2):
        metrics = json.loads((folders / f"seed{seed}" / "metrics.json").read_text())
        assert metrics["test_accuracy"] == by_seed[seed]
        assert (folders / f"seed{seed}" / "model.keras").is_file()
    section = _section((repo / "reports" / "results.md").read_text(), "smoke3t")
    row = table_row(section[section.index("| model") :], "`cnn74`")
    assert row[1] == "3" and row[2] == f"{100 * mean:.2f} %"
    assert "seeds trained together (one by one)" in section


@pytest.mark.parametrize(
    ("first_seed", "seeds"), [(-5, 3), (2**32 - 2, 3)], ids=["negative", "past-2**32-1"]
)
def test_a_sweep_refuses_seeds_that_train_seed_cannot_take_in_one_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    first_seed: int,
    seeds: int,
) -> None:
    """Refused before anything is queued, not when each experiment's params check fails."""
    write_params(tmp_path, {})
    monkeypatch.chdir(tmp_path)
    argv = ["queue", "s", "--seeds", str(seeds), "--first-seed", str(first_seed)]
    assert sweep_cli.main(argv) == 1
    error = capsys.readouterr().err
    last = first_seed + seeds - 1
    assert error == (
        f"error: --first-seed {first_seed} --seeds {seeds}: seeds {first_seed} ... {last} "
        "are not all in 0 ... 4294967295, the range of train.<variant>.seed\n"
    )
