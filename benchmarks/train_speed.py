"""Train one variant two ways on the same data and machine, and print them side by side.

    python benchmarks/train_speed.py --data data/processed/cifar10 --variant cnn74 \
        [--train-images 5000 --test-images 1000] [--epochs 3] [--arms plain,pipeline] [--json F]
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
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
ARMS = ("plain", "pipeline", "pipeline-nondeterministic", "pipeline-bf16", "pipeline-data-parallel")
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
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--show", type=Path, help="print the table of a saved --json file")
    parser.add_argument("--arm", choices=ARMS, help=argparse.SUPPRESS)  # one arm, in a child
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
    results = []
    for arm in arms:
        print(f"--- {arm}", flush=True)
        arguments = argv if argv is not None else sys.argv[1:]
        results.append(_run_child(arm, arguments, args.virtual_devices))
    report = {
        "machine": _machine(results[0]),
        "variant": args.variant,
        "arms": results,
        "repeats_identical": repeats_identical(results),
    }
    print(format_table(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def _run_child(arm: str, argv: list[str], virtual_devices: int) -> dict:
    # Stream the child's epoch lines as they come; keep its RESULT line.
    env = dict(os.environ)
    if arm == "pipeline-data-parallel":
        # JAX reads it at start-up; on a GPU machine it only adds CPU devices, which DataParallel
        # does not use (it takes the accelerators when there are any).
        flag = f"--xla_force_host_platform_device_count={virtual_devices}"
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {flag}".strip()
    child = subprocess.Popen(
        [sys.executable, __file__, *argv, "--arm", arm], stdout=subprocess.PIPE, text=True, env=env
    )
    result = None
    assert child.stdout is not None
    for line in child.stdout:
        if line.startswith(RESULT_PREFIX):
            result = json.loads(line[len(RESULT_PREFIX) :])
        else:
            print(line, end="", flush=True)
    if child.wait() != 0 or result is None:
        raise SystemExit(f"error: arm {arm} failed (exit {child.returncode})")
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
    return {
        "arm": args.arm,
        "backend": keras.backend.backend(),
        "device": describe_device(),
        "devices": layout.devices,
        "keras": keras.__version__,
        "engine": engine.model_dump() if args.arm != "plain" else None,
        "epochs": epochs,
        "train_images": len(fit_set),
        "steps_per_epoch": train_params.steps_per_epoch,
        "first_epoch_s": round(timer.seconds[0], 3),
        "median_epoch_s": round(median, 3),
        "images_per_s": round(_images_per_epoch(len(fit_set), train_params) / median, 1),
        "test_accuracy": round(float(test["accuracy"]), 4),
        "test_loss": round(float(test["loss"]), 4),
        "weights_sha256": _weights_digest(model),
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
    arms = report["arms"]
    plain = next((arm for arm in arms if arm["arm"] == "plain"), None)
    header = (
        f"{'arm':<36} {'first epoch s':>13} {'median epoch s':>14} {'images/s':>10} "
        f"{'test acc':>8} {'speed-up':>8} {'acc diff':>8}  weights"
    )
    lines = [
        f"{report['variant']}, {arms[0]['epochs']} epochs of {arms[0]['train_images']} images "
        f"on {report['machine']['device']} ({report['machine']['backend']}, "
        f"Keras {report['machine']['keras']})",
        header,
        "-" * len(header),
    ]
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


def repeats_identical(arms: list[dict]) -> dict[str, bool]:
    """For each arm run more than once: did every run train bit for bit the same weights?"""
    names = [arm["arm"] for arm in arms]
    return {
        name: len({arm["weights_sha256"] for arm in arms if arm["arm"] == name}) == 1
        for name in sorted(set(names))
        if names.count(name) > 1
    }


if __name__ == "__main__":
    raise SystemExit(main())
