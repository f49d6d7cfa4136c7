"""Who may hold which name on the class server: every name a student makes starts with theirs.

A student's runs go to `<username>-cifar10`, their models to `<username>-cifar10-cnn74`
(tracking.experiment_name with `DEEPLECTURE_EXPERIMENT_PREFIX=<username>`); every name without a
user's prefix (`cifar10`, `cifar10-cnn74`, ...) is the teacher's. The server (class_app.py)
refuses a student any other name, the accounts tool checks names made before that rule, and
evaluate refuses to register into a name someone else holds (registry.py).

A user name holds no `-`: otherwise the names of `bob` (`bob-…`) would include all of user
`bob-cifar10`'s, and no prefix would say whose a name is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from deeplecture import catalog

SEPARATOR = "-"
USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.]{0,63}")
# First parts of the teacher's own names (the experiments, and the registered models
# `<dataset>-<variant>`): a student with one of these names would own the teacher's names.
RESERVED_USERNAMES = catalog.reference_experiments()


def username_problem(name: str) -> str | None:
    """Why `name` cannot be a student's user name, or None if it can."""
    if not USERNAME.fullmatch(name):
        return (
            "is not a user name (letters, digits, '_' and '.'; no '-', which separates a "
            "user's name from the names of their experiments and models)"
        )
    if name in RESERVED_USERNAMES:
        return f"is the first part of the teacher's names ({name}-…): choose another user name"
    return None


def own_name(username: str, name: str) -> bool:
    """Whether `name` lies in `username`'s part of the server: `<username>-…`."""
    return name.startswith(f"{username}{SEPARATOR}") and len(name) > len(username) + 1


def prefixed(username: str, base: str) -> str:
    """`base` in `username`'s part of the server, as tracking.experiment_name makes it."""
    return f"{username}{SEPARATOR}{base}"


def registered_model_base(dataset: str, variant: str) -> str:
    """The registered model of a variant, before any prefix (registry.registered_model_name)."""
    return f"{dataset}{SEPARATOR}{variant}"


def registered_model_bases(variants: Mapping[str, Iterable[str]]) -> list[str]:
    """Every registered model the project makes, unprefixed (params.yaml's `variants`)."""
    return [
        registered_model_base(dataset, variant)
        for dataset, listed in variants.items()
        for variant in listed
    ]
