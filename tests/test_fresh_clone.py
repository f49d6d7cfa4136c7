"""What a fresh clone shows before anything ran: the committed results, cleanly, with the
variants not yet run (cnn88 at full settings, Fashion-MNIST) simply absent."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import PROJECT_ROOT
from project_repo import run_command

TERMINAL_WIDTH = 160


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The files a commit of this working tree holds, in a new repository (as `git clone`
    would give them, uncommitted edits included so that the test checks this tree)."""
    root = tmp_path_factory.mktemp("clone")
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    for name in filter(None, listed.split("\0")):
        source = PROJECT_ROOT / name
        if source.is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / name)
    for command in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "clone"]):
        run_command(command, root)
    return root


def _dvc(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["dvc", *args], cwd=cwd, capture_output=True, text=True, check=False)


def test_dvc_metrics_show_prints_the_committed_models_in_a_table_that_fits(clone: Path) -> None:
    shown = _dvc(["metrics", "show"], clone)
    assert shown.returncode == 0 and shown.stderr == "", shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].split()[:3] == ["Path", "accuracy_gap", "epochs"]
    committed = sorted(path.stem for path in (clone / "metrics" / "cifar10").glob("*.json"))
    assert [line.split()[0] for line in lines[1:]] == [
        f"metrics/cifar10/{name}.json" for name in committed
    ]
    assert max(len(line) for line in lines) <= TERMINAL_WIDTH
    assert all(
        value.lstrip("-").replace(".", "").isdigit()
        for line in lines[1:]
        for value in line.split()[1:]
    )  # fmt: skip  (numbers only: no backend or device strings)


def test_dvc_plots_show_draws_what_exists_and_reports_no_missing_file(clone: Path) -> None:
    shown = _dvc(["plots", "show", "--json"], clone)
    assert shown.returncode == 0, shown.stderr
    plots = json.loads(shown.stdout)
    assert plots.get("errors") is None
    committed = sorted(path.stem for path in (clone / "metrics" / "cifar10").glob("*.json"))
    drawn = set(plots["data"])
    for name in committed:
        assert f"plots/predictions/cifar10/{name}.csv" in drawn
        assert f"plots/per_class/cifar10/{name}.csv" in drawn
    assert "reports/figures/progression.png" in drawn


def test_the_committed_report_marks_what_has_not_run(clone: Path) -> None:
    report = (clone / "reports" / "results.md").read_text()
    committed = {path.stem for path in (clone / "metrics" / "cifar10").glob("*.json")}
    for variant in {"cnn74", "cnn79", "cnn84", "cnn88"} - committed:
        # "has not run yet", or "has not run in `metrics/` yet" where a measured platform has
        said = [line for line in report.splitlines() if line.startswith(f"- `{variant}` has not")]
        assert len(said) == 1 and said[0].endswith(": `dvc repro`."), said
    if not (clone / "metrics" / "fashion_mnist" / "fashion.json").exists():
        assert "- `fashion` has not run yet: `dvc repro fashion_mnist/dvc.yaml`." in report
