"""Stage `together@<variant>` (sweeps/together.yaml): train the seeds of `together.seeds` together,
then evaluate each seed's model from its file, as `evaluate@<variant>` does.

    python stages/train_together.py cnn74 --data data/processed/cifar10 \
        --out models/sweeps/cifar10/cnn74

Writes one folder per seed, `<out>/seed<N>/`: model.keras, train.json (the record), history.csv,
metrics.json, predictions.csv, per_class.csv, provenance.json. Each seed is its own MLflow run
(its params, per-epoch metrics, LoggedModel, test metrics; tagged with the sweep), not registered:
a sweep's seeds are evidence, not versions to serve. `deeplecture-sweep run NAME --seeds N
--together` sets `together.seeds` and `sweep`, runs this stage and collects the runs.

Exit status as stages/train.py's: 0 trained and evaluated; 1 bad params or data, an output that
cannot be written, a diverged seed, or the MLflow store failed (finished epochs kept: rerun to
resume); 143 stopped by SIGTERM, 130 by Ctrl-C (checkpoints kept: rerun to resume).
"""

from __future__ import annotations

import argparse
import gc
from pathlib import Path
from typing import TYPE_CHECKING

from deeplecture import cli
from deeplecture.cli.stage import run_stage
from deeplecture.params import Params, ParamsError

if TYPE_CHECKING:
    from deeplecture.data.processed import ProcessedData


def seed_folder(out: Path, seed: int) -> Path:
    return out / f"seed{seed}"


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    parser.add_argument("variant")
    parser.add_argument("--data", type=Path, required=True, help="preprocessed dataset folder")
    parser.add_argument("--out", type=Path, required=True, help="one folder per seed goes here")
    parser.add_argument("--checkpoints", type=Path, help="default: checkpoints/ at the root")
    return run_stage(parser, argv, train_together)


def train_together(args: argparse.Namespace, params: Params) -> None:
    if args.variant not in params.train:
        raise ParamsError(f"{args.params}: train.{args.variant}: missing key")
    from deeplecture.cli.training import prepare_backend, stops_at_a_safe_point

    prepare_backend(params)

    from deeplecture import together
    from deeplecture.data import processed
    from deeplecture.project import checkpoints_root
    from deeplecture.training import TrainingOutputs

    def outputs_of(seed: int) -> TrainingOutputs:
        folder = seed_folder(args.out, seed)
        return TrainingOutputs(
            folder / "model.keras",
            folder / "train.json",
            folder / "history.csv",
            args.checkpoints or checkpoints_root(),
        )

    with stops_at_a_safe_point("the last finished epochs"):
        data = processed.load(args.data)
        records = together.train_together(args.variant, params, data, outputs_of)
        for record in records:
            _evaluate(args.variant, params, data, seed_folder(args.out, record["seed"]))


def _evaluate(variant: str, params: Params, data: ProcessedData, folder: Path) -> None:
    """Score the seed's saved model alone on the test split; the model file becomes its run's
    LoggedModel (not registered: a sweep's seeds are evidence), linked to its test metrics."""
    from deeplecture import evaluation, registry, tracking

    lecture_accuracy = params.train[variant].lecture_accuracy
    files = evaluation.EvaluationFiles(
        folder / "metrics.json",
        folder / "predictions.csv",
        folder / "per_class.csv",
        folder / "provenance.json",
    )
    scored = evaluation.evaluate_saved_model(
        folder / "model.keras",
        folder / "train.json",
        data.test,
        tuple(data.info["class_names"]),
        lecture_accuracy,
        files,
    )
    test_set = (f"{params.dataset_of(variant)}-test", data.digest[:36])
    model_id = registry.log_served_model(
        scored.record, folder / "model.keras", data.test.images[:2]
    )
    tracking.log_test_metrics(
        scored.record, model_id, scored.payload, scored.per_class, files.metrics, test_set
    )
    print(
        f"{variant} seed {scored.record['seed']}: test accuracy "
        f"{scored.payload['test_accuracy']:.4f} (lecture {lecture_accuracy:.2f}), "
        f"loss {scored.payload['test_loss']:.4f}"
    )


if __name__ == "__main__":
    status = main()
    gc.freeze()  # as stages/evaluate.py: the interpreter's last collections skip Keras and MLflow
    raise SystemExit(status)
