"""Stage `evaluate@<variant>`: load the saved model file alone and score it on the test split.

    python stages/evaluate.py cnn74 --data data/processed/cifar10 \
        --model models/cifar10/cnn74.keras --record models/cifar10/cnn74.train.json \
        --metrics metrics/cifar10/cnn74.json --predictions plots/predictions/cifar10/cnn74.csv \
        --per-class plots/per_class/cifar10/cnn74.csv \
        --provenance plots/provenance/cifar10/cnn74.json

Writes the metrics (a handful of numbers), the predictions (one row per test image), the accuracy
per class, and the provenance of the numbers (profile, data source, backend, device, versions).
In MLflow, the model file becomes a LoggedModel of the run that trained it (served_model.py),
the test metrics join that run, linked to the model and the test set, and the model becomes a
version of the registered model `<dataset>-<variant>` (registry.py).
"""

from __future__ import annotations

import argparse
import gc
from pathlib import Path

from deeplecture import cli
from deeplecture.cli.stage import run_stage
from deeplecture.params import Params, ParamsError


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    parser.add_argument("variant")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--record", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, required=True)
    parser.add_argument("--predictions", type=Path, required=True, help="CSV: actual,predicted")
    parser.add_argument("--per-class", type=Path, required=True, help="CSV: class,accuracy")
    parser.add_argument("--provenance", type=Path, required=True, help="how the numbers were made")
    return run_stage(parser, argv, evaluate)


def evaluate(args: argparse.Namespace, params: Params) -> None:
    if args.variant not in params.train:
        raise ParamsError(f"{args.params}: train.{args.variant}: missing key")
    lecture_accuracy = params.train[args.variant].lecture_accuracy
    dataset = params.dataset_of(args.variant)

    from deeplecture import compilation_cache
    from deeplecture.project import project_root

    # Before Keras starts: on JAX, a model evaluated before (another seed of the variant, a
    # rerun) loads its compiled programs from the cache instead of compiling them again.
    compilation_cache.enable(project_root())

    from deeplecture import evaluation, registry, tracking
    from deeplecture.data import processed

    files = evaluation.EvaluationFiles(
        args.metrics, args.predictions, args.per_class, args.provenance
    )
    try:
        data = processed.load(args.data)
        class_names = tuple(data.info["class_names"])
        scored = evaluation.evaluate_saved_model(
            args.model, args.record, data.test, class_names, lecture_accuracy, files
        )
    except KeyError as error:  # a record or data folder without a field it must have
        raise cli.Refused(f"missing {error}") from None
    test_set = (f"{dataset}-test", data.digest[:36])  # as the training set's, tracking.py
    # The model file becomes the training run's LoggedModel here, not in training: the serving
    # code (predict.py, served_model*.py) is then no dependency of the hours of training.
    model_id = registry.log_served_model(scored.record, args.model, data.test.images[:2])
    if (
        tracking.log_test_metrics(
            scored.record, model_id, scored.payload, scored.per_class, args.metrics, test_set
        )
        and model_id
    ):
        registry.register(scored.record, model_id, dataset, scored.payload)
    print(
        f"{args.variant}: test accuracy {scored.payload['test_accuracy']:.4f} "
        f"(lecture {lecture_accuracy:.2f}), loss {scored.payload['test_loss']:.4f}"
    )


if __name__ == "__main__":
    status = main()
    # Everything left is freed as the process ends: frozen, the interpreter's last garbage
    # collections skip Keras, its backend and MLflow (1-1.5 s of exit on a CPU, 0.1 s frozen).
    gc.freeze()
    raise SystemExit(status)
