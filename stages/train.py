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
import sys
from pathlib import Path

from deeplecture.params import ParamsError, load_params


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variant")
    parser.add_argument("--data", type=Path, required=True, help="preprocessed dataset folder")
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--record", type=Path, required=True, help="training record (JSON)")
    parser.add_argument("--history", type=Path, required=True, help="per-epoch metrics (CSV)")
    parser.add_argument("--checkpoints", type=Path, help="default: checkpoints/ at the root")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)

    try:
        params = load_params(args.params)
        if args.variant not in params.train:
            raise ParamsError(f"{args.params}: train.{args.variant}: missing key")
    except ParamsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1

    from deeplecture import compilation_cache
    from deeplecture.project import project_root
    from deeplecture.runtime import request_deterministic_kernels

    if params.engine.deterministic:
        request_deterministic_kernels()  # before the backend starts: XLA reads its flags once
    compilation_cache.enable(project_root())  # JAX only: a rerun of these shapes skips compiling

    # Imported only now: a bad params.yaml fails in a fraction of a second, before the
    # seconds it takes to load Keras and its backend.
    from deeplecture import distribution

    try:
        distribution.check(params.engine)  # before the data is read
    except distribution.DistributionError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1

    from deeplecture.checkpoints import CheckpointBusy
    from deeplecture.data import processed
    from deeplecture.project import checkpoints_root
    from deeplecture.runtime import TrainingInterrupted, stop_requests_heard
    from deeplecture.tracking import TrackingUnavailable
    from deeplecture.training import TrainingDiverged, TrainingOutputs, train_variant

    try:
        with stop_requests_heard():  # a stop from here on ends the stage at a safe point
            data = processed.load(args.data)
            outputs = TrainingOutputs(
                args.model, args.record, args.history, args.checkpoints or checkpoints_root()
            )
            record = train_variant(args.variant, params, data, outputs)
    except TrainingInterrupted as error:
        print(
            f"interrupted: {error}; rerun to resume from the last finished epoch", file=sys.stderr
        )
        return 143
    except KeyboardInterrupt:
        print("interrupted: Ctrl-C; rerun to resume from the last finished epoch", file=sys.stderr)
        return 130
    except (TrackingUnavailable, CheckpointBusy, TrainingDiverged, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"{args.model}: {record['epochs']} epochs in {record['train_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    status = main()
    gc.freeze()  # as stages/evaluate.py: the interpreter's last collections skip Keras and MLflow
    raise SystemExit(status)
