"""Stage `evaluate@<variant>`: load the saved model file alone and score it on the test split.

    python stages/evaluate.py cnn74 --data data/processed/cifar10 \
        --model models/cifar10/cnn74.keras --record models/cifar10/cnn74.train.json \
        --metrics metrics/cifar10/cnn74.json --predictions plots/predictions/cifar10/cnn74.csv \
        --per-class plots/per_class/cifar10/cnn74.csv \
        --provenance plots/provenance/cifar10/cnn74.json

Writes the metrics (a handful of numbers), the predictions (one row per test image), the accuracy
per class, and the provenance of the numbers (profile, data source, backend, device, versions).
In MLflow, the test metrics join the training run, linked to its model and the test set, and
the model becomes a version of the registered model `<dataset>-<variant>` (registry.py).
"""

from __future__ import annotations

import argparse
import gc
import sys
from pathlib import Path

from deeplecture.params import ParamsError, load_params


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variant")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--record", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, required=True)
    parser.add_argument("--predictions", type=Path, required=True, help="CSV: actual,predicted")
    parser.add_argument("--per-class", type=Path, required=True, help="CSV: class,accuracy")
    parser.add_argument("--provenance", type=Path, required=True, help="how the numbers were made")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)

    try:
        params = load_params(args.params)
        lecture_accuracy = params.train[args.variant].lecture_accuracy
        dataset = params.dataset_of(args.variant)
    except (ParamsError, KeyError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1

    from deeplecture import compilation_cache
    from deeplecture.project import project_root

    # Before Keras starts: on JAX, a model evaluated before (another seed of the variant, a
    # rerun) loads its compiled programs from the cache instead of compiling them again.
    compilation_cache.enable(project_root())
    from deeplecture import evaluation, registry, tracking
    from deeplecture.data import processed

    try:
        data = processed.load(args.data)
        files = evaluation.EvaluationFiles(
            args.metrics, args.predictions, args.per_class, args.provenance
        )
        class_names = tuple(data.info["class_names"])
        scored = evaluation.evaluate_saved_model(
            args.model, args.record, data.test, class_names, lecture_accuracy, files
        )
    except (KeyError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    test_set = (f"{dataset}-test", data.digest[:36])  # as the training set's, tracking.py
    if tracking.log_test_metrics(
        scored.record, scored.payload, scored.per_class, args.metrics, test_set
    ):
        registry.register(scored.record, dataset, scored.payload)
    print(
        f"{args.variant}: test accuracy {scored.payload['test_accuracy']:.4f} "
        f"(lecture {lecture_accuracy:.2f}), loss {scored.payload['test_loss']:.4f}"
    )
    return 0


if __name__ == "__main__":
    status = main()
    # Everything left is freed as the process ends: frozen, the interpreter's last garbage
    # collections skip Keras, its backend and MLflow (1-1.5 s of exit on a CPU, 0.1 s frozen).
    gc.freeze()
    raise SystemExit(status)
