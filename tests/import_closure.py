"""Which files of the package a stage's script reads, followed statically through its imports.

Every `import` counts, also one inside a function (the stages import Keras and training code
lazily, after checking params): whatever a stage can run is part of what it depends on. A
package's `__init__.py` counts when it holds code (imports, functions, classes); one that holds
only a docstring and constants cannot change what a stage computes.
"""

from __future__ import annotations

import ast
from pathlib import Path

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
    return {name for name in names if name == PACKAGE or name.startswith(f"{PACKAGE}.")}


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
        for name in imported_modules(pending.pop()):
            for path in module_files(name, source_root):
                if path not in seen:
                    seen.add(path)
                    pending.append(path)
    return {path for path in seen if path.name != "__init__.py" or _holds_code(path)}


def uncovered(files: set[Path], deps: list[Path]) -> list[Path]:
    """The files that no dependency covers (a dependency on a folder covers what is in it)."""
    return sorted(f for f in files if not any(f == dep or dep in f.parents for dep in deps))


def _holds_code(init: Path) -> bool:
    body = ast.parse(init.read_text()).body
    return any(not isinstance(node, ast.Expr | ast.Assign | ast.AnnAssign) for node in body)
