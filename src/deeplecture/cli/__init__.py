"""Console commands and pipeline stages, and what they share: the parser, argument types, and
how a refusal or a stop ends them (the stages' `--params`: stage.py).

Conventions: a usage error exits 2 (argparse), bad input (bad params, a missing or corrupt
file, a shape that does not fit: a `Refused`, `OSError` or `ValueError`) prints one
`error: ...` line on stderr and exits 1; never a traceback. Anything else is a bug and keeps it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable


class Refused(Exception):
    """The command cannot go on; the message is the one line its user reads."""


class Stopped(Exception):
    """A stop the user asked for (SIGTERM, Ctrl-C) ended the command at a safe point."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status  # 143 for SIGTERM, 130 for Ctrl-C, as a shell reports them


# What ends a command with one line and status 1 instead of a traceback.
REFUSALS: tuple[type[BaseException], ...] = (Refused, OSError, ValueError)


def parser(doc: str) -> argparse.ArgumentParser:
    """A command's parser, described by the first line of its module's docstring."""
    return argparse.ArgumentParser(description=doc.splitlines()[0])


def run(
    parser: argparse.ArgumentParser,
    argv: list[str] | None,
    body: Callable[[argparse.Namespace], int | None],
) -> int:
    """A command from start to exit status: parse `argv`, then `body(args)`, whose return is
    the status (None: 0); a refusal is one `error:` line and status 1, a stop one
    `interrupted:` line and its own status."""
    args = parser.parse_args(argv)
    try:
        return body(args) or 0
    except REFUSALS as error:
        return fail(error)
    except Stopped as stop:
        print(f"interrupted: {stop}", file=sys.stderr)
        return stop.status


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def fail(error: Exception | str) -> int:
    """Print one `error: ...` line on stderr; the exit status of bad input."""
    print(f"error: {error}", file=sys.stderr)
    return 1
