"""A sweep as DVC experiments: one queued `dvc exp run` per seed, run by DVC's own queue.

Experiment `<sweep>-seed<N>` sets `sweep=<sweep>` (the MLflow tag of its runs) and
`train.<variant>.seed=N` for every variant of the sweep, and runs only those variants' evaluate
stages (their training and data stages come with them). `dvc queue start -j K` runs K at a time
on this machine; on several machines each queues its own seeds, and the runs meet in the shared
MLflow server (README "Many seeds").
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from deeplecture import catalog

# The pipeline that trains and evaluates a variant's seeds together: kept as a template, put in
# place as a pipeline for the together experiment only (sweeps/together.yaml says why).
TOGETHER_TEMPLATE = Path("sweeps/together.yaml")
TOGETHER_PIPELINE = Path("sweeps/dvc.yaml")
FINISHED = ("Success", "Failed")
POLL_SECONDS = 10


class SweepError(RuntimeError):
    """DVC refused or failed a step of the sweep; the message is DVC's own error line."""


@dataclass(frozen=True)
class SweepPlan:
    name: str
    variants: dict[str, str]  # variant -> its dataset
    seeds: tuple[int, ...]
    overrides: tuple[str, ...]  # the user's own `-S key=value`, applied to every seed

    def experiment(self, seed: int) -> str:
        return f"{self.name}-seed{seed}"

    @property
    def experiments(self) -> list[str]:
        return [self.experiment(seed) for seed in self.seeds]

    def queue_command(self, seed: int) -> list[str]:
        settings = [f"sweep={self.name}", *self.overrides]
        settings += [f"train.{variant}.seed={seed}" for variant in self.variants]
        targets = [
            catalog.get_dataset(dataset).evaluate_target.format(variant=variant)
            for variant, dataset in self.variants.items()
        ]
        return [
            "dvc", "exp", "run", "--queue", "--name", self.experiment(seed),
            *(argument for setting in settings for argument in ("-S", setting)),
            *dict.fromkeys(targets),  # fashion_mnist's one evaluate stage, once
        ]  # fmt: skip

    @property
    def together_experiment(self) -> str:
        return f"{self.name}-together"

    def together_command(self) -> list[str]:
        """One experiment, run now in a temporary copy of the repository: every variant's seeds
        trained together by its `together` stage."""
        seeds = ", ".join(str(seed) for seed in self.seeds)
        settings = [f"sweep={self.name}", f"together.seeds=[{seeds}]", *self.overrides]
        datasets = {variant: catalog.get_dataset(name) for variant, name in self.variants.items()}
        alone = [f"{v} ({d.title})" for v, d in datasets.items() if d.together_stage is None]
        if alone:
            trained = [d.title for d in catalog.DATASETS.values() if d.together_stage is not None]
            raise SweepError(
                f"--together trains {', '.join(trained)} variants only; drop "
                f"{', '.join(alone)} or sweep it one by one (without --together)"
            )
        return [
            "dvc", "exp", "run", "--temp", "--name", self.together_experiment,
            "--copy-paths", str(TOGETHER_PIPELINE),
            *(argument for setting in settings for argument in ("-S", setting)),
            *(f"{TOGETHER_PIPELINE}:{dataset.together_stage.format(variant=variant)}"
              for variant, dataset in datasets.items()),
        ]  # fmt: skip


def run_together(plan: SweepPlan) -> int:
    """Run the together experiment in the foreground, its output shown as it comes; return
    DVC's exit status. Its pipeline exists in the workspace only while DVC copies it into the
    experiment's temporary workspace (TOGETHER_TEMPLATE)."""
    command = plan.together_command()
    print(f"running {plan.together_experiment}: {' '.join(command)}", flush=True)
    shutil.copyfile(TOGETHER_TEMPLATE, TOGETHER_PIPELINE)
    try:
        return subprocess.run(command, check=False).returncode
    finally:
        TOGETHER_PIPELINE.unlink(missing_ok=True)


def fetch_together_outputs(plan: SweepPlan) -> list[str]:
    """Copy each variant's seed folders from the finished together experiment into the
    workspace; return the folders.

    `dvc get` of the experiment's commit, not `dvc exp apply`: apply would also bring the
    experiment's params.yaml (its sweep and seeds) into the workspace and stops at the outputs
    of variants the sweep did not run."""
    head = _git(["rev-parse", "HEAD"])
    commit = _git(["rev-parse", f"refs/exps/{head[:2]}/{head[2:]}/{plan.together_experiment}"])
    folders = [
        catalog.get_dataset(dataset).together_outputs.format(variant=variant)
        for variant, dataset in plan.variants.items()
    ]
    for folder in folders:
        _dvc(["dvc", "get", ".", folder, "--rev", commit, "--out", folder, "--force"])
    return folders


def queue(plan: SweepPlan) -> None:
    for seed in plan.seeds:
        _dvc(plan.queue_command(seed))
        print(f"queued {plan.experiment(seed)}")


def start(jobs: int) -> None:
    _dvc(["dvc", "queue", "start", "-j", str(jobs)])


def wait(experiments: Sequence[str], timeout_s: float | None = None) -> dict[str, str]:
    """Poll `dvc queue status` until every one of `experiments` succeeded or failed; return
    each one's status. A line is printed whenever the tally changes."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    last = None
    while True:
        statuses = queue_statuses(_dvc(["dvc", "queue", "status"]), experiments)
        tally = ", ".join(f"{count} {status}" for status, count in _count(statuses.values()))
        if tally != last:
            print(f"sweep: {tally}", flush=True)
            last = tally
        if all(status in FINISHED for status in statuses.values()):
            return statuses
        if deadline is not None and time.monotonic() > deadline:
            raise SweepError(f"the sweep did not finish within {timeout_s:.0f} s ({tally})")
        time.sleep(POLL_SECONDS)


def queue_statuses(status_output: str, experiments: Iterable[str]) -> dict[str, str]:
    """Each experiment's status in `dvc queue status` output (columns: task, name, created,
    status); "Unknown" for one the queue does not list."""
    listed = {}
    for line in status_output.splitlines():
        words = line.split()
        if len(words) >= 3 and words[0] != "Task":
            listed[words[1]] = words[-1]
    return {name: listed.get(name, "Unknown") for name in experiments}


def _count(statuses: Iterable[str]) -> list[tuple[str, int]]:
    counts: dict[str, int] = {}
    for status in statuses:
        counts[status] = counts.get(status, 0) + 1
    return sorted(counts.items())


def _git(arguments: list[str]) -> str:
    result = subprocess.run(["git", *arguments], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SweepError(f"git {arguments[0]}: {result.stderr.strip() or 'failed'}")
    return result.stdout.strip()


def _dvc(command: list[str]) -> str:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
        message = errors[0] if errors else (result.stderr.strip().splitlines() or ["failed"])[-1]
        raise SweepError(f"{' '.join(command[:3])}: {message}")
    if result.stderr.strip():
        print(result.stderr.strip(), file=sys.stderr)
    return result.stdout
