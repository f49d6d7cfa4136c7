"""Every stage's code deps, derived from its script's imports: written into the pipelines, or
checked against them.

    python scripts/stage_deps.py           # rewrite the code deps of every stage
    python scripts/stage_deps.py --check   # list the stages whose code deps are not these

A stage's code deps are the files of the package its script can import, followed statically:
every `import` counts, also one inside a function (the stages import Keras and training code
lazily, after checking params), and so does the catalog's convention,
`importlib.import_module(f"deeplecture.data.{dataset.name}")`, which imports that package's
module of every dataset in the catalog. A package's `__init__.py` counts when it holds code
(imports, functions, classes); one that holds only a docstring and constants cannot change what
a stage computes. A file of code that a module names beside it (served_model.py's
served_model_code.py, which MLflow runs) counts as imported. A folder stands for its files when
the stage imports every one of them.

In the pipelines, a stage's `- src/deeplecture/...` lines are this list, in this order, and
nothing else; its script, data and model deps are the pipeline's own. `tests/test_graph.py`
fails when they differ, so DVC reruns exactly the stages a change of code can change.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from pathlib import Path

from deeplecture import catalog

PACKAGE = "deeplecture"


def imported_modules(path: Path) -> set[str]:
    """Dotted names of the package's modules that `path` imports, anywhere in the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from deeplecture.data import processed` imports a module; `from deeplecture.params
            # import load_params` a name: both read the module they come from.
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call) and _is_import_module(node.func) and node.args:
            names.update(_per_dataset_modules(node.args[0]))
    return {name for name in names if name == PACKAGE or name.startswith(f"{PACKAGE}.")}


def _is_import_module(func: ast.expr) -> bool:
    return (isinstance(func, ast.Attribute) and func.attr == "import_module") or (
        isinstance(func, ast.Name) and func.id == "import_module"
    )


def _per_dataset_modules(argument: ast.expr) -> set[str]:
    """`f"deeplecture.<package>.{...}"`: that package's module of every catalog dataset. Any
    other f-string is refused: the test could not follow it. A name passed in is a third-party
    module (edge/runtime.py's optional runtimes)."""
    if isinstance(argument, ast.Constant):
        return {argument.value}
    if not isinstance(argument, ast.JoinedStr):
        return set()
    parts = argument.values
    if (
        len(parts) == 2
        and isinstance(parts[0], ast.Constant)
        and isinstance(parts[1], ast.FormattedValue)
    ):
        return {f"{parts[0].value}{name}" for name in catalog.DATASETS}
    raise AssertionError(f"a dynamic import this test cannot follow: {ast.unparse(argument)}")


def module_files(name: str, source_root: Path) -> list[Path]:
    """The files that importing module `name` runs: the packages above it and the module."""
    parts = name.split(".")
    files = []
    for depth in range(1, len(parts) + 1):
        base = source_root.joinpath(*parts[:depth])
        if (base / "__init__.py").is_file():
            files.append(base / "__init__.py")
        elif base.with_suffix(".py").is_file() and depth == len(parts):
            files.append(base.with_suffix(".py"))
    return files


def import_closure(script: Path, source_root: Path) -> set[Path]:
    """Every file of the package that running `script` can import, `script` excluded."""
    seen: set[Path] = set()
    pending = [script]
    while pending:
        current = pending.pop()
        reached = [p for name in imported_modules(current) for p in module_files(name, source_root)]
        for path in [*reached, *named_code_files(current)]:
            if path not in seen:
                seen.add(path)
                pending.append(path)
    return {path for path in seen if path.name != "__init__.py" or _holds_code(path)}


def named_code_files(path: Path) -> set[Path]:
    """The files of code beside `path` that it names in a string, as served_model.py names
    served_model_code.py, which MLflow runs to load a logged model: read, if not imported."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return {
        path.parent / node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and node.value.endswith(".py")
        and "/" not in node.value
        and (path.parent / node.value).is_file()
    }


def uncovered(files: set[Path], deps: list[Path]) -> list[Path]:
    """The files that no dependency covers (a dependency on a folder covers what is in it)."""
    return sorted(f for f in files if not any(f == dep or dep in f.parents for dep in deps))


def _holds_code(init: Path) -> bool:
    body = ast.parse(init.read_text()).body
    return any(not isinstance(node, ast.Expr | ast.Assign | ast.AnnAssign) for node in body)


PROJECT_ROOT = Path(__file__).resolve().parents[1]
SOURCE_ROOT = PROJECT_ROOT / "src"
PIPELINES = ("dvc.yaml", "fashion_mnist/dvc.yaml", "sweeps/together.yaml")
# A stage's command and its deps' code lines, as the pipelines write them.
_SCRIPT = re.compile(r"\bpython\s+(stages/\S+\.py)\b")
_CODE_DEP = re.compile(r"^(\s+)- src/deeplecture/\S+.*\n", re.MULTILINE)


def code_deps(script: Path, source_root: Path = SOURCE_ROOT) -> list[str]:
    """The code deps of a stage that runs `script`: files, or folders it imports all of."""
    files = import_closure(script, source_root)
    folders = sorted({path.parent for path in files}, key=lambda folder: len(folder.parts))
    whole: list[Path] = []
    for folder in folders:
        if folder == source_root / PACKAGE or any(folder.is_relative_to(f) for f in whole):
            continue
        inside = {p for p in folder.rglob("*.py") if p.name != "__init__.py" or _holds_code(p)}
        if inside <= files:
            whole.append(folder)
    kept = [*whole, *(f for f in files if not any(f.is_relative_to(w) for w in whole))]
    return sorted(str(path.relative_to(source_root.parent)) for path in kept)


def rewrite(text: str, project_root: Path = PROJECT_ROOT) -> str:
    """`text`, a pipeline, with every stage's code deps derived from its script."""
    stages = re.split(r"(?m)^(?=  \S)", text)  # a stage starts at a two-space key
    return "".join(_rewrite_stage(stage, project_root) for stage in stages)


def _rewrite_stage(stage: str, project_root: Path) -> str:
    script = _SCRIPT.search(stage)
    lines = list(_CODE_DEP.finditer(stage))
    if script is None or not lines:
        return stage
    indent = lines[0].group(1)
    derived = "".join(
        f"{indent}- {dep}\n"
        for dep in code_deps(project_root / script.group(1), project_root / "src")
    )
    # The derived lines where the first code line was; the others' places close up.
    kept = _CODE_DEP.sub("", stage[lines[0].start() :])
    return stage[: lines[0].start()] + derived + kept


def stale_pipelines(project_root: Path = PROJECT_ROOT) -> list[str]:
    """The pipelines whose code deps are not the derived ones."""
    return [
        name
        for name in PIPELINES
        if rewrite((project_root / name).read_text(), project_root)
        != (project_root / name).read_text()
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only list the stale pipelines")
    args = parser.parse_args(argv)
    stale = stale_pipelines()
    if args.check:
        for name in stale:
            print(f"{name}: code deps differ from the imports (python scripts/stage_deps.py)")
        return 1 if stale else 0
    for name in stale:
        path = PROJECT_ROOT / name
        path.write_text(rewrite(path.read_text()))
        print(f"{name}: code deps rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
