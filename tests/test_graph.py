"""The pipeline graph tells the truth: each stage depends on every file of code it runs.

DVC decides what to rerun from each stage's `deps`. A file that a stage imports but does not
declare can change the stage's results while `dvc status` says everything is up to date; one it
declares but never imports reruns hours of training for nothing. So a stage's code deps are
derived from its imports (scripts/stage_deps.py writes them) and checked here.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from dvc.repo import Repo

from conftest import PROJECT_ROOT

sys.path.insert(0, str(PROJECT_ROOT / "scripts"))
from stage_deps import code_deps, import_closure, rewrite, stale_pipelines, uncovered  # noqa: E402

SOURCE_ROOT = PROJECT_ROOT / "src"
CODE_FOLDERS = ("src", "stages")


def _stages() -> list:
    """Every stage of both pipelines, with DVC's own templating resolved."""
    return list(Repo(str(PROJECT_ROOT)).index.stages)


def _script(stage) -> Path:
    match = re.search(r"\bpython\s+(\S+\.py)\b", stage.cmd)
    assert match, f"{stage.addressing}: no `python <script>.py` in its cmd {stage.cmd!r}"
    return Path(stage.wdir) / match.group(1)


def _dep_paths(stage) -> list[Path]:
    return [Path(dep.fs_path) for dep in stage.deps]


@pytest.mark.parametrize("stage", _stages(), ids=lambda stage: stage.addressing)
def test_a_stage_depends_on_every_file_its_script_imports(stage) -> None:
    script = _script(stage)
    deps = _dep_paths(stage)
    assert script in deps, f"{stage.addressing}: its own script {script} is not in its deps"
    missing = uncovered(import_closure(script, SOURCE_ROOT), deps)
    assert not missing, f"{stage.addressing} imports, but does not list in its deps: " + ", ".join(
        str(path.relative_to(PROJECT_ROOT)) for path in missing
    )


def test_every_pipeline_lists_exactly_the_code_deps_its_stages_import() -> None:
    stale = stale_pipelines()
    assert not stale, f"{stale}: run `python scripts/stage_deps.py` to derive them again"


@pytest.mark.parametrize("stage", _stages(), ids=lambda stage: stage.addressing)
def test_a_stage_declares_no_code_it_does_not_import(stage) -> None:
    code = [p for p in _dep_paths(stage) if p.is_relative_to(SOURCE_ROOT)]
    derived = [PROJECT_ROOT / dep for dep in code_deps(_script(stage), SOURCE_ROOT)]
    assert sorted(code) == sorted(derived), stage.addressing


def test_the_derived_deps_replace_a_stages_code_lines_and_keep_the_rest() -> None:
    pipeline = (
        "stages:\n"
        "  report:\n"
        "    cmd: python stages/report.py --out reports\n"
        "    deps:\n"
        "      - stages/report.py\n"
        "      - src/deeplecture/reporting   # a stale folder\n"
        "      - metrics/cifar10\n"
        "      - src/deeplecture/sweeps/stats.py\n"
        "    always_changed: true\n"
    )
    derived = rewrite(pipeline)
    lines = derived.splitlines()
    code = [line.strip()[2:] for line in lines if "src/deeplecture/" in line]
    assert code == code_deps(PROJECT_ROOT / "stages/report.py")
    assert "src/deeplecture/reporting/results.py" in code
    assert "src/deeplecture/reporting" not in code  # report does not import drift.py
    assert lines[5].strip() == "- src/deeplecture/atomic.py"  # where the first code line was
    assert "      - metrics/cifar10" in lines and lines[-1] == "    always_changed: true"
    assert rewrite(derived) == derived


def test_the_together_template_depends_on_every_file_its_script_imports() -> None:
    """sweeps/together.yaml is a pipeline only inside its experiment (deeplecture-sweep copies
    it to sweeps/dvc.yaml there), so DVC's index above never holds it: checked here by hand."""
    from ruamel.yaml import YAML

    template = YAML(typ="safe").load((PROJECT_ROOT / "sweeps" / "together.yaml").read_text())
    stage = template["stages"]["together"]["do"]
    assert stage["wdir"] == ".."  # paths are the root's
    deps = [PROJECT_ROOT / dep for dep in stage["deps"]]
    script = PROJECT_ROOT / re.search(r"\bpython\s+(\S+\.py)\b", stage["cmd"]).group(1)
    assert script in deps
    missing = uncovered(import_closure(script, SOURCE_ROOT), deps)
    assert not missing, [str(path.relative_to(PROJECT_ROOT)) for path in missing]
    assert all(dep.exists() for dep in deps if dep.relative_to(PROJECT_ROOT).parts[0] != "data")


def test_no_pipeline_of_the_workspace_holds_a_stage_that_only_a_sweep_runs() -> None:
    # Never run in a clone, it would make `dvc status` list it and `dvc repro --all-pipelines`
    # run it without seeds.
    assert not any(stage.addressing.startswith("sweeps/") for stage in _stages())


# What serves and scores a model: the evaluate stage logs the model (served_model.py), so a change
# to the serving code (an image decoder, say) reruns no training.
SERVING_CODE = ("predict.py", "evaluation.py", "confusion.py", "served_model.py",
                "served_model_code.py")  # fmt: skip


@pytest.mark.parametrize(
    "stage",
    [stage for stage in _stages() if "stages/train.py" in stage.cmd],
    ids=lambda stage: stage.addressing,
)
def test_training_depends_on_no_serving_code(stage) -> None:
    serving = {SOURCE_ROOT / "deeplecture" / name for name in SERVING_CODE}
    assert not serving & set(_dep_paths(stage))
    assert not serving & import_closure(_script(stage), SOURCE_ROOT)


@pytest.mark.parametrize("stage", _stages(), ids=lambda stage: stage.addressing)
def test_every_code_dependency_exists(stage) -> None:
    for dep in _dep_paths(stage):
        relative = dep.relative_to(PROJECT_ROOT)
        if relative.parts[0] in CODE_FOLDERS:
            assert dep.exists(), f"{stage.addressing}: declared dep {relative} does not exist"


def test_an_undeclared_import_is_found_even_inside_a_function(tmp_path: Path) -> None:
    """The check itself, on a made-up package: a lazy import two steps away is found."""
    package = tmp_path / "src" / "deeplecture"
    (package / "data").mkdir(parents=True)
    (package / "__init__.py").write_text('"""docstring only: not code."""\n__version__ = "1"\n')
    (package / "data" / "__init__.py").write_text("")
    (package / "data" / "reader.py").write_text(
        "def read():\n    from deeplecture import helpers\n    return helpers.VALUE\n"
    )
    (package / "helpers.py").write_text("VALUE = 1\n")
    script = tmp_path / "stages" / "stage.py"
    script.parent.mkdir()
    script.write_text("from deeplecture.data.reader import read\n")

    closure = import_closure(script, tmp_path / "src")
    assert closure == {package / "data" / "reader.py", package / "helpers.py"}
    declared = [script, package / "data" / "reader.py"]
    assert uncovered(closure, declared) == [package / "helpers.py"]
    assert uncovered(closure, [script, package]) == []  # a folder covers what is in it


def test_every_metrics_and_plots_file_a_stage_writes_is_shown_by_a_top_level_folder() -> None:
    """`dvc metrics show` and `dvc plots show` read the top-level folders: a file outside them
    would never be shown, and a file named one by one would be an error before it exists."""
    from ruamel.yaml import YAML

    root = YAML(typ="safe").load((PROJECT_ROOT / "dvc.yaml").read_text())
    metrics_folders = [PROJECT_ROOT / folder for folder in root["metrics"]]
    plot_folders = [
        PROJECT_ROOT / next(iter(entry)) for entry in root["plots"] if isinstance(entry, dict)
    ]
    for stage in _stages():
        for out in stage.outs:
            path = Path(out.fs_path)
            if path.suffix == ".csv" and "plots" in path.parts:
                assert any(path.is_relative_to(f) for f in plot_folders), stage.addressing
            if path.parent.parent.name == "metrics":
                assert any(path.is_relative_to(f) for f in metrics_folders), stage.addressing
            if path.suffix in (".csv", ".json"):
                assert not out.metric and not out.plot, (
                    f"{stage.addressing}: {path} is declared one by one; "
                    "declare its folder in the top-level metrics/plots"
                )
