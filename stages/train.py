"""Stage `train@<variant>`: train one variant at its params.yaml settings, tracked in MLflow.

    python stages/train.py cnn74 --data data/processed/cifar10 --model models/cifar10/cnn74.keras \
        --record models/cifar10/cnn74.train.json --history plots/history/cifar10/cnn74.csv

Exit status: 0 trained; 1 bad params or data (a batch larger than the images it trains on
included), an output that cannot be written (both found before the first epoch), the loss
diverged (no model written), or the MLflow store failed (finished epochs kept: rerun to
resume); 143 stopped by SIGTERM (run marked
KILLED, checkpoint kept: rerun to resume). Checkpoints live in checkpoints/ at the repository
root, also for `dvc exp run --temp` and queued experiments.
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
    parser.add_argument("--data", type=Path, required=True, help="preprocessed dataset folder")
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--record", type=Path, required=True, help="training record (JSON)")
    parser.add_argument("--history", type=Path, required=True, help="per-epoch metrics (CSV)")
    parser.add_argument("--checkpoints", type=Path, help="default: checkpoints/ at the root")
    return run_stage(parser, argv, train)


def train(args: argparse.Namespace, params: Params) -> None:
    if args.variant not in params.train:
        raise ParamsError(f"{args.params}: train.{args.variant}: missing key")
    from deeplecture.cli.training import prepare_backend, stops_at_a_safe_point

    prepare_backend(params)
    # Imported only now: a bad params.yaml has failed in a fraction of a second, before the
    # seconds it takes to load Keras and its backend.
    from deeplecture import distribution

    try:
        distribution.check(params.engine)  # before the data is read
    except distribution.DistributionError as error:
        raise cli.Refused(error) from None

    from deeplecture.data import processed
    from deeplecture.project import checkpoints_root
    from deeplecture.training import TrainingOutputs, train_variant

    with stops_at_a_safe_point("the last finished epoch"):
        data = processed.load(args.data)
        outputs = TrainingOutputs(
            args.model, args.record, args.history, args.checkpoints or checkpoints_root()
        )
        record = train_variant(args.variant, params, data, outputs)
    print(f"{args.model}: {record['epochs']} epochs in {record['train_seconds']:.0f} s")


if __name__ == "__main__":
    status = main()
    gc.freeze()  # as stages/evaluate.py: the interpreter's last collections skip Keras and MLflow
    raise SystemExit(status)
