"""Train one variant two ways on the same data and machine, and print them side by side.

    python benchmarks/train_speed.py --data data/processed/cifar10 --variant cnn74 \
        [--train-images 5000 --test-images 1000] [--epochs 3] [--arms plain,pipeline] [--json F]
    python benchmarks/train_speed.py --data ... --variant cnn88 \
        --arms seeds-one-by-one,seeds-together,seeds-sequential --seeds 1,2,4,8,16
    python benchmarks/train_speed.py --show F     # the table of a saved run

Arms (each runs in a process of its own, so none inherits another's compiled functions):
  plain     a plain port of the lecture's script: pixels / 255 on the host as float32, then
            `model.fit(x, y, batch_size, epochs, validation_split=0.1)` with Keras' defaults
            (cnn88: a Python generator of batches with steps_per_epoch, as the lecture's
            ImageDataGenerator.flow)
  pipeline  what `dvc repro` runs: params.yaml's engine (the fast loop by default), uint8
            pixels scaled inside the model, the same epochs and batch size
  pipeline-nondeterministic, pipeline-bf16
            the pipeline with engine.deterministic false, or engine.precision mixed_bfloat16
  pipeline-data-parallel
            the pipeline with engine.distribution data_parallel over every device (JAX only):
            the GPUs of the machine, or on a CPU `--virtual-devices N` host devices, which share
            the same cores and so show the overhead of splitting a batch, never a speed-up

It prints, per arm: the first epoch (compilation included), the median of the later epochs,
training images per second at that median, test accuracy, and a digest of the trained weights
(two arms with equal digests trained bit for bit the same model); then the plain port's median
epoch time over each arm's, and the accuracy difference. The backend is KERAS_BACKEND's.

Seed arms train N seeds of the variant (seeds 0 ... N-1, as `deeplecture-sweep run --seeds N`),
once for each N of `--seeds`, each N in a process of its own:
  seeds-one-by-one   each seed alone in turn with the pipeline's loop: what a sweep of single
                     runs costs, every seed compiling its own program (N seeds one by one cost N
                     times one alone: `--arm-seeds seeds-one-by-one=1` saves the rest)
  seeds-together     the seeds through one program, vectorised over their stacked states
                     (`loops.seeds`, strategy vmap; JAX only)
  seeds-sequential   the seeds through one compiled step, one seed's state after another
                     (strategy sequential, what "auto" picks on a CPU; JAX only)
A seed table prints, per arm and N: the first compiled call (compilation included; one by one,
every seed's summed), the median later epoch's training time for all N seeds (validation
excluded), the images per second of all seeds and per seed, that over one-by-one's at the same N
and at N = 1, the mean test accuracy, and how many seeds trained bit for bit the weights they
train one by one. `--json` is rewritten after every arm: a run killed midway keeps what finished.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# Seed arms: how the N seeds train (the strategy of `loops.seeds`; None: each alone, in turn). A
# strategy that `loops.seeds` gains (a jax.lax.map over the seeds, say) is one more entry here.
SEED_ARMS = {
    "seeds-one-by-one": None,
    "seeds-together": "vmap",
    "seeds-sequential": "sequential",
}
ARMS = (
    "plain",
    "pipeline",
    "pipeline-nondeterministic",
    "pipeline-bf16",
    "pipeline-data-parallel",
    *SEED_ARMS,
)
RESULT_PREFIX = "RESULT "


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="a preprocessed dataset folder")
    parser.add_argument("--variant", default="cnn74")
    parser.add_argument("--epochs", type=int, help="default: the variant's params.yaml epochs")
    parser.add_argument("--train-images", type=int, help="use the first N training images")
    parser.add_argument("--test-images", type=int, help="use the first N test images")
    parser.add_argument("--arms", default="plain,pipeline", help=f"comma-separated: {ARMS}")
    parser.add_argument("--params", type=Path, default=PROJECT_ROOT / "params.yaml")
    parser.add_argument(
        "--virtual-devices", type=int, default=2,
        help="pipeline-data-parallel on a CPU: this many XLA host devices (default 2)",
    )  # fmt: skip
    parser.add_argument(
        "--seeds", type=_counts, default=[1, 2, 4, 8, 16],
        help="seed arms: the numbers of seeds to train, comma-separated (default 1,2,4,8,16)",
    )  # fmt: skip
    parser.add_argument(
        "--arm-seeds", type=_arm_counts, action="append", default=[], metavar="ARM=N,N",
        help="one seed arm's own numbers of seeds, instead of --seeds (e.g. seeds-one-by-one=1)",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--show", type=Path, help="print the table of a saved --json file")
    parser.add_argument("--arm", choices=ARMS, help=argparse.SUPPRESS)  # one arm, in a child
    parser.add_argument("--seed-count", type=int, default=1, help=argparse.SUPPRESS)  # its N
    args = parser.parse_args(argv)
    if args.show:
        print(format_table(json.loads(args.show.read_text())))
        return 0
    if args.data is None:
        parser.error("--data is required (a preprocessed dataset folder)")
    if args.arm:
        result = run_arm(args)
        print(RESULT_PREFIX + json.dumps(result), flush=True)
        return 0

    arms = args.arms.split(",")
    unknown = sorted(set(arms) - set(ARMS))
    if unknown:
        parser.error(f"unknown arm(s) {', '.join(unknown)}; known: {', '.join(ARMS)}")
    arguments = argv if argv is not None else sys.argv[1:]
    results: list[dict] = []
    for arm in arms:
        for count in _seed_counts(arm, args):
            label = f"{arm} x {count} seeds" if arm in SEED_ARMS else arm
            print(f"--- {label}", flush=True)
            results.append(_run_child(arm, count, arguments, args.virtual_devices))
            if args.json:
                _write_report(args.json, make_report(args.variant, results, arguments))
    report = make_report(args.variant, results, arguments)
    print(format_table(report))
    if args.json:
        _write_report(args.json, report)
    return 1 if any("error" in result for result in results) else 0


def _counts(text: str) -> list[int]:
    counts = [int(part) for part in text.split(",")]
    if any(count < 1 for count in counts):
        raise argparse.ArgumentTypeError(f"{text!r}: expected counts of 1 or more, as 1,2,4")
    return counts


def _arm_counts(text: str) -> tuple[str, list[int]]:
    arm, _, counts = text.partition("=")
    if arm not in SEED_ARMS:
        raise argparse.ArgumentTypeError(f"{text!r}: {arm!r} is not one of {', '.join(SEED_ARMS)}")
    return arm, _counts(counts)


def _seed_counts(arm: str, args: argparse.Namespace) -> list[int]:
    if arm not in SEED_ARMS:
        return [1]
    return dict(args.arm_seeds).get(arm, args.seeds)


def make_report(variant: str, results: list[dict], arguments: list[str]) -> dict:
    finished = [result for result in results if "error" not in result]
    return {
        "command": shlex.join(["python", "benchmarks/train_speed.py", *arguments]),
        "machine": _machine(finished[0]) if finished else None,
        "variant": variant,
        "arms": results,
        "repeats_identical": repeats_identical(finished),
    }


def _write_report(path: Path, report: dict) -> None:
    # Whole or not at all: a kill while writing leaves the previous arms' file.
    from deeplecture.atomic import write_json

    write_json(path, report)


def _run_child(arm: str, count: int, argv: list[str], virtual_devices: int) -> dict:
    # Stream the child's epoch lines as they come; keep its RESULT line.
    env = dict(os.environ)
    # Every arm compiles cold: a persistent compilation cache would let later arms load what
    # earlier ones compiled (the same step for another seed is the same program).
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    if arm == "pipeline-data-parallel":
        # JAX reads it at start-up; on a GPU machine it only adds CPU devices, which DataParallel
        # does not use (it takes the accelerators when there are any).
        flag = f"--xla_force_host_platform_device_count={virtual_devices}"
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {flag}".strip()
    child = subprocess.Popen(
        [sys.executable, __file__, *argv, "--arm", arm, "--seed-count", str(count)],
        stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    result = None
    assert child.stdout is not None
    for line in child.stdout:
        if line.startswith(RESULT_PREFIX):
            result = json.loads(line[len(RESULT_PREFIX) :])
        else:
            print(line, end="", flush=True)
    if child.wait() != 0 or result is None:
        # Recorded, and the other arms still run: one arm out of memory at N = 16 says so in
        # the table rather than losing the rest.
        print(f"error: arm {arm} failed (exit {child.returncode})", flush=True)
        seeds = {"seeds": count} if arm in SEED_ARMS else {}
        return {"arm": arm, **seeds, "error": f"exit {child.returncode}"}
    return result


def run_arm(args: argparse.Namespace) -> dict:
    """Train one arm in this process and measure it."""
    sys.path.insert(0, str(PROJECT_ROOT / "src"))
    from deeplecture.params import load_params
    from deeplecture.runtime import request_deterministic_kernels

    params = load_params(args.params)
    engine = params.engine
    if args.arm == "pipeline-nondeterministic":
        engine = engine.model_copy(update={"deterministic": False})
    if args.arm == "pipeline-bf16":
        engine = engine.model_copy(update={"precision": "mixed_bfloat16"})
    if args.arm == "pipeline-data-parallel":
        engine = engine.model_copy(update={"distribution": "data_parallel"})
    if engine.deterministic:
        request_deterministic_kernels()  # before Keras starts its backend

    import keras
    import numpy as np

    from deeplecture import distribution
    from deeplecture.data import processed
    from deeplecture.data.splits import ImageSplit
    from deeplecture.loops import run_epochs
    from deeplecture.loops.batches import endless_batches
    from deeplecture.models import get_variant
    from deeplecture.runtime import describe_device, seed_everything
    from deeplecture.scaling import Scaling
    from deeplecture.training import build_model, compile_model, fit_and_validation_sets

    train_params = params.train[args.variant]
    epochs = args.epochs or train_params.epochs
    train_params = train_params.model_copy(update={"epochs": epochs})
    data = processed.load(args.data)
    fit_set, validation_set = fit_and_validation_sets(data, train_params)
    if args.train_images:
        fit_set = _first(fit_set, args.train_images)
        validation_set = _first(validation_set, max(1, round(args.train_images / 9)))
    test_set = _first(data.test, args.test_images) if args.test_images else data.test
    variant = get_variant(args.variant)
    layout = distribution.start(engine) if args.arm != "plain" else distribution.SINGLE
    distribution.check_batches(layout, len(fit_set), train_params.batch_size)
    measured = {
        "arm": args.arm,
        "backend": keras.backend.backend(),
        "device": describe_device(),
        "devices": layout.devices,
        "keras": keras.__version__,
        "engine": engine.model_dump() if args.arm != "plain" else None,
        "epochs": epochs,
        "train_images": len(fit_set),
        "steps_per_epoch": train_params.steps_per_epoch,
    }
    if args.arm in SEED_ARMS:
        setup = SeedsSetup(
            variant, data.scaling, train_params, engine, fit_set, validation_set, test_set
        )
        return measured | run_seeds(args.arm, args.seed_count, setup)

    seed_everything(train_params.seed, engine.deterministic)
    timer = _epoch_timer()
    if args.arm == "plain":
        identity = Scaling(scale=(1.0,) * 3, offset=(0.0,) * 3)  # the script scales on the host
        model = compile_model(variant.build(identity, train_params.augmentation), train_params)
        x = np.concatenate([fit_set.images, validation_set.images]).astype("float32") / 255
        y = np.concatenate([fit_set.onehot, validation_set.onehot])
        if train_params.steps_per_epoch is None:
            model.fit(
                x, y, batch_size=train_params.batch_size, epochs=epochs, validation_split=0.1,
                callbacks=[timer], verbose=2,
            )  # fmt: skip
        else:
            # Reshuffled batches forever, as the lecture's ImageDataGenerator.flow (augmentation
            # is a layer of these models), from the pipeline's own generator.
            scaled_fit = ImageSplit(x[: len(fit_set)], fit_set.labels)
            model.fit(
                endless_batches(scaled_fit, train_params.batch_size, seed=0),
                steps_per_epoch=train_params.steps_per_epoch, epochs=epochs,
                validation_data=(x[len(fit_set) :], y[len(fit_set) :]),
                callbacks=[timer], verbose=2,
            )  # fmt: skip
        test_x = test_set.images.astype("float32") / 255
    else:
        model = build_model(variant, data.scaling, train_params, engine)
        run_epochs(
            model, train_params, engine, fit_set, validation_set,
            initial_epoch=0, batch_seed=train_params.seed, callbacks=[timer],
        )  # fmt: skip
        test_x = test_set.images
    test = model.evaluate(test_x, test_set.onehot, batch_size=1024, verbose=0, return_dict=True)
    later = timer.seconds[1:] or timer.seconds
    median = statistics.median(later)
    return measured | {
        "first_epoch_s": round(timer.seconds[0], 3),
        "median_epoch_s": round(median, 3),
        "images_per_s": round(_images_per_epoch(len(fit_set), train_params) / median, 1),
        "test_accuracy": round(float(test["accuracy"]), 4),
        "test_loss": round(float(test["loss"]), 4),
        "weights_sha256": _weights_digest(model),
    }


@dataclass(frozen=True)
class SeedsSetup:
    """What the seed arms train: run_arm's variant, settings and splits."""

    variant: Any
    scaling: Any
    train: Any  # TrainParams, epochs set
    engine: Any
    fit_set: Any
    validation_set: Any
    test_set: Any


def run_seeds(arm: str, count: int, setup: SeedsSetup) -> dict:
    """Train seeds 0 ... count-1 of the variant as `arm` says; time them and score each."""
    from deeplecture.loops import run_epochs, run_seeds_together
    from deeplecture.runtime import seed_everything
    from deeplecture.training import build_model

    seeds, train, engine = list(range(count)), setup.train, setup.engine
    sets = (setup.fit_set, setup.validation_set)
    models, timers = [], []
    for seed in seeds:  # as the together stage builds them: each after its own seeding
        seed_everything(seed, engine.deterministic)
        models.append(build_model(setup.variant, setup.scaling, train, engine))
        if SEED_ARMS[arm] is None:  # each alone, its own compiled program, before the next
            timers.append(_call_timer())
            run_epochs(
                models[-1], train, engine, *sets,
                initial_epoch=0, batch_seed=seed, callbacks=[timers[-1]],
            )  # fmt: skip
    if SEED_ARMS[arm] is None:
        strategy = "alone"
    else:
        # On the last seed: its callbacks run once every seed's call has finished.
        timers.append(_call_timer())
        strategy = run_seeds_together(
            models, train, *sets,
            initial_epoch=0, steps_per_call=engine.steps_per_call, seeds=seeds,
            callbacks=[[] for _ in seeds[1:]] + [[timers[-1]]], strategy=SEED_ARMS[arm],
            progress_name=f"{setup.variant.name} x {count} seeds",
        )  # fmt: skip
    epoch_s = sum(statistics.median(timer.seconds[1:] or timer.seconds) for timer in timers)
    images = count * _images_per_epoch(len(setup.fit_set), train)
    test = setup.test_set
    accuracies = [
        float(model.evaluate(test.images, test.onehot, batch_size=1024, verbose=0,
                             return_dict=True)["accuracy"])
        for model in models
    ]  # fmt: skip
    return {
        "strategy": strategy,
        "seeds": count,
        "first_call_s": round(sum(timer.first_call_s for timer in timers), 3),
        "epoch_train_s": round(epoch_s, 3),
        "images_per_s": round(images / epoch_s, 1),
        "images_per_s_per_seed": round(images / epoch_s / count, 1),
        "test_accuracy": round(statistics.mean(accuracies), 4),
        "test_accuracies": [round(accuracy, 4) for accuracy in accuracies],
        "weights_sha256": [_weights_digest(model) for model in models],
    }


def _epoch_timer():  # noqa: ANN202 - Keras is imported only after the backend's flags are set
    import keras

    class EpochTimer(keras.callbacks.Callback):
        """Wall time of every epoch, from on_epoch_begin to on_epoch_end (validation included)."""

        def __init__(self) -> None:
            super().__init__()
            self.seconds: list[float] = []

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            self.seconds.append(time.perf_counter() - self.started)

    return EpochTimer()


def _call_timer():  # noqa: ANN202 - as _epoch_timer
    import keras

    class CallTimer(keras.callbacks.Callback):
        """Each epoch's training time, from on_epoch_begin to the end of its last compiled call
        (the loops read the call's metrics first, which waits for it), validation excluded;
        and the first call's time, compilation included."""

        def __init__(self) -> None:
            super().__init__()
            self.seconds: list[float] = []
            self.first_call_s: float | None = None

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.started = self.last_call_end = time.perf_counter()

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            self.last_call_end = time.perf_counter()
            if self.first_call_s is None:
                self.first_call_s = self.last_call_end - self.started

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            self.seconds.append(self.last_call_end - self.started)

    return CallTimer()


def _first(split, count: int):  # noqa: ANN001, ANN202
    """The first `count` images of `split` (the 90/10 split keeps its ratio in subset mode)."""
    from deeplecture.data.splits import ImageSplit

    return ImageSplit(split.images[:count], split.labels[:count])


def _images_per_epoch(train_images: int, train_params) -> int:  # noqa: ANN001
    if train_params.steps_per_epoch is None:
        return train_images
    return train_params.steps_per_epoch * train_params.batch_size


def _weights_digest(model) -> str:  # noqa: ANN001
    import keras

    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(keras.ops.convert_to_numpy(weight).tobytes())
    return digest.hexdigest()[:16]


def _machine(result: dict) -> dict:
    return {
        "device": result["device"],
        "backend": result["backend"],
        "keras": result["keras"],
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
    }


def format_table(report: dict) -> str:
    arms = [arm for arm in report["arms"] if "error" not in arm]
    tables = []
    single = [arm for arm in arms if arm["arm"] not in SEED_ARMS]
    if single:
        tables.append(_single_table(report, single))
    seeded = [arm for arm in arms if arm["arm"] in SEED_ARMS]
    if seeded:
        tables.append(_seeds_table(report, seeded))
    failed = [arm for arm in report["arms"] if "error" in arm]
    tables += [
        f"{arm['arm']}" + (f" x {arm['seeds']} seeds" if "seeds" in arm else "")
        + f": FAILED ({arm['error']})"
        for arm in failed
    ]  # fmt: skip
    if "command" in report:
        tables.append(f"command: {report['command']}")
    return "\n".join(tables) if tables else "no arm finished"


def _title(report: dict, arm: dict, what: str) -> str:
    machine = report["machine"]
    steps = f"{arm['steps_per_epoch']} steps from " if arm.get("steps_per_epoch") else ""
    return (
        f"{report['variant']}, {arm['epochs']} epochs of {steps}{arm['train_images']} images{what} "
        f"on {machine['device']} ({machine['backend']}, Keras {machine['keras']})"
    )


def _single_table(report: dict, arms: list[dict]) -> str:
    plain = next((arm for arm in arms if arm["arm"] == "plain"), None)
    header = (
        f"{'arm':<36} {'first epoch s':>13} {'median epoch s':>14} {'images/s':>10} "
        f"{'test acc':>8} {'speed-up':>8} {'acc diff':>8}  weights"
    )
    lines = [_title(report, arms[0], ""), header, "-" * len(header)]
    for arm in arms:
        speedup = f"{plain['median_epoch_s'] / arm['median_epoch_s']:.2f}x" if plain else "-"
        diff = f"{100 * (arm['test_accuracy'] - plain['test_accuracy']):+.1f} pt" if plain else "-"
        devices = arm.get("devices", 1)
        name = f"{arm['arm']} ({devices} devices)" if devices > 1 else arm["arm"]
        lines.append(
            f"{name:<36} {arm['first_epoch_s']:>13.2f} {arm['median_epoch_s']:>14.2f} "
            f"{arm['images_per_s']:>10.0f} {arm['test_accuracy']:>8.4f} {speedup:>8} {diff:>8}"
            f"  {arm['weights_sha256']}"
        )
    lines.append("speed-up: the plain port's median epoch time over the arm's (higher is faster)")
    for name, identical in report["repeats_identical"].items():
        lines.append(f"{name}, repeated: {'identical' if identical else 'DIFFERENT'} weights")
    return "\n".join(lines)


def _seeds_table(report: dict, arms: list[dict]) -> str:
    alone = {arm["seeds"]: arm for arm in arms if arm["arm"] == "seeds-one-by-one"}
    header = (
        f"{'arm':<18} {'strategy':<10} {'seeds':>5} {'first call s':>12} {'train s/epoch':>13} "
        f"{'images/s':>9} {'per seed':>8} {'vs one-by-one':>13} {'vs one alone':>12} "
        f"{'test acc':>8}  weights as one by one"
    )
    lines = [_title(report, arms[0], " a seed"), header, "-" * len(header)]
    for arm in arms:
        same_n, one = alone.get(arm["seeds"]), alone.get(1)
        versus = f"{arm['images_per_s'] / same_n['images_per_s']:.2f}x" if same_n else "-"
        versus_one = f"{arm['images_per_s'] / one['images_per_s']:.2f}x" if one else "-"
        if same_n is None or arm is same_n:
            weights = "-"
        else:
            pairs = zip(arm["weights_sha256"], same_n["weights_sha256"], strict=True)
            weights = f"{sum(a == b for a, b in pairs)}/{arm['seeds']} seeds identical"
        lines.append(
            f"{arm['arm']:<18} {arm['strategy']:<10} {arm['seeds']:>5} "
            f"{arm['first_call_s']:>12.2f} {arm['epoch_train_s']:>13.2f} "
            f"{arm['images_per_s']:>9.0f} {arm['images_per_s_per_seed']:>8.0f} {versus:>13} "
            f"{versus_one:>12} {arm['test_accuracy']:>8.4f}  {weights}"
        )
    lines += [
        "first call s: the first compiled call, compilation included (one by one: each seed's, "
        "summed)",
        "train s/epoch: the median later epoch's training time of all the seeds (one by one: the "
        "sum of each seed's), validation excluded",
        "images/s: the training images of all the seeds over it; per seed: that / seeds",
        "vs one-by-one, vs one alone: images/s over seeds-one-by-one's at the same seeds, at 1 "
        "seed (higher is faster)",
    ]
    return "\n".join(lines)


def repeats_identical(arms: list[dict]) -> dict[str, bool]:
    """For each arm run more than once: did every run train bit for bit the same weights?"""
    names = [arm["arm"] for arm in arms if arm["arm"] not in SEED_ARMS]
    return {
        name: len({arm["weights_sha256"] for arm in arms if arm["arm"] == name}) == 1
        for name in sorted(set(names))
        if names.count(name) > 1
    }


if __name__ == "__main__":
    raise SystemExit(main())
