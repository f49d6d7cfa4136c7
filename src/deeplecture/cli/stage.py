"""A pipeline stage from its command line to its exit status, params.yaml read first.

    def main(argv=None) -> int:
        parser = cli.parser(__doc__)
        parser.add_argument("variant")
        return run_stage(parser, argv, train)   # train(args, params)

Apart from `cli/__init__.py`, so that a command without params (stages/foundations.py) does not
depend on the params loader.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from deeplecture import cli
from deeplecture.params import Params, load_params


def run_stage(
    parser: argparse.ArgumentParser,
    argv: list[str] | None,
    body: Callable[[argparse.Namespace, Params], int | None],
) -> int:
    """A pipeline stage: as `cli.run`, with `--params` loaded and checked before `body(args,
    params)`. Params are read before anything slow is imported: a bad key fails in a fraction
    of a second, named, before the seconds that Keras and its backend take to load."""
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    return cli.run(parser, argv, lambda args: body(args, load_params(args.params)))
