"""The real pipeline: `dvc exp run -S profile=smoke` in a temporary git repository.

Slow (about two minutes on 2 cores): every stage is a real process that imports TensorFlow.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import keras
import mlflow
import mlflow.pyfunc
import pytest

from conftest import CONTRACT_METRIC_KEYS, PROJECT_ROOT, table_row
from deeplecture import model_file
from deeplecture.data.cifar10 import CLASS_NAMES as CIFAR10_CLASS_NAMES
from deeplecture.reporting.drift import platform_key
from mlflow_server import mlflow_server as running_mlflow_server
from project_repo import (
    FIRST_RUN_LOG,
    copy_project,
    run_command,
    shared_smoke_run,
    stages_run,
)

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"  # Debian's package; no browser download
# Headless, and quiet: this machine has no network, and Chromium's background services would
# otherwise keep trying to reach theirs.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
SCREENSHOT = PROJECT_ROOT / "reports" / "figures" / "mlflow-compare-runs.png"

VARIANTS = ("cnn74", "cnn79", "cnn84", "cnn88")
# What a change of cnn74's training reruns, as stages_run sorts them.
CNN74_RERUN = sorted(
    ["train@cnn74", "evaluate@cnn74", "export@cnn74", "measure_edge@cnn74", "report"]
)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh clone-like copy of the project, committed, with the smoke pipeline run once
    (`dvc exp run -S profile=smoke`: the session's shared run, copied for this module's changes)."""
    run = shared_smoke_run(tmp_path_factory)
    return copy_project(run, tmp_path_factory.mktemp("project") / "repo")


def test_every_stage_runs_and_writes_the_contract_files(repo: Path) -> None:
    output = (repo / FIRST_RUN_LOG).read_text()
    for stage in ["download@cifar10", "preprocess@cifar10", "foundations", "report"] + [
        f"{kind}@{variant}"
        for kind in ("train", "evaluate", "export", "measure_edge")
        for variant in VARIANTS
    ]:
        assert f"Running stage '{stage}'" in output
    for variant in VARIANTS:
        assert (repo / "models" / "cifar10" / f"{variant}.keras").is_file()
        metrics = json.loads((repo / "metrics" / "cifar10" / f"{variant}.json").read_text())
        for key in CONTRACT_METRIC_KEYS:
            assert key in metrics
        assert metrics["epochs"] == 2 and metrics["test_images"] == 200
        assert all(isinstance(value, int | float | dict) for value in metrics.values())
        made = json.loads(
            (repo / "plots" / "provenance" / "cifar10" / f"{variant}.json").read_text()
        )
        assert made["profile"] == "smoke" and made["backend"] == "tensorflow"
        assert set(made["versions"]) == {"python", "keras", "tensorflow"}  # what trained it
        names = model_file.class_names(repo / "models" / "cifar10" / f"{variant}.keras")
        assert names == CIFAR10_CLASS_NAMES  # the model file says what its outputs mean


def test_the_report_and_dvc_metrics_show_the_same_numbers(repo: Path) -> None:
    shown = json.loads(
        subprocess.run(
            ["dvc", "metrics", "show", "--json"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    report = (repo / "reports" / "results.md").read_text()
    for variant in VARIANTS:
        path = f"metrics/cifar10/{variant}.json"
        written = json.loads((repo / path).read_text())
        from_dvc = shown[""]["data"][path]["data"]  # "" is the workspace
        assert from_dvc["test_accuracy"] == written["test_accuracy"]
        assert table_row(report, f"`{variant}`")[2] == f"{100 * written['test_accuracy']:.2f} %"
    for figure in ("progression.png", "learning_curves/cnn74.png", "confusion/cnn88.png"):
        assert (repo / "reports" / "figures" / figure).is_file()
    assert (repo / "reports" / "figures" / "foundations" / "xor_loss.png").is_file()


def test_every_variant_is_exported_measured_and_in_the_reports_edge_table(repo: Path) -> None:
    report = (repo / "reports" / "results.md").read_text()
    assert "## Edge: forward only, without Keras" in report
    edge_table = report.split("## Edge: forward only, without Keras", 1)[1]
    for variant in VARIANTS:
        folder = repo / "models" / "cifar10" / "edge" / variant
        assert {path.name for path in folder.iterdir()} == {
            "model.onnx", "model.int8.onnx", "model.tflite", "class_names.json",
        }  # fmt: skip
        measured = json.loads(
            (repo / "reports" / "edge" / "cifar10" / f"{variant}.json").read_text()
        )
        formats = measured["formats"]
        assert set(formats) == {"keras", "onnx", "onnx-int8", "litert"}
        assert measured["test_images"] == 200 and measured["latency_calls"] == 50
        for name in ("onnx", "litert"):  # the float exports predict what the .keras file does
            assert formats[name]["top1_agreement"] == 1.0
            assert formats[name]["accuracy"] == formats["keras"]["accuracy"]
        onnx_row = next(
            [cell.strip() for cell in line.strip("|").split("|")]
            for line in edge_table.splitlines()
            if line.startswith(f"| `{variant}`") and "(.onnx)" in line
        )
        assert onnx_row[2] == f"{formats['onnx']['accuracy']:.2%}"
        assert onnx_row[7] == f"{formats['onnx']['latency_ms_median']:.2f} ms"


def test_the_ci_summary_sets_the_smoke_run_beside_the_pinned_smoke_metrics(repo: Path) -> None:
    """The workflow's summary step, on this real smoke run (its data is smaller than the smoke
    profile's, so the numbers move: the summary says so and still succeeds)."""
    summary = run_command(
        ["bash", str(PROJECT_ROOT / "scripts" / "ci" / "summary.sh"),
         str(PROJECT_ROOT / "reports" / "pinned" / "smoke-sample.json")],
        repo,
    )  # fmt: skip
    assert summary.startswith(f"## Smoke metrics on {platform_key()}\n")
    pinned_here = (
        platform_key()
        in json.loads((PROJECT_ROOT / "reports" / "pinned" / "smoke-sample.json").read_text())[
            "platforms"
        ]
    )
    for variant in VARIANTS:
        rows = [line for line in summary.splitlines() if line.startswith(f"| cifar10/{variant} ")]
        assert len(rows) == (2 if pinned_here else 1)  # accuracy and loss, or the values alone
    assert "## Every metric of this run" in summary
    assert re.search(r"^\| metrics/cifar10/cnn88\.json +\|", summary, re.MULTILINE)
    assert "profile" not in summary.split("## Every metric")[1]  # numbers only


def test_the_readmes_exp_show_is_a_table_of_what_changed_and_each_models_accuracy(
    repo: Path,
) -> None:
    readme = (PROJECT_ROOT / "README.md").read_text()
    (line,) = [line for line in readme.splitlines() if line.startswith("dvc exp show --")]
    command = shlex.split(line)
    shown = run_command([*command, "--csv"], repo)
    columns = shown.splitlines()[0].split(",")
    accuracies = [f"metrics/cifar10/{variant}.json:test_accuracy" for variant in VARIANTS]
    assert set(accuracies) <= set(columns)
    assert "profile" in columns  # the smoke run's change against the committed params
    # `dvc exp show` alone: about 180. Here: 4 of DVC's, 4 accuracies, and the params this
    # module's runs changed (SMOKE_SETTINGS replaces two per-profile mappings: 3 columns each).
    assert len(columns) <= 16, columns
    assert not [column for column in columns if column.startswith(("src/", "data/", "models/"))]


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
    assert len({run.data.tags["dvc_invocation"] for run in runs}) == 1  # one pipeline run
    # Each model registered from its evaluate stage, the alias @smoke on the newest version.
    for run in runs:
        variant = run.data.tags["variant"]
        version = client.get_model_version_by_alias(f"cifar10-{variant}", "smoke")
        assert version.run_id == run.info.run_id and version.tags["profile"] == "smoke"
        # the LoggedModel evaluate logged into the training run
        logged = mlflow.get_logged_model(version.source.removeprefix("models:/"))
        assert logged.name == variant and logged.source_run_id == run.info.run_id
    served = mlflow.pyfunc.load_model("models:/cifar10-cnn74@smoke")
    assert list(served.metadata.get_output_schema().input_names())[0] == "class"


@pytest.fixture
def mlflow_server(repo: Path) -> Iterator[str]:
    """A real `mlflow server` on a free loopback port, serving the pipeline's store."""
    with running_mlflow_server(f"sqlite:///{repo / 'mlflow.db'}") as url:
        yield url


def _api(url: str, path: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"{url}/api/2.0/mlflow/{path}", data=data, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


@pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} not installed (.ci/run installs it)"
)
def test_the_mlflow_ui_shows_the_four_runs_side_by_side(repo: Path, mlflow_server: str) -> None:
    from playwright.sync_api import sync_playwright

    experiment = _api(mlflow_server, "experiments/get-by-name?experiment_name=cifar10")[
        "experiment"
    ]
    runs = _api(mlflow_server, "runs/search", {"experiment_ids": [experiment["experiment_id"]]})[
        "runs"
    ]
    names = sorted(run["info"]["run_name"] for run in runs)
    assert names == [f"{variant}-smoke" for variant in VARIANTS]
    metrics = {m["key"] for m in runs[0]["data"]["metrics"]}
    assert {"test_accuracy", "lecture_accuracy", "val_accuracy"} <= metrics

    compare = f"{mlflow_server}/#/compare-runs?" + urllib.parse.urlencode(
        {
            "runs": json.dumps([run["info"]["run_id"] for run in runs]),
            "experiments": json.dumps([experiment["experiment_id"]]),
        }
    )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 2000})
            page.goto(compare)
            for name in names:
                page.get_by_text(name, exact=True).first.wait_for(timeout=60_000)
            assert "test_accuracy" in page.inner_text("body")
            # The screenshot shows the runs' names, params and metrics side by side: close the
            # assistant panel and bring the run details to the top.
            page.get_by_label("Close").first.click(timeout=10_000)
            page.get_by_text("Run details", exact=True).first.evaluate("e => e.scrollIntoView()")
            page.get_by_text("test_accuracy", exact=True).last.wait_for(timeout=30_000)
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOT))
        finally:
            browser.close()
    assert SCREENSHOT.stat().st_size > 10_000


def test_the_written_accuracy_is_a_fresh_evaluation_of_the_saved_file(repo: Path) -> None:
    import numpy as np

    with np.load(repo / "data" / "processed" / "cifar10" / "test.npz") as test:
        images, onehot = test["images"], keras.utils.to_categorical(test["labels"], 10)
    for variant in VARIANTS:
        model = keras.saving.load_model(repo / "models" / "cifar10" / f"{variant}.keras")
        fresh = model.evaluate(images, onehot, verbose=0, return_dict=True)
        written = json.loads((repo / "metrics" / "cifar10" / f"{variant}.json").read_text())
        assert written["test_accuracy"] == pytest.approx(fresh["accuracy"], abs=1e-6)


def test_a_second_run_skips_everything_and_one_epoch_change_reruns_one_variant(repo: Path) -> None:
    # Only the report reruns (always_changed: it reads Fashion-MNIST's metrics when they exist).
    again = run_command(["dvc", "repro"], repo)
    assert stages_run(again) == ["report"]

    # The user's value wins over the smoke profile's 2 epochs, and is what DVC and MLflow show.
    changed = run_command(["dvc", "exp", "run", "-S", "train.cnn74.epochs=1"], repo)
    assert stages_run(changed) == CNN74_RERUN
    assert json.loads((repo / "metrics" / "cifar10" / "cnn74.json").read_text())["epochs"] == 1
    import dvc.api

    assert dvc.api.params_show(repo=str(repo))["train"]["cnn74"]["epochs"] == 1  # dvc exp show's

    # Back to the per-profile value: train@cnn74 trains again, as a complete run of its own. The
    # histories are committed (cache: false) so that a fresh clone draws them, and DVC's run
    # cache restores only stages whose outputs are all cached.
    again = run_command(
        ["dvc", "exp", "run", "-S", "train.cnn74.epochs={full: 25, smoke: 2}"], repo
    )
    assert stages_run(again) == CNN74_RERUN
    mlflow.set_tracking_uri(f"sqlite:///{repo / 'mlflow.db'}")
    cnn74_runs = mlflow.search_runs(
        experiment_names=["cifar10"], filter_string="tags.variant = 'cnn74'", output_format="list"
    )
    assert sorted(run.data.params["epochs"] for run in cnn74_runs) == ["1", "2", "2"]
    assert all(
        run.info.status == "FINISHED" and "test_accuracy" in run.data.metrics for run in cnn74_runs
    )


def _lock(repo: Path) -> dict:
    from ruamel.yaml import YAML

    return YAML(typ="safe").load((repo / "dvc.lock").read_text())


def test_two_queued_experiments_in_parallel_log_to_the_root_store(repo: Path) -> None:
    for seed in (101, 102):
        run_command(
            ["dvc", "exp", "run", "--queue", "-S", f"train.cnn74.seed={seed}", "evaluate@cnn74"],
            repo,
        )
    run_command(["dvc", "queue", "start", "-j", "2"], repo)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        status = run_command(["dvc", "queue", "status"], repo)
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(5)
    run_command(["dvc", "queue", "stop", "--kill"], repo)
    assert status.count("Success") == 2, status

    mlflow.set_tracking_uri(f"sqlite:///{repo / 'mlflow.db'}")
    runs = [
        run
        for run in mlflow.search_runs(experiment_names=["cifar10"], output_format="list")
        if run.data.params["seed"] in ("101", "102")
    ]
    assert sorted(run.data.params["seed"] for run in runs) == ["101", "102"]
    assert all(
        run.info.status == "FINISHED" and "test_accuracy" in run.data.metrics for run in runs
    )
    assert not list((repo / ".dvc" / "tmp").rglob("mlflow.db"))  # none left in a temp copy


def test_a_killed_temp_experiment_resumes_from_its_checkpoint_at_the_root(repo: Path) -> None:
    """`dvc exp run --temp` trains in a copy that vanishes with it; its checkpoint must not."""
    import psutil

    command = [
        "dvc", "exp", "run", "--temp", "-S", "train.cnn74.seed=7401", "-S", "train.cnn74.epochs=6",
        "train@cnn74",
    ]  # fmt: skip
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    first = subprocess.Popen(
        command, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    state = None
    deadline = time.monotonic() + 300
    while state is None and first.poll() is None and time.monotonic() < deadline:
        for path in (repo / "checkpoints").glob("cnn74-*/state.json"):
            saved = json.loads(path.read_text())
            if saved["settings"]["train"]["seed"] == 7401 and saved["epochs_done"] >= 1:
                state = saved
        time.sleep(0.2)
    assert state is not None, first.communicate()[0][-3000:]
    # The Python process itself: where DVC runs the command through /bin/sh (dash, when SHELL
    # is unset, as in CI) the shell stays as its parent, and a SIGTERM to the shell alone would
    # orphan the trainer.
    trainers = [
        child
        for child in psutil.Process(first.pid).children(recursive=True)
        if "stages/train.py" in " ".join(child.cmdline())
    ]
    (trainer,) = [each for each in trainers if not set(each.children()) & set(trainers)]
    trainer.terminate()  # SIGTERM, as a user's kill or a CI timeout would send
    output, _ = first.communicate(timeout=120)
    assert first.returncode != 0 and "rerun to resume" in output

    resumed = run_command(command, repo)
    assert "resuming cnn74 after epoch" in resumed
    mlflow.set_tracking_uri(f"sqlite:///{repo / 'mlflow.db'}")
    (run,) = mlflow.search_runs(
        experiment_names=["cifar10"], filter_string="params.seed = '7401'", output_format="list"
    )
    assert run.info.run_id == state["run_id"] and run.info.status == "FINISHED"
    steps = [m.step for m in mlflow.MlflowClient().get_metric_history(run.info.run_id, "loss")]
    assert sorted(steps) == list(range(6))


def test_a_second_dvc_repro_in_the_same_workspace_fails_fast_on_the_lock(repo: Path) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    first = subprocess.Popen(
        ["dvc", "repro", "-f", "train@cnn84"], cwd=repo, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert "Running stage" in first.stdout.readline() + first.stdout.readline()
    started = time.monotonic()
    second = subprocess.run(["dvc", "repro"], cwd=repo, env=env, capture_output=True, text=True)
    assert second.returncode != 0
    assert "lock" in (second.stdout + second.stderr).lower()
    assert time.monotonic() - started < 60
    first.communicate(timeout=600)
    assert first.returncode == 0
    assert "train@cnn84" in _lock(repo)["stages"]  # dvc.lock still parses and holds the stage
    run_command(["dvc", "status"], repo)


def test_a_diverging_run_exits_non_zero_and_dvc_does_not_record_it(repo: Path) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    recorded_before = _lock(repo)["stages"]["train@cnn74"]
    result = subprocess.run(
        ["dvc", "exp", "run", "-S", "train.cnn74.learning_rate=1e9", "train@cnn74"],
        cwd=repo, env=env, capture_output=True, text=True,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "NaN" in output and "no model was saved" in output
    assert _lock(repo)["stages"]["train@cnn74"] == recorded_before
    assert not (repo / "models" / "cifar10" / "cnn74.keras").exists()
    mlflow.set_tracking_uri(f"sqlite:///{repo / 'mlflow.db'}")
    latest = mlflow.search_runs(
        experiment_names=["cifar10"], filter_string="tags.variant = 'cnn74'",
        order_by=["attributes.start_time DESC"], max_results=1, output_format="list",
    )[0]  # fmt: skip
    assert latest.info.status == "FAILED" and latest.data.params["learning_rate"] == "1000000000.0"
