"""Stage `measure_edge@<variant>`: every exported format beside Keras' own `predict`, on the CPU.

    python stages/measure_edge.py cnn74 --data data/processed/cifar10 \
        --model models/cifar10/cnn74.keras --exports models/cifar10/edge/cnn74 \
        --out reports/edge/cifar10/cnn74.json

Per format (keras, onnx, onnx-int8, litert): test accuracy, agreement with the Keras model's
predictions (top-1, largest probability difference), file size, batch-1 latency (median, p95)
and batch-256 throughput (src/deeplecture/edge/measure.py). The report's Edge table reads them.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from deeplecture import cli
from deeplecture.cli.stage import run_stage
from deeplecture.params import Params


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    parser.add_argument("variant")
    parser.add_argument("--data", type=Path, required=True, help="preprocessed dataset folder")
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--exports", type=Path, required=True, help="the export folder")
    parser.add_argument("--out", type=Path, required=True, help="the figures (JSON)")
    return run_stage(parser, argv, measure_edge)


def measure_edge(args: argparse.Namespace, params: Params) -> None:
    # An edge device has a CPU: Keras' predict runs there too, whatever accelerator this
    # machine has, so that every figure is measured on the same processor.
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from deeplecture.atomic import write_json
    from deeplecture.data import processed
    from deeplecture.edge import measure, runners

    calls = params.edge.latency_calls
    test = processed.load_split(args.data, "test")
    formats = runners.all_formats(args.model, args.exports)
    keras = next(formats)  # the reference: every exported format is compared with it
    figures = {}
    figures[keras.name], reference = measure.measure(keras, test, None, calls)
    for runner in formats:
        figures[runner.name], _ = measure.measure(runner, test, reference, calls)
    document = {
        "variant": args.variant,
        "test_images": len(test),
        "latency_calls": calls,
        "throughput_batch": measure.THROUGHPUT_BATCH,
        "machine": measure.machine(),
        "formats": figures,
    }
    write_json(args.out, document)
    for name, row in figures.items():
        print(
            f"{args.variant} {name:>9}: accuracy {row['accuracy']:.4f}, "
            f"agreement {row['top1_agreement']:.4f}, batch 1 {row['latency_ms_median']:.2f} ms, "
            f"batch 256 {row['throughput_images_per_s']:.0f} images/s"
        )


if __name__ == "__main__":
    raise SystemExit(main())
