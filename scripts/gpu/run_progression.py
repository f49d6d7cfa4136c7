"""The CIFAR-10 progression on a GPU machine without DVC or internet: the pipeline's own stage
commands, read from dvc.yaml, run in order; then a summary and one archive of the results.

    python scripts/gpu/run_progression.py --archive .gpu/cifar10-jpeg.tar.gz --out "$OUT" \
        [--profile full|smoke] [--variants cnn74,cnn79,cnn84,cnn88] [--set KEY=VALUE ...]
        [--phases progression,benchmark,determinism,seeds] [--benchmark-epochs 25] [--seeds N]
        [--budget 540 --together-seeds 8 --bench-variants cnn74,cnn88 --bench-seeds 1,4,8]

Usually started by scripts/gpu/run.sh, which installs the missing packages from .whl/ first.
Phases:
  progression   download (the archive, hash-checked) -> preprocess -> train and evaluate each
                variant -> report, exactly as `dvc repro` would run them, logged to MLflow
                (mlflow.db); prints each variant's accuracy and training time, the total, and
                whether the 74 < 79 < 84 < 88 ordering holds
  benchmark     benchmarks/train_speed.py: cnn74, plain port against the pipeline
  determinism   benchmarks/train_speed.py: the pipeline twice with deterministic kernels and once
                without, a few epochs each: cost per epoch, and whether repeats are bit-identical
  seeds         seeds trained together, within --budget seconds counted from run.sh's start:
                benchmarks/train_speed.py's seed arms for each of --bench-variants (one seed
                alone; --bench-seeds seeds together, vectorised; --bench-sequential-seeds through
                one step in turn), then each of --variants with --together-seeds seeds together
                (the together stage of sweeps/together.yaml, as `deeplecture-sweep run --together`
                runs it), as the sweep `gpu-<profile>-together<N>`, while the time its measured
                rate predicts fits what is left; then the report. Each finished result is written
                into OUT at once: a call killed at its limit keeps what finished
--seeds N (after the phases): the variants again under seeds 0..N-1, tagged as the sweep
`gpu-<profile>-seeds`, collected into reports/sweeps/ and shown by the regenerated report with
n, mean ± std, intervals and the gains' verdicts (as `deeplecture-sweep run` does with DVC).
Everything lands in OUT/gpu-results.tar.gz (metrics, histories, predictions, training records,
the regenerated report, the MLflow store, benchmark tables, gpu-run.json) and OUT/gpu-run.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from deeplecture.atomic import atomic_path
from deeplecture.catalog import CIFAR10
from deeplecture.runtime import XLA_DETERMINISTIC_FLAG

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PHASES = ("progression", "benchmark", "determinism", "seeds")
PROGRESSION = [variant.name for variant in CIFAR10.variants]  # the catalog's, in order
SWEEP_PIPELINE = PROJECT_ROOT / "sweeps" / "together.yaml"  # the together stage
RUN_PARAMS = PROJECT_ROOT / "gpu-results" / "params.yaml"  # params.yaml with this run's overrides
RESULT_GLOBS = (
    "metrics/cifar10/*.json",
    "plots/*/cifar10/*",
    "models/cifar10/*.train.json",
    "reports/results.md",
    "reports/sweeps/*.json",
    "reports/figures/**/*.png",
    "mlflow.db",
    "gpu-results/*",
    # the together stage's seeds: everything but the model files (megabytes each)
    "models/sweeps/cifar10/*/seed*/*.json",
    "models/sweeps/cifar10/*/seed*/*.csv",
)
# The seeds phase.
STARTED = time.time()  # the budget's start when run.sh has not set DEEPLECTURE_GPU_STARTED
SEEDS_TOGETHER_ARMS = ("seeds-together", "seeds-sequential")  # the benchmark's, by strategy
# The network whose measured rate stands for a variant without a benchmark of its own (cnn79
# is cnn74 with batch normalization; cnn84 is cnn88 without augmentation), and by how much its
# estimate is stretched then: a borrowed rate is a guess.
STAND_INS = {"cnn79": "cnn74", "cnn84": "cnn88"}
BORROWED_RATE_FACTOR = 1.5
# A together stage's seconds outside training, before one has run: start-up, evaluating and
# logging each seed. Replaced by what the last stage measured.
STAGE_OVERHEAD_S, STAGE_OVERHEAD_PER_SEED_S = 30.0, 3.0
STOP_GRACE_S = 30.0  # after SIGTERM, a stage stops at its next safe point (an epoch's end)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=Path, default=PROJECT_ROOT / ".gpu/cifar10-jpeg.tar.gz")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "gpu-results")))
    parser.add_argument("--profile", choices=("full", "smoke"), default="full")
    parser.add_argument("--variants", default=",".join(PROGRESSION))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a params.yaml override, as dvc exp run -S")  # fmt: skip
    parser.add_argument("--phases", default="progression")
    parser.add_argument("--benchmark-epochs", type=int, default=25)
    parser.add_argument("--determinism-epochs", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=0, help="a seed sweep of N runs per variant")
    seeds = parser.add_argument_group("the seeds phase")
    seeds.add_argument(
        "--budget",
        type=float,
        default=540.0,
        help="seconds for the whole call, from run.sh's start (default 540: 9 min)",
    )
    seeds.add_argument("--together-seeds", type=int, default=8, help="seeds trained together")
    seeds.add_argument("--bench-variants", default="cnn74,cnn88", help="'' for none")
    seeds.add_argument("--bench-seeds", default="1,4,8", help="seeds-together's numbers of seeds")
    seeds.add_argument(
        "--bench-sequential-seeds",
        default="4",
        help="seeds-sequential's numbers of seeds ('' to leave the arm out)",
    )
    seeds.add_argument("--bench-epochs", type=int, default=2, help="the first one compiles")
    seeds.add_argument(
        "--reserve",
        type=float,
        default=45.0,
        help="seconds kept for the report and the last archive (default 45)",
    )
    args = parser.parse_args(argv)
    if unknown := sorted(set(args.phases.split(",")) - set(PHASES)):
        parser.error(f"unknown phase(s) {', '.join(unknown)}; known: {', '.join(PHASES)}")
    if args.seeds < 0:
        parser.error(f"--seeds {args.seeds}: expected a count of 0 or more")
    if args.together_seeds < 1:
        parser.error(f"--together-seeds {args.together_seeds}: expected 1 or more")
    if not args.archive.is_file():
        parser.error(f"--archive {args.archive}: no such file (scripts/gpu/prepare.sh copies it)")

    os.chdir(PROJECT_ROOT)
    overrides = {
        "profile": args.profile,
        "data.cifar10.source": str(args.archive.resolve()),
        **dict(_parse_override(item) for item in args.set),
    }
    return run_phases(args, overrides)


def run_phases(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    phases = args.phases.split(",")
    summary: dict[str, Any] = {"environment": describe_environment(), "overrides": overrides}
    if summary["environment"]["keras_backend"] == "jax":
        probe = probe_xla_deterministic_flag()
        summary["xla_deterministic_flag"] = probe
        if not probe["accepted"]:
            # Unknown to this XLA: every stage would abort at start-up. Train without it and say so.
            print(f"warning: XLA refused {XLA_FLAG}: {probe['error']}; training with "
                  "engine.deterministic=false", flush=True)  # fmt: skip
            overrides["engine.deterministic"] = False
    print(json.dumps(summary["environment"], indent=2), flush=True)
    extra = PROJECT_ROOT / "gpu-results"
    extra.mkdir(exist_ok=True)
    # The stages read this copy (--params), never an edited params.yaml: a kill of this script
    # leaves the checkout as it was.
    write_params(PROJECT_ROOT / "params.yaml", overrides, RUN_PARAMS)

    variants = args.variants.split(",")
    if "progression" in phases:
        summary["progression"] = run_progression(variants)
    if "benchmark" in phases:
        summary["benchmark"] = run_benchmark(
            extra / "benchmark-cnn74.json",
            ["--arms", "plain,pipeline", "--epochs", str(args.benchmark_epochs)],
        )
    if "determinism" in phases:
        summary["determinism"] = run_benchmark(
            extra / "determinism-cnn74.json",
            ["--arms", "pipeline,pipeline,pipeline-nondeterministic",
             "--epochs", str(args.determinism_epochs)],
        )  # fmt: skip

    if "seeds" in phases:
        budget = Budget(args.budget, float(os.environ.get("DEEPLECTURE_GPU_STARTED", STARTED)))
        summary["seeds_phase"] = {}  # filled in as it goes: each save has what finished
        run_seeds_phase(
            args, variants, budget, summary["seeds_phase"], lambda: save_results(summary, args.out)
        )
    if args.seeds:
        summary["seeds"] = run_seeds(variants, args.seeds, overrides)

    save_results(summary, args.out)
    print(f"results: {args.out / 'gpu-results.tar.gz'}", flush=True)
    ok = summary.get("progression", {}).get("ok", True)
    return 0 if ok and summary.get("seeds_phase", {}).get("ok", True) else 1


def save_results(summary: dict[str, Any], out: Path) -> None:
    """The summary and the archive of every result so far, into `out`, each whole or not at
    all: what the device brings back after a kill is what finished."""
    text = json.dumps(summary, indent=2) + "\n"
    (PROJECT_ROOT / "gpu-results" / "gpu-run.json").write_text(text)
    out.mkdir(parents=True, exist_ok=True)
    _write_whole(out / "gpu-run.json", lambda path: path.write_text(text))
    _write_whole(out / "gpu-results.tar.gz", pack_results)


def _write_whole(path: Path, write: Callable[[Path], object]) -> None:
    with atomic_path(path) as partial:  # the project's own: renamed into place when whole
        write(partial)


def run_progression(variants: list[str]) -> dict[str, Any]:
    """The pipeline's stages for `variants`, as dvc.yaml defines them, in dependency order."""
    stages = [("download", "cifar10"), ("preprocess", "cifar10")]
    for variant in variants:
        stages += [("train", variant), ("evaluate", variant)]
    if set(variants) == set(PROGRESSION):
        stages.append(("report", None))  # it reads every one
    seconds: dict[str, float] = {}
    failed = run_stages(stages, RUN_PARAMS, seconds)
    if failed:
        return {"ok": False, "failed_stage": failed, "stage_seconds": seconds}

    results = {}
    for variant in variants:
        metrics = json.loads((PROJECT_ROOT / f"metrics/cifar10/{variant}.json").read_text())
        results[variant] = {
            key: metrics[key]
            for key in ("test_accuracy", "test_loss", "lecture_accuracy", "epochs", "train_seconds")
        }
    accuracies = [results[v]["test_accuracy"] for v in variants]
    total = sum(result["train_seconds"] for result in results.values())
    ordering = all(a < b for a, b in zip(accuracies, accuracies[1:], strict=False))
    print(f"{'variant':<8} {'lecture':>8} {'test acc':>9} {'train s':>9}")
    for variant, result in results.items():
        print(
            f"{variant:<8} {result['lecture_accuracy']:>8.2f} {result['test_accuracy']:>9.4f} "
            f"{result['train_seconds']:>9.1f}"
        )
    verdict = "holds" if ordering else "does NOT hold"
    print(f"training in total: {total:.1f} s ({total / 60:.2f} min); ordering "
          f"{' < '.join(variants)} {verdict}", flush=True)  # fmt: skip
    return {
        "ok": True,
        "variants": results,
        "total_train_seconds": round(total, 1),
        "ordering_holds": ordering,
        "stage_seconds": seconds,
    }


def run_stages(
    stages: list[tuple[str, str | None]], params: Path, seconds: dict[str, float]
) -> str | None:
    """Run the stages in order with `params`, timing each into `seconds`; the first that
    failed, or None."""
    for stage, key in stages:
        name = f"{stage}@{key}" if key else stage
        print(f"=== {name}", flush=True)
        started = time.perf_counter()
        done = subprocess.run(
            [*stage_command(stage, key), "--params", str(params)], cwd=PROJECT_ROOT
        )
        seconds[name] = round(time.perf_counter() - started, 1)
        if done.returncode != 0:
            print(f"error: stage {name} failed (exit {done.returncode})", flush=True)
            return name
    return None


def run_seeds(variants: list[str], seeds: int, overrides: dict[str, Any]) -> dict[str, Any]:
    """Train and evaluate `variants` under seeds 0..seeds-1 as one sweep; collect it from the
    MLflow store into reports/sweeps/, and rebuild the report, which shows it."""
    from deeplecture.sweeps.collect import write_summary
    from deeplecture.sweeps.stats import spread

    sweep = f"gpu-{overrides['profile']}-seeds"
    seconds: dict[str, float] = {}
    failed = run_stages([("download", "cifar10"), ("preprocess", "cifar10")], RUN_PARAMS, seconds)
    for seed in range(seeds):
        if failed:
            return {"ok": False, "failed_stage": failed, "stage_seconds": seconds}
        params = PROJECT_ROOT / "gpu-results" / f"params-{sweep}-{seed}.yaml"
        per_seed = {f"train.{variant}.seed": seed for variant in variants}
        write_params(
            PROJECT_ROOT / "params.yaml", {**overrides, "sweep": sweep, **per_seed}, params
        )
        stages = [(stage, v) for v in variants for stage in ("train", "evaluate")]
        seed_seconds: dict[str, float] = {}
        failed = run_stages(stages, params, seed_seconds)
        seconds.update({f"{name} (seed {seed})": value for name, value in seed_seconds.items()})
    if failed:
        return {"ok": False, "failed_stage": failed, "stage_seconds": seconds}
    summary = write_summary(sweep, PROJECT_ROOT / "reports" / "sweeps" / f"{sweep}.json")
    run_stages([("report", None)], RUN_PARAMS, seconds)
    results = {}
    for variant in variants:
        accuracy = spread([r["test_accuracy"] for r in summary["runs"] if r["variant"] == variant])
        results[variant] = {"n": accuracy.n, "mean": accuracy.mean, "std": accuracy.std}
        std = "no spread" if accuracy.std is None else f"± {accuracy.std:.4f}"
        print(f"{sweep} {variant}: n={accuracy.n} mean {accuracy.mean:.4f} {std}", flush=True)
    return {"ok": True, "sweep": sweep, "variants": results}


class Budget:
    """The seconds left of a call's budget, counted from `started` (a time.time())."""

    def __init__(self, seconds: float, started: float) -> None:
        self.seconds, self.started = seconds, started

    def left(self) -> float:
        return self.seconds - (time.time() - self.started)


def run_seeds_phase(
    args: argparse.Namespace,
    variants: list[str],
    budget: Budget,
    phase: dict[str, Any],
    save: Callable[[], None],
) -> None:
    """The seeds phase (module docstring), recorded into `phase` as it goes, each finished
    result saved at once by `save()`."""
    seconds: dict[str, float] = {}
    phase |= {"budget_s": args.budget, "benchmarks": {}, "together": {}, "stage_seconds": seconds}
    failed = run_stages([("download", "cifar10"), ("preprocess", "cifar10")], RUN_PARAMS, seconds)
    if failed:
        phase |= {"ok": False, "failed_stage": failed}
        return
    save()

    usable = lambda: budget.left() - args.reserve  # noqa: E731 - seconds for new work
    bench_variants = [v for v in args.bench_variants.split(",") if v]
    for variant in bench_variants:
        path = args.out / f"seeds-bench-{variant}.json"
        phase["benchmarks"][variant] = run_seeds_benchmark(variant, args, path, usable())
        save()

    seeds = list(range(args.together_seeds))
    sweep = f"gpu-{load_params_of(RUN_PARAMS).profile}-together{len(seeds)}"
    phase["sweep"] = sweep
    params_path = PROJECT_ROOT / "gpu-results" / f"params-{sweep}.yaml"
    write_params(RUN_PARAMS, {"sweep": sweep, "together.seeds": seeds}, params_path)
    params = load_params_of(params_path)
    strategy = together_strategy(params.together.strategy)
    overhead = STAGE_OVERHEAD_S + STAGE_OVERHEAD_PER_SEED_S * len(seeds)
    for variant in variants:
        estimate = estimate_together_seconds(
            variant, len(seeds), strategy, phase["benchmarks"], train_images(variant, params),
            params.train[variant], overhead,
        )  # fmt: skip
        left = usable()
        record: dict[str, Any] = {"estimate_s": estimate, "left_s": round(left, 1)}
        phase["together"][variant] = record
        if left <= 0 or (estimate is not None and estimate > left):
            record["skipped"] = "no time left" if left <= 0 else "does not fit"
            print(f"=== together@{variant} x {len(seeds)} seeds: skipped ({record['skipped']}: "
                  f"estimate {estimate} s, {left:.0f} s left)", flush=True)  # fmt: skip
            continue
        # Without a measured rate (no benchmark ran) it runs until the budget stops it.
        print(f"=== together@{variant} x {len(seeds)} seeds (estimate {estimate} s, "
              f"{left:.0f} s left)", flush=True)  # fmt: skip
        command = [*stage_command("together", variant, SWEEP_PIPELINE), "--params",
                   str(params_path)]  # fmt: skip
        status, took, out_of_time = run_until(command, left)
        record |= {"exit": status, "seconds": round(took, 1)}
        if status != 0:
            record["stopped"] = "at the budget" if out_of_time else "failed"
            save()
            continue
        if estimate is not None:  # what it spent beyond the predicted training: the next overhead
            overhead = max(10.0, took - (estimate - overhead))
        record["results"] = collect_together(sweep, variant, args.out)
        save()

    if any("results" in record for record in phase["together"].values()):
        report_seconds: dict[str, float] = {}
        failed = run_stages([("report", None)], RUN_PARAMS, report_seconds)
        phase["report"] = {"ok": failed is None, "seconds": report_seconds.get("report")}
        if failed is None:
            shutil.copyfile(PROJECT_ROOT / "reports" / "results.md", args.out / "results.md")
    phase |= {"ok": True, "left_s": round(budget.left(), 1)}


def run_seeds_benchmark(
    variant: str, args: argparse.Namespace, path: Path, seconds: float
) -> dict[str, Any]:
    """train_speed.py's seed arms for `variant`, stopped after `seconds`; its JSON, rewritten
    after every arm, is written straight into `path`."""
    if seconds <= 0:
        print(f"=== seeds benchmark {variant}: skipped (no time left)", flush=True)
        return {"skipped": "no time left"}
    arms = ["seeds-one-by-one", "seeds-together"]
    counts = ["--arm-seeds", "seeds-one-by-one=1"]
    if args.bench_sequential_seeds:
        arms.append("seeds-sequential")
        counts += ["--arm-seeds", f"seeds-sequential={args.bench_sequential_seeds}"]
    command = [
        sys.executable, "benchmarks/train_speed.py", "--data", "data/processed/cifar10",
        "--variant", variant, "--params", str(RUN_PARAMS), "--epochs", str(args.bench_epochs),
        "--test-images", "2000", "--arms", ",".join(arms), "--seeds", args.bench_seeds, *counts,
        "--json", str(path),
    ]  # fmt: skip
    print(f"=== {shlex.join(command[1:])} (at most {seconds:.0f} s)", flush=True)
    status, took, out_of_time = run_until(command, seconds)
    result: dict[str, Any] = {"exit": status, "seconds": round(took, 1)}
    if out_of_time:
        result["stopped"] = "at the budget"
    if path.is_file():
        result["arms"] = [_rate_fields(arm) for arm in json.loads(path.read_text())["arms"]]
    return result


def _rate_fields(arm: dict[str, Any]) -> dict[str, Any]:
    keys = ("arm", "strategy", "seeds", "first_call_s", "images_per_s", "images_per_s_per_seed",
            "test_accuracy", "error")  # fmt: skip
    return {key: arm[key] for key in keys if key in arm}


def together_strategy(asked: str) -> str:
    """The strategy `loops.seeds` takes for `asked`: auto is vmap on an accelerator."""
    if asked != "auto":
        return asked
    return "vmap" if describe_environment()["gpu"] != "none" else "sequential"


def estimate_together_seconds(
    variant: str,
    seeds: int,
    strategy: str,
    benchmarks: dict[str, dict[str, Any]],
    images: int,
    train: Any,
    overhead: float,
) -> float | None:
    """Seconds the together stage of `variant` should take at `seeds` seeds: its epochs at the
    rate the benchmark measured for this strategy (its own variant's, else a stand-in's,
    stretched), plus the first call's compilation and `overhead`. None: nothing measured.

    The rate is the measured all-seeds images/s at the most seeds measured up to `seeds`:
    more seeds are assumed to gain nothing more, so the estimate errs long."""
    preferred = {"vmap": "seeds-together", "sequential": "seeds-sequential"}.get(strategy)
    sources = [(variant, 1.0)]
    if variant in STAND_INS:
        sources.append((STAND_INS[variant], BORROWED_RATE_FACTOR))
    sources += [(other, BORROWED_RATE_FACTOR) for other in sorted(benchmarks) if other != variant]
    for source, factor in sources:
        rate = _measured_rate(benchmarks.get(source, {}).get("arms", []), preferred, seeds)
        if rate is None:
            continue
        steps = train.steps_per_epoch
        per_epoch = images if steps is None else steps * train.batch_size
        training = factor * train.epochs * per_epoch * seeds / rate["images_per_s"]
        return round(training + rate["first_call_s"] + overhead, 1)
    return None


def _measured_rate(arms: list[dict[str, Any]], preferred: str | None, seeds: int) -> dict | None:
    """The finished together arm to estimate from: the strategy's own arm if measured, at the
    most seeds up to `seeds` (else the fewest measured)."""
    together = [a for a in arms if a["arm"] in SEEDS_TOGETHER_ARMS and "error" not in a]
    chosen = [a for a in together if a["arm"] == preferred] or together
    if not chosen:
        return None
    up_to = [a for a in chosen if a["seeds"] <= seeds]
    return max(up_to, key=lambda a: a["seeds"]) if up_to else min(chosen, key=lambda a: a["seeds"])


def train_images(variant: str, params: Any) -> int:
    """The images `variant` trains on: the fit split, or with the lecture's cnn88 quirk
    (validation on the test set) the fit and validation splits together."""
    info = json.loads((PROJECT_ROOT / "data/processed/cifar10/info.json").read_text())
    counts = {split: sum(per_class) for split, per_class in info["class_counts"].items()}
    if params.train[variant].validation == "split":
        return counts["train"]
    return counts["train"] + counts["validation"]


def load_params_of(path: Path) -> Any:
    from deeplecture.params import load_params

    return load_params(path)


def collect_together(sweep: str, variant: str, out: Path) -> dict[str, Any]:
    """The sweep collected from MLflow into reports/sweeps/ and a copy in `out`; `variant`'s
    test accuracy over its seeds."""
    from deeplecture.sweeps.collect import write_summary
    from deeplecture.sweeps.stats import spread

    path = PROJECT_ROOT / "reports" / "sweeps" / f"{sweep}.json"
    summary = write_summary(sweep, path)
    _write_whole(out / path.name, lambda partial: shutil.copyfile(path, partial))
    accuracy = spread([r["test_accuracy"] for r in summary["runs"] if r["variant"] == variant])
    std = "no spread" if accuracy.std is None else f"± {accuracy.std:.4f}"
    print(f"{sweep} {variant}: n={accuracy.n} mean {accuracy.mean:.4f} {std}", flush=True)
    return {"n": accuracy.n, "mean": accuracy.mean, "std": accuracy.std}


def run_until(command: list[str], seconds: float) -> tuple[int, float, bool]:
    """Run `command` (its own process group) for at most `seconds`, then SIGTERM, so a stage
    stops at a safe point, and SIGKILL after STOP_GRACE_S; (exit status, seconds it ran,
    whether the time ran out)."""
    started = time.perf_counter()
    child = subprocess.Popen(command, cwd=PROJECT_ROOT, start_new_session=True)
    try:
        status = child.wait(timeout=max(seconds, 1.0))
        return status, time.perf_counter() - started, False
    except subprocess.TimeoutExpired:
        print(f"stopping it: its {seconds:.0f} s are spent", flush=True)
        os.killpg(child.pid, signal.SIGTERM)
        try:
            child.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
        return child.returncode, time.perf_counter() - started, True


# MaxPooling's gradient (a scatter) is what XLA's deterministic-ops flag changes on a GPU.
XLA_FLAG = XLA_DETERMINISTIC_FLAG
XLA_PROBE = """
import jax, jax.numpy as jnp
def pooled_sum(x):
    window = (1, 2, 2, 1)
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, window, window, "VALID").sum()
print(float(jax.jit(jax.grad(pooled_sum))(jnp.ones((8, 32, 32, 3))).sum()))
"""


def probe_xla_deterministic_flag() -> dict[str, Any]:
    """Whether this JAX's XLA accepts the flag and compiles a MaxPooling gradient under it."""
    env = {**os.environ, "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} {XLA_FLAG}".strip()}
    done = subprocess.run(
        [sys.executable, "-c", XLA_PROBE], env=env, capture_output=True, text=True, check=False
    )
    lines = (done.stderr or done.stdout).strip().splitlines()
    error = lines[-1] if lines and done.returncode != 0 else None
    return {"flag": XLA_FLAG, "accepted": done.returncode == 0, "error": error}


def run_benchmark(json_path: Path, arguments: list[str]) -> dict[str, Any]:
    command = [
        sys.executable, "benchmarks/train_speed.py", "--data", "data/processed/cifar10",
        "--variant", "cnn74", "--json", str(json_path), "--params", str(RUN_PARAMS), *arguments,
    ]  # fmt: skip
    print(f"=== {shlex.join(command[1:])}", flush=True)
    if subprocess.run(command, cwd=PROJECT_ROOT).returncode != 0:
        return {"ok": False}
    return json.loads(json_path.read_text())


def stage_command(
    stage: str, key: str | None, pipeline: Path = PROJECT_ROOT / "dvc.yaml"
) -> list[str]:
    """`pipeline`'s command for `stage` (with `${key}`/`${item}` of its foreach filled in)."""
    stages = YAML(typ="safe", pure=True).load(pipeline.read_text())["stages"]
    definition = stages[stage]
    if key is None:
        command = definition["cmd"]
    else:
        foreach = _resolve_template(definition["foreach"])
        if key not in foreach:
            raise SystemExit(f"error: {pipeline.name}: {stage} has no foreach entry {key!r}")
        item = foreach[key] if isinstance(foreach, dict) else key
        command = definition["do"]["cmd"].replace("${key}", key)
        if isinstance(item, str):
            command = command.replace("${item}", item)
    words = shlex.split(command)
    return [sys.executable if words[0] == "python" else words[0], *words[1:]]


def _resolve_template(value: Any) -> Any:
    """A foreach written `${variants.cifar10}`: the params.yaml value it names, as DVC reads it."""
    if not (isinstance(value, str) and value.startswith("${") and value.endswith("}")):
        return value
    node = YAML(typ="safe", pure=True).load((PROJECT_ROOT / "params.yaml").read_text())
    for part in value[2:-1].split("."):
        node = node[part]
    return node


def write_params(source: Path, overrides: dict[str, Any], destination: Path) -> None:
    """`source` with dotted-key overrides applied (as `dvc exp run -S`), comments kept, written
    to `destination`; `source` itself is never touched."""
    from deeplecture.params import ParamsError, set_dotted

    yaml = YAML()
    document = yaml.load(source.read_text())
    for dotted, value in overrides.items():
        try:
            set_dotted(document, dotted, value)
        except ParamsError as error:
            raise SystemExit(f"error: params.yaml: {error}") from None
    destination.parent.mkdir(parents=True, exist_ok=True)
    with destination.open("w") as handle:
        yaml.dump(document, handle)


def _parse_override(item: str) -> tuple[str, Any]:
    key, separator, value = item.partition("=")
    if not separator:
        raise SystemExit(f"error: --set {item!r}: expected KEY=VALUE")
    return key, YAML(typ="safe", pure=True).load(value)


def describe_environment() -> dict[str, Any]:
    versions = {}
    for package in ("keras", "jax", "jaxlib", "torch", "tensorflow", "mlflow-skinny", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    gpu = subprocess.run(
        ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
        capture_output=True, text=True, check=False,
    ).stdout.strip() if _has("nvidia-smi") else "none"  # fmt: skip
    return {
        "gpu": gpu,
        "keras_backend": os.environ.get("KERAS_BACKEND", "tensorflow"),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "versions": versions,
    }


def _has(program: str) -> bool:
    return any((Path(folder) / program).is_file() for folder in os.environ["PATH"].split(":"))


def pack_results(path: Path) -> None:
    with tarfile.open(path, "w:gz") as archive:
        for pattern in RESULT_GLOBS:
            for file in sorted(PROJECT_ROOT.glob(pattern)):
                archive.add(file, arcname=str(file.relative_to(PROJECT_ROOT)))


if __name__ == "__main__":
    raise SystemExit(main())
