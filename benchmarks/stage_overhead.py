"""Where a train and an evaluate stage spend their seconds outside training, phase by phase.

    python benchmarks/stage_overhead.py cnn74 --data data/processed/cifar10 \
        [--backends jax,tensorflow] [--runs 2] [--set train.cnn74.epochs=1 ...] [--json FILE]
    python benchmarks/stage_overhead.py --show FILE     # the tables of a saved run

Runs the real `stages/train.py`, then `stages/evaluate.py`, of one variant, each in a process of
its own as DVC runs them, `--runs` times per backend, and prints one table per stage with a
column per run: interpreter start-up, the big imports, each phase the stage goes through (data,
model, MLflow, the epochs, the model file, the LoggedModel, the record; the model load, the
scoring, the files, the test metrics, the registry), what is left (`other`: the stage's own
code and smaller imports), the process's exit, and the wall time less the training itself.

The settings are params.yaml's (--params) in profile smoke unless --set says otherwise: the
point is what happens around the epochs. Everything the stages write goes to a scratch folder
(--work, made afresh), which they take for the project's root (DVC_ROOT): the MLflow store,
the checkpoints and JAX's compilation cache start empty, so the first run of each backend pays
for compiling and creating, and the later runs show what a repeated run pays.

How phases are timed: before the stage's code is imported, the child process wraps the
functions named in PHASES (and the imports in IMPORTS) with timers when their module is
imported; nothing else of the stage changes. A phase shown inside another ran inside it;
`calls` counts how often it ran (`keras.saving.load_model` is every load of the model file).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.abc
import importlib.util
import json
import os
import platform
import runpy
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
STAGES = ("train", "evaluate")
TRAINING = "training (the epochs)"
FIRST_CALL = "first call (compiling included)"

# (module, attribute, label). `Class.method` wraps a method; a label starting "MLflow run"
# marks tracking.tracked_run, a context manager timed as it opens and as it closes.
PHASES: tuple[tuple[str, str, str], ...] = (
    ("deeplecture.params", "load_params", "read params.yaml"),
    ("deeplecture.compilation_cache", "enable", "JAX compilation cache: enable"),
    ("deeplecture.data.processed", "load", "load the data"),
    ("deeplecture.tracking", "use_project_store", "MLflow: open the store"),
    ("deeplecture.training", "seed_everything", "seed the backend"),
    ("deeplecture.checkpoints", "Checkpoint.load", "look for a checkpoint"),
    ("deeplecture.training", "build_model", "build and compile the model"),
    ("deeplecture.tracking", "run_tags", "MLflow: run tags (git commit)"),
    ("deeplecture.training", "_announce_device", "describe the device and versions"),
    ("deeplecture.training", "_close_abandoned_runs", "close abandoned runs"),
    ("deeplecture.tracking", "tracked_run", "MLflow run"),
    ("deeplecture.training", "_log_run_inputs", "MLflow: log params and dataset"),
    ("deeplecture.tracking", "log_dataset", "MLflow: log the dataset"),
    ("deeplecture.tracking", "log_missing_epochs", "MLflow: catch up missed epochs"),
    ("deeplecture.checkpoints", "Checkpoint.save", "save a checkpoint"),
    ("deeplecture.training", "run_epochs", TRAINING),
    ("deeplecture.training", "EpochEnd.on_epoch_end", "epoch end: checkpoint, history, MLflow"),
    ("deeplecture.model_file", "save", "save the .keras file"),
    ("deeplecture.training", "write_json", "write the record"),
    ("deeplecture.checkpoints", "Checkpoint.clear", "clear the checkpoint"),
    # evaluate
    ("deeplecture.evaluation", "load_model", "load the model"),
    ("keras.saving", "load_model", "keras.saving.load_model"),
    ("deeplecture.evaluation", "evaluate", "score the test set"),
    ("keras", "Model.evaluate", "Model.evaluate"),
    ("keras", "Model.predict", "Model.predict"),
    ("deeplecture.evaluation", "write_outputs", "write metrics, predictions, per class"),
    ("deeplecture.served_model", "log_model", "MLflow: log the LoggedModel"),
    ("deeplecture.served_model", "content_digest", "digest of the model and serving code"),
    ("deeplecture.served_model", "ImageClassifier.load_context", "pyfunc: load the model"),
    ("deeplecture.served_model", "ImageClassifier.predict", "pyfunc: predict"),
    ("mlflow.models", "infer_signature", "infer the signature"),
    ("mlflow.pyfunc", "log_model", "mlflow.pyfunc.log_model"),
    ("mlflow.models.utils", "_validate_serving_input", "validate the serving input example"),
    ("deeplecture.tracking", "log_test_metrics", "MLflow: log the test metrics"),
    ("deeplecture.tracking", "find_run", "MLflow: find the run"),
    ("deeplecture.registry", "register", "MLflow: register the model"),
    ("mlflow", "register_model", "mlflow.register_model"),
)
IMPORTS = ("keras", "jax", "tensorflow", "torch", "mlflow", "pandas")


class Timer:
    """Spans (path of labels, start, end) of one process, nested as they ran."""

    def __init__(self) -> None:
        self.spans: list[tuple[tuple[str, ...], float, float]] = []
        self.stack: list[str] = []

    @contextlib.contextmanager
    def span(self, label: str) -> Iterator[None]:
        self.stack.append(label)
        path, started = tuple(self.stack), time.time()
        try:
            yield
        finally:
            self.spans.append((path, started, time.time()))
            self.stack.pop()

    def wrap(self, function: Callable[..., Any], label: str) -> Callable[..., Any]:
        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            with self.span(label):
                return function(*args, **kwargs)

        return timed

    def wrap_context(self, function: Callable[..., Any], label: str) -> Callable[..., Any]:
        @functools.wraps(function)
        @contextlib.contextmanager
        def timed(*args: Any, **kwargs: Any) -> Iterator[Any]:
            manager = function(*args, **kwargs)
            with self.span(f"{label}: open"):
                value = manager.__enter__()
            try:
                yield value
            except BaseException:
                if not manager.__exit__(*sys.exc_info()):
                    raise
            else:
                with self.span(f"{label}: close"):
                    manager.__exit__(None, None, None)

        return timed


class PatchOnImport(importlib.abc.MetaPathFinder):
    """Wrap each module's PHASES once it has been executed, and time the IMPORTS."""

    def __init__(self, timer: Timer) -> None:
        self.timer = timer
        self.phases: dict[str, list[tuple[str, str]]] = {}
        for module, attribute, label in PHASES:
            self.phases.setdefault(module, []).append((attribute, label))

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name not in self.phases and name not in IMPORTS and name != "deeplecture.progress":
            return None
        sys.meta_path.remove(self)  # the real finders, not this one again
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        execute = spec.loader.exec_module

        def exec_module(module: Any) -> None:
            if name in IMPORTS:
                with self.timer.span(f"import {name}"):
                    execute(module)
            else:
                execute(module)
            for attribute, label in self.phases.get(name, ()):
                self._patch(module, attribute, label)
            if name == "deeplecture.progress":
                self._time_first_call(module.StageProgress)

        spec.loader.exec_module = exec_module
        return spec

    def _time_first_call(self, progress: type) -> None:
        """A span for the first training call, as the stage measured it (`first_call_seconds`,
        on its perf_counter clock), placed inside the training when it ends."""
        ended = progress.on_train_end
        timer = self.timer

        def on_train_end(stage_progress: Any, logs: dict | None = None) -> None:
            seconds = getattr(stage_progress, "first_call_seconds", None)
            if seconds is not None:
                started = time.time() - (time.perf_counter() - stage_progress.started)
                timer.spans.append(((*timer.stack, FIRST_CALL), started, started + seconds))
            ended(stage_progress, logs)

        progress.on_train_end = on_train_end

    def _patch(self, module: Any, attribute: str, label: str) -> None:
        owner_name, _, method = attribute.rpartition(".")
        owner = getattr(module, owner_name, None) if owner_name else module
        function = getattr(owner, method, None)
        if function is None:
            return  # not in this version of the code: the row stays empty
        if label == "MLflow run":
            setattr(owner, method, self.timer.wrap_context(function, label))
        else:
            setattr(owner, method, self.timer.wrap(function, label))


def run_child(stage: str, timings: Path, stage_args: list[str]) -> int:
    """Run `stages/<stage>.py` in this process with its phases timed; write the timings."""
    started = time.time()
    timer = Timer()
    sys.meta_path.insert(0, PatchOnImport(timer))
    sys.argv = [str(PROJECT_ROOT / "stages" / f"{stage}.py"), *stage_args]
    status = 0
    try:
        runpy.run_path(sys.argv[0], run_name="__main__")
    except SystemExit as done:
        status = done.code if isinstance(done.code, int) else 1
    ended = time.time()
    timings.write_text(
        json.dumps(
            {
                "started": started,
                "ended": ended,
                "status": status,
                "spans": [[list(path), start, end] for path, start, end in timer.spans],
            }
        )
    )
    return status


def measure(
    stage: str, stage_args: list[str], env: dict[str, str], work: Path, label: str
) -> dict[str, Any]:
    """One stage process, timed phase by phase; its rows (path -> seconds, calls)."""
    timings = work / f"{label}-{stage}.timings.json"
    log = work / f"{label}-{stage}.log"
    spawned = time.time()
    with log.open("w") as output:
        command = [sys.executable, __file__, "--child", stage, "--timings", str(timings), "--"]
        done = subprocess.run(
            [*command, *stage_args],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            check=False,
        )
    exited = time.time()
    if done.returncode != 0 or not timings.exists():
        raise SystemExit(f"error: {stage} ({label}) exited {done.returncode}; see {log}")
    child = json.loads(timings.read_text())
    rows: dict[str, list[float]] = {}

    def add(path: tuple[str, ...], seconds: float) -> None:
        key = " > ".join(path)
        row = rows.setdefault(key, [0.0, 0])
        row[0] += seconds
        row[1] += 1

    add(("python start-up",), child["started"] - spawned)
    top_level = 0.0
    for path, start, end in sorted(child["spans"], key=lambda span: span[1]):
        add(tuple(path), end - start)
        if len(path) == 1:
            top_level += end - start
    add(
        ("other (the stage's own code, smaller imports)",),
        child["ended"] - child["started"] - top_level,
    )
    add(("process exit",), exited - child["ended"])
    wall = exited - spawned
    training = rows.get(TRAINING, [0.0])[0]
    return {
        "rows": rows,
        "wall": wall,
        "training": training,
        "outside_training": wall - training,
        "log": str(log),
    }


def write_params(source: Path, overrides: list[str], destination: Path) -> None:
    """`source` with `KEY=VALUE` dotted overrides (as `dvc exp run -S`), written to
    `destination`."""
    from ruamel.yaml import YAML

    from deeplecture.params import ParamsError, set_dotted

    yaml = YAML()
    document = yaml.load(source.read_text())
    for item in overrides:
        key, separator, value = item.partition("=")
        if not separator:
            raise SystemExit(f"error: --set {item!r}: expected KEY=VALUE")
        try:
            set_dotted(document, key, YAML(typ="safe", pure=True).load(value))
        except ParamsError as error:
            raise SystemExit(f"error: params.yaml: {error}") from None
    with destination.open("w") as handle:
        yaml.dump(document, handle)


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = args.work.resolve()
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    params = work / "params.yaml"
    write_params(args.params, ["profile=smoke", *args.set], params)
    data = str(args.data.resolve())
    results: dict[str, Any] = {
        "variant": args.variant,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "settings": ["profile=smoke", *args.set],
        "runs": {},
    }
    for backend in args.backends.split(","):
        env = {**os.environ, "KERAS_BACKEND": backend, "DVC_ROOT": str(work)}
        env.pop("MLFLOW_TRACKING_URI", None)  # the store beside the scratch root
        env.pop("JAX_COMPILATION_CACHE_DIR", None)
        for attempt in range(1, args.runs + 1):
            label = f"{backend} #{attempt}"
            out = work / backend / str(attempt)
            model, record = out / f"{args.variant}.keras", out / f"{args.variant}.train.json"
            train = [
                args.variant, "--data", data, "--model", str(model), "--record", str(record),
                "--history", str(out / "history.csv"), "--params", str(params),
            ]  # fmt: skip
            evaluate = [
                args.variant, "--data", data, "--model", str(model), "--record", str(record),
                "--metrics", str(out / "metrics.json"), "--predictions", str(out / "pred.csv"),
                "--per-class", str(out / "per_class.csv"), "--provenance",
                str(out / "provenance.json"), "--params", str(params),
            ]  # fmt: skip
            results["runs"][label] = {
                stage: measure(stage, stage_args, env, work, label.replace(" #", "-"))
                for stage, stage_args in (("train", train), ("evaluate", evaluate))
            }
            print(f"measured {label}", file=sys.stderr, flush=True)
    return results


def show(results: dict[str, Any]) -> None:
    labels = list(results["runs"])
    print(f"{results['variant']}, {', '.join(results['settings'])}, on {results['machine']}")
    for stage in STAGES:
        order = _tree_order([results["runs"][label][stage]["rows"] for label in labels])
        width = max(len(_indented(key)) for key in order) + 2
        print(f"\n{stage} (seconds; calls in brackets where more than one)")
        print(" " * width + "".join(f"{label:>14}" for label in labels))
        for key in order:
            cells = []
            for label in labels:
                seconds, calls = results["runs"][label][stage]["rows"].get(key, (None, 0))
                cell = (
                    ""
                    if seconds is None
                    else f"{seconds:.2f}" + (f" ({calls})" if calls > 1 else "")
                )
                cells.append(f"{cell:>14}")
            print(f"{_indented(key):<{width}}" + "".join(cells))
        for total in ("wall", "outside_training"):
            values = "".join(f"{results['runs'][label][stage][total]:>14.2f}" for label in labels)
            print(f"{total.replace('_', ' '):<{width}}{values}")


def _tree_order(runs: list[dict[str, Any]]) -> list[str]:
    """Every row of every run, each under its parent, siblings in the order they first ran."""
    seen: dict[str, int] = {}
    for rows in runs:
        for key in rows:
            seen.setdefault(key, len(seen))

    def place(key: str) -> tuple[int, ...]:
        parts = key.split(" > ")
        return tuple(seen.get(" > ".join(parts[: depth + 1]), -1) for depth in range(len(parts)))

    return sorted(seen, key=place)


def _indented(key: str) -> str:
    parts = key.split(" > ")
    return "  " * (len(parts) - 1) + parts[-1]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:  # --child STAGE --timings FILE -- STAGE_ARGS...
        return run_child(argv[1], Path(argv[3]), argv[5:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variant", nargs="?", default="cnn74")
    parser.add_argument("--data", type=Path, default=Path("data/processed/cifar10"))
    parser.add_argument("--params", type=Path, default=PROJECT_ROOT / "params.yaml")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a params.yaml override applied after profile=smoke, as dvc exp run -S",
    )
    parser.add_argument("--backends", default="jax,tensorflow")
    parser.add_argument("--runs", type=int, default=2, help="runs per backend (the first: cold)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/deeplecture-stage-overhead"))
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--show", type=Path, help="print the tables of a saved --json")
    args = parser.parse_args(argv)
    if args.show:
        show(json.loads(args.show.read_text()))
        return 0
    results = run(args)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    show(results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
