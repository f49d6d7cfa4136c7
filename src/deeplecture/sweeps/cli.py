"""deeplecture-sweep: train variants under N seeds with DVC's queue, collect, report.

    deeplecture-sweep run NAME --seeds 5 --variants cnn74 cnn79 [-S key=value ...] [--jobs 1]
    deeplecture-sweep run NAME --seeds 8 --together ...  # each variant's seeds in one program
    deeplecture-sweep queue NAME --seeds 5 ...     # queue only; then `dvc queue start -j K`
    deeplecture-sweep collect NAME                 # runs tagged sweep=NAME -> reports/sweeps/

`run` queues one DVC experiment per seed, starts the queue, waits, collects the runs from MLflow
into reports/sweeps/NAME.json and rebuilds the report, which gets a section for the sweep.
`run --together` runs one experiment instead (`dvc exp run --temp` of sweeps/together.yaml),
whose stage trains each variant's seeds together in one program (on JAX through one compiled
step, on a GPU vectorised over the seeds; elsewhere one after another), then collects and
reports the same way.
"""

from __future__ import annotations

import argparse
import re
import subprocess
from pathlib import Path

from deeplecture import catalog
from deeplecture.cli import fail, positive_int
from deeplecture.params import MAX_SEED, SWEEP_NAME_PATTERN, ParamsError, load_params
from deeplecture.sweeps.queue import (
    SweepError,
    SweepPlan,
    fetch_together_outputs,
    queue,
    run_together,
    start,
    wait,
)

SWEEPS_DIR = Path("reports/sweeps")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not re.fullmatch(SWEEP_NAME_PATTERN, args.name):
        return fail(f"sweep name {args.name!r}: use letters, digits, '_', '.' and '-' only")
    out = args.out_dir / f"{args.name}.json"
    try:
        if args.action == "collect":
            return _collect(args.name, out)
        plan = _plan(args)
        if getattr(args, "together", False):
            return _together(plan, out)
        queue(plan)
        if args.action == "queue":
            print(f"queued {len(plan.seeds)} experiments: start them with `dvc queue start -j K`")
            return 0
        start(args.jobs)
        statuses = wait(plan.experiments)
    except (ParamsError, SweepError) as error:
        return fail(error)
    failed = [name for name, status in statuses.items() if status != "Success"]
    status = _collect(args.name, out)
    if status == 0 and subprocess.run(["dvc", "repro", "--single-item", "report"]).returncode:
        return fail("the report stage failed (its output is above): the sweep's runs are kept")
    if failed:
        return fail(
            f"{len(failed)} of {len(statuses)} experiments failed ({', '.join(failed)}): "
            f"`dvc queue logs {failed[0]}` shows why"
        )
    return status


def _together(plan: SweepPlan, out: Path) -> int:
    status = run_together(plan)
    if status != 0:
        return fail(
            f"{plan.together_experiment} failed (exit status {status}, its output is above); "
            "rerun the same command to resume from its checkpoints"
        )
    status = _collect(plan.name, out)
    if status == 0 and subprocess.run(["dvc", "repro", "--single-item", "report"]).returncode:
        return fail("the report stage failed (its output is above): the sweep's runs are kept")
    for folder in fetch_together_outputs(plan):
        print(f"models: {folder}/seed<N>/ (from experiment {plan.together_experiment})")
    return status


def _plan(args: argparse.Namespace) -> SweepPlan:
    seeds = _seeds(args.first_seed, args.seeds)
    params = load_params()
    variants = args.variants or list(params.variants[catalog.CIFAR10.name])
    unknown = [variant for variant in variants if variant not in params.train]
    if unknown:
        raise ParamsError(
            f"unknown variant(s) {', '.join(unknown)} (known: {', '.join(params.train)})"
        )
    for setting in args.set:
        key = setting.split("=", 1)[0].strip()
        if key in ("sweep", "together", "together.seeds") or re.fullmatch(
            r"train\.[^.]+\.seed", key
        ):
            raise ParamsError(f"-S {setting}: the sweep sets {key} itself")
    return SweepPlan(
        name=args.name,
        variants={variant: params.dataset_of(variant) for variant in variants},
        seeds=seeds,
        overrides=tuple(args.set),
    )


def _seeds(first: int, count: int) -> tuple[int, ...]:
    """Seeds `first` ... `first + count - 1`, each a valid `train.<variant>.seed`: refused now,
    not when every queued experiment fails its params check later."""
    last = first + count - 1
    if first < 0 or last > MAX_SEED:
        raise ParamsError(
            f"--first-seed {first} --seeds {count}: seeds {first} ... {last} are not all "
            f"in 0 ... {MAX_SEED}, the range of train.<variant>.seed"
        )
    return tuple(range(first, last + 1))


def _collect(name: str, out: Path) -> int:
    # Imported here: MLflow and Keras take seconds to load, and `--help` should not wait.
    from deeplecture.sweeps.collect import SweepNotFound, write_summary
    from deeplecture.tracking import TrackingUnavailable

    try:
        summary = write_summary(name, out)
    except (TrackingUnavailable, SweepNotFound) as error:
        return fail(error)
    print(f"{out}: {len(summary['runs'])} runs of sweep {name}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    actions = parser.add_subparsers(dest="action", required=True)
    for action, text in (
        ("run", "queue the seeds, run them, collect and report"),
        ("queue", "queue the seeds only"),
        ("collect", "write reports/sweeps/NAME.json from the runs tagged sweep=NAME"),
    ):
        command = actions.add_parser(action, help=text)
        command.add_argument("name", help="the sweep's name: its MLflow tag and DVC names")
        command.add_argument("--out-dir", type=Path, default=SWEEPS_DIR)
        if action == "collect":
            continue
        command.add_argument("--seeds", type=positive_int, required=True, help="runs per variant")
        command.add_argument("--first-seed", type=int, default=0, help="seeds N, N+1, ... (0)")
        command.add_argument(
            "--variants", nargs="+", help="default: every CIFAR-10 variant of params.yaml"
        )
        command.add_argument(
            "-S", "--set", action="append", default=[], metavar="KEY=VALUE",
            help="a params override for every seed, as dvc exp run -S (repeatable)",
        )  # fmt: skip
        if action == "run":
            command.add_argument("--jobs", type=positive_int, default=1, help="experiments at once")
            command.add_argument(
                "--together", action="store_true",
                help="train each variant's seeds together in one program (one experiment)",
            )  # fmt: skip
    return parser


if __name__ == "__main__":
    raise SystemExit(main())
