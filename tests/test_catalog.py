"""The catalog is the one place a dataset and its variants are declared.

A new variant is its catalog entry and its params.yaml entries, nothing else: the params loader,
the model registry and DVC's pipeline all find it from there. And no module of the package, nor
a stage, spells a dataset's name of its own.
"""

from __future__ import annotations

import ast
import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from conftest import PROJECT_ROOT
from deeplecture import catalog
from deeplecture.params import ParamsError, load_params, read_yaml
from project_repo import make_project_repo, run_command

TOY = "cnn74b"  # cnn74's network under new training settings: a variant the lecture has not
TOY_ENTRY = f'        Variant("{TOY}", "build_cnn74", 1_639_914),\n'


def _add_toy_variant(project: Path) -> None:
    """The two edits the README names for a new CIFAR-10 variant, and no other."""
    module = project / "src/deeplecture/catalog/cifar10.py"
    text = module.read_text()
    anchor = '        Variant("cnn88", "build_cnn88", 300_214),\n'
    assert anchor in text
    module.write_text(text.replace(anchor, anchor + TOY_ENTRY))

    yaml = YAML()  # round trip, as `dvc exp run -S` edits it
    params = project / "params.yaml"
    document = yaml.load(params.read_text())
    document["profile"] = "smoke"  # the bundled sample: the data stages run offline, in seconds
    document["variants"]["cifar10"][TOY] = []
    document["train"][TOY] = copy.deepcopy(document["train"]["cnn74"])
    document["train"][TOY]["epochs"] = 3
    with params.open("w") as handle:
        yaml.dump(document, handle)


def _copy_first(project: Path) -> dict[str, str]:
    """The copy's package first on the path, before the installed one (this checkout's)."""
    return {"PYTHONPATH": str(project / "src")}


def _in_copy(project: Path, code: str) -> str:
    """Run `code` with the copy's package."""
    env = {**os.environ, **_copy_first(project)}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=project, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.slow
def test_a_new_variant_is_a_catalog_entry_and_its_params(tmp_path: Path) -> None:
    project = make_project_repo(tmp_path)
    _add_toy_variant(project)

    found = json.loads(
        _in_copy(
            project,
            "import json; from deeplecture.params import load_params; "
            "from deeplecture.models import get_variant; from deeplecture.scaling import Scaling; "
            f"params = load_params(); variant = get_variant('{TOY}'); "
            "model = variant.build(Scaling.divide255(3), 'none'); "
            f"print(json.dumps([params.dataset_of('{TOY}'), params.train['{TOY}'].epochs, "
            "model.count_params(), variant.lecture_param_count]))",
        )
    )
    assert found == ["cifar10", 3, 1_639_914, 1_639_914]

    # A dry run still reads the deps of every stage it would run (DVC 3 stops at the first
    # missing one): the data stages run first, on the sample; the toy's training then is next.
    run_command(["dvc", "repro", "preprocess@cifar10"], project, _copy_first(project))
    dry = run_command(["dvc", "repro", "--dry", f"train@{TOY}"], project, _copy_first(project))
    assert f"Running stage 'train@{TOY}'" in dry
    assert f"python stages/train.py {TOY} --data data/processed/cifar10" in dry
    # and every stage after it, wired as for the lecture's variants
    edges = run_command(["dvc", "dag", "--dot"], project)
    for before, after in (
        ("train", "evaluate"),
        ("evaluate", "export"),
        ("export", "measure_edge"),
    ):
        assert f'"{before}@{TOY}" -> "{after}@{TOY}"' in edges
    assert f'"evaluate@{TOY}" -> "report"' in edges or f'"measure_edge@{TOY}" -> "report"' in edges


def test_a_variant_the_catalog_does_not_know_is_refused_by_name(tmp_path: Path) -> None:
    document = read_yaml(PROJECT_ROOT / "params.yaml")
    document["variants"]["cifar10"]["cnn99"] = []
    document["train"]["cnn99"] = document["train"]["cnn74"]
    path = tmp_path / "params.yaml"
    with path.open("w") as handle:
        YAML(typ="safe", pure=True).dump(document, handle)
    with pytest.raises(ParamsError, match=r"variants\.cifar10\.cnn99.*train\.cnn99"):
        load_params(path)


def test_a_variant_listed_under_another_dataset_is_refused(tmp_path: Path) -> None:
    document = read_yaml(PROJECT_ROOT / "params.yaml")
    document["variants"]["fashion_mnist"]["cnn74"] = document["variants"]["cifar10"].pop("cnn74")
    path = tmp_path / "params.yaml"
    with path.open("w") as handle:
        YAML(typ="safe", pure=True).dump(document, handle)
    with pytest.raises(ParamsError, match="cnn74 \\(a cifar10 variant\\)"):
        load_params(path)


def test_every_shipped_variant_is_in_the_catalog_and_every_section_names_each_dataset() -> None:
    params = load_params(PROJECT_ROOT / "params.yaml")
    for name, dataset in catalog.DATASETS.items():
        assert getattr(params.data, name) and getattr(params.preprocess, name)
        assert list(params.variants[name]) == [variant.name for variant in dataset.variants]


# A dataset's name as code would spell it: a string that is the name, or a path through it.
SPELLED = re.compile(r"(^|/)({names})($|[/.])".format(names="|".join(catalog.DATASETS)))


def _strings_in_code(path: Path) -> list[str]:
    """Every string constant of `path` that is not a docstring (f-strings' parts included)."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    ]


def test_no_module_or_stage_spells_a_dataset_name_but_its_catalog_entry() -> None:
    spelled = [
        f"{path.relative_to(PROJECT_ROOT)}: {text!r}"
        for path in sorted([*PROJECT_ROOT.glob("src/**/*.py"), *PROJECT_ROOT.glob("stages/*.py")])
        if path.parent.name != "catalog"
        for text in _strings_in_code(path)
        if SPELLED.search(text)
    ]
    assert not spelled, "\n".join(spelled)
