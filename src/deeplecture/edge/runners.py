"""The formats `measure_edge` compares, as `measure.Runner`s: the `.keras` model under Keras'
own `predict` first (the reference every other format is compared with), then each exported
file under its edge runtime."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from deeplecture.edge import files, runtime
from deeplecture.edge.measure import THROUGHPUT_BATCH, Runner


def all_formats(keras_path: Path, export_folder: Path) -> Iterator[Runner]:
    """The Keras runner, then one per exported file in `export_folder`; a `ValueError` if the
    folder holds no export."""
    yield keras_runner(keras_path)
    found = [
        (name, export_folder / file_name)
        for name, file_name in files.FORMAT_FILES.items()
        if (export_folder / file_name).is_file()
    ]
    if not found:
        raise ValueError(f"{export_folder}: no exported model (run the export stage first)")
    for name, path in found:
        model = runtime.load(path)
        yield Runner(name, path, model.predict, model.run)


def keras_runner(path: Path) -> Runner:
    from deeplecture import evaluation

    model = evaluation.load_model(path)
    return Runner(
        "keras",
        path,
        lambda batch: model.predict(batch, batch_size=THROUGHPUT_BATCH, verbose=0),
        lambda single: model.predict(single, verbose=0),
    )
