"""The CIFAR-10 progression on a GPU machine without DVC or internet: the pipeline's own stage
commands, read from dvc.yaml, run in order; then a summary and one archive of the results.

    python scripts/gpu/run_progression.py --archive .gpu/cifar10-jpeg.tar.gz --out "$OUT" \
        [--profile full|smoke] [--variants cnn74,cnn79,cnn84,cnn88] [--set KEY=VALUE ...]
        [--phases progression,benchmark,determinism] [--benchmark-epochs 25] [--seeds N]

Usually started by scripts/gpu/run.sh, which installs the missing packages from .whl/ first.
Phases:
  progression   download (the archive, hash-checked) -> preprocess -> train and evaluate each
                variant -> report, exactly as `dvc repro` would run them, logged to MLflow
                (mlflow.db); prints each variant's accuracy and training time, the total, and
                whether the 74 < 79 < 84 < 88 ordering holds
  benchmark     benchmarks/train_speed.py: cnn74, plain port against the pipeline
  determinism   benchmarks/train_speed.py: the pipeline twice with deterministic kernels and once
                without, a few epochs each: cost per epoch, and whether repeats are bit-identical
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
import subprocess
import sys
import tarfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from deeplecture.runtime import XLA_DETERMINISTIC_FLAG

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PHASES = ("progression", "benchmark", "determinism")
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
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=Path, default=PROJECT_ROOT / ".gpu/cifar10-jpeg.tar.gz")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "gpu-results")))
    parser.add_argument("--profile", choices=("full", "smoke"), default="full")
    parser.add_argument("--variants", default="cnn74,cnn79,cnn84,cnn88")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a params.yaml override, as dvc exp run -S")  # fmt: skip
    parser.add_argument("--phases", default="progression")
    parser.add_argument("--benchmark-epochs", type=int, default=25)
    parser.add_argument("--determinism-epochs", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=0, help="a seed sweep of N runs per variant")
    args = parser.parse_args(argv)
    if unknown := sorted(set(args.phases.split(",")) - set(PHASES)):
        parser.error(f"unknown phase(s) {', '.join(unknown)}; known: {', '.join(PHASES)}")
    if args.seeds < 0:
        parser.error(f"--seeds {args.seeds}: expected a count of 0 or more")
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

    if args.seeds:
        summary["seeds"] = run_seeds(variants, args.seeds, overrides)

    (extra / "gpu-run.json").write_text(json.dumps(summary, indent=2) + "\n")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu-run.json").write_text(json.dumps(summary, indent=2) + "\n")
    pack_results(args.out / "gpu-results.tar.gz")
    print(f"results: {args.out / 'gpu-results.tar.gz'}", flush=True)
    return 0 if summary.get("progression", {}).get("ok", True) else 1


def run_progression(variants: list[str]) -> dict[str, Any]:
    """The pipeline's stages for `variants`, as dvc.yaml defines them, in dependency order."""
    stages = [("download", "cifar10"), ("preprocess", "cifar10")]
    for variant in variants:
        stages += [("train", variant), ("evaluate", variant)]
    if set(variants) == {"cnn74", "cnn79", "cnn84", "cnn88"}:
        stages.append(("report", None))  # it reads all four
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


def stage_command(stage: str, key: str | None) -> list[str]:
    """dvc.yaml's command for `stage` (with `${key}`/`${item}` of its foreach filled in)."""
    stages = YAML(typ="safe", pure=True).load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"]
    definition = stages[stage]
    if key is None:
        command = definition["cmd"]
    else:
        foreach = _resolve_template(definition["foreach"])
        if key not in foreach:
            raise SystemExit(f"error: dvc.yaml: {stage} has no foreach entry {key!r}")
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
