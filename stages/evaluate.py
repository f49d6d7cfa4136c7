"""Stage `evaluate@<variant>`: load the saved model file alone and score it on the test split.

    python stages/evaluate.py cnn74 --data data/processed/cifar10 \
        --model models/cifar10/cnn74.keras --record models/cifar10/cnn74.train.json \
        --metrics metrics/cifar10/cnn74.json --predictions plots/cifar10/cnn74/predictions.csv

Writes the metrics (numbers only) and, beside them, metrics/cifar10/cnn74.run.json: the profile,
data source, backend, device and versions that made them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from deeplecture import evaluation, tracking
from deeplecture.data import processed
from deeplecture.params import ParamsError, load_params


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variant")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--record", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, required=True)
    parser.add_argument("--predictions", type=Path, required=True)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)

    try:
        params = load_params(args.params)
        lecture_accuracy = params.train[args.variant].lecture_accuracy
        data = processed.load(args.data)
        model = evaluation.load_model(args.model)
        result = evaluation.evaluate(model, data.test)
        record = evaluation.read_training_record(args.record)
        class_names = tuple(data.info["class_names"])
        payload = evaluation.metrics_payload(result, record, lecture_accuracy, class_names)
        description = evaluation.run_description(record)
        evaluation.write_outputs(
            result, payload, description, data.test, class_names, args.metrics, args.predictions
        )
    except (ParamsError, KeyError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    tracking.log_test_metrics(record["run_id"], payload, args.metrics)
    print(
        f"{args.variant}: test accuracy {payload['test_accuracy']:.4f} "
        f"(lecture {lecture_accuracy:.2f}), loss {payload['test_loss']:.4f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
