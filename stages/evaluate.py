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
import sys
from pathlib import Path

from deeplecture import evaluation, registry, tracking
from deeplecture.data import processed
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
        data = processed.load(args.data)
        model = evaluation.load_model(args.model)
        result = evaluation.evaluate(model, data.test)
        record = evaluation.read_training_record(args.record)
        class_names = tuple(data.info["class_names"])
        payload = evaluation.metrics_payload(result, record, lecture_accuracy)
        files = evaluation.EvaluationFiles(
            args.metrics, args.predictions, args.per_class, args.provenance
        )
        evaluation.write_outputs(result, payload, data.test, class_names, record, files)
    except (ParamsError, KeyError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    per_class = evaluation.per_class_accuracy(result, class_names)
    test_set = (f"{dataset}-test", data.digest[:36])  # as the training set's, tracking.py
    if tracking.log_test_metrics(record, payload, per_class, args.metrics, test_set):
        registry.register(record, dataset, payload)
    print(
        f"{args.variant}: test accuracy {payload['test_accuracy']:.4f} "
        f"(lecture {lecture_accuracy:.2f}), loss {payload['test_loss']:.4f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
