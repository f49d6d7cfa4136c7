"""Forward-only evaluation from the saved model file alone (the lecture's `*_Test.py` scripts).

Keras is imported only to load and run a `.keras` file: an exported model's probabilities are
scored here without it (`score_probabilities`), in the `edge` install.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from deeplecture.atomic import atomic_path, write_json
from deeplecture.confusion import confusion_matrix
from deeplecture.data.splits import ImageSplit

if TYPE_CHECKING:
    import keras

# Keras' categorical crossentropy clips probabilities to [EPSILON, 1 - EPSILON] before the log
# (keras.config.epsilon()): the same here, so a loss computed without Keras is Keras' loss.
EPSILON = 1e-7


def custom_layers() -> dict[str, type]:
    """The project's own layers a model file may name (cnn88's augmentation). Imported here, not
    at the top: they import Keras, which scoring an exported model must not."""
    from deeplecture.augmentation import LectureAugmentation

    return {"deeplecture>LectureAugmentation": LectureAugmentation}


@dataclass(frozen=True)
class Evaluation:
    test_loss: float
    test_accuracy: float
    predictions: np.ndarray  # (N,) predicted class per test image
    confusion: np.ndarray  # (classes, classes), rows = true class


def load_model(path: Path) -> keras.Model:
    """Load a saved `.keras` file; a missing, truncated or unreadable file raises a `ValueError`
    naming it and what is wrong with it."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder; expected a saved .keras model file")
    if not path.is_file():
        raise ValueError(f"model file not found: {path}")
    import keras

    try:
        # cnn88's augmentation layer is the project's own: named here, so that a model file loads
        # in Keras' safe mode (no Lambda, no code from the file) wherever it is read.
        return keras.saving.load_model(path, custom_objects=custom_layers())
    except Exception as error:  # keras raises many types for a damaged zip or config
        # Only now read the zip's checksums: a good file is not read twice on every load.
        _check_keras_zip(path)
        raise ValueError(f"cannot load model {path}: {' '.join(str(error).split())}") from error


def _check_keras_zip(path: Path) -> None:
    # A .keras file is a zip archive; Keras answers a truncated one with "File not found".
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise ValueError(
            f"{path} is not a complete .keras file (truncated, or not a zip archive: {error})"
        ) from error
    if damaged is not None:
        raise ValueError(f"{path} is damaged: its member {damaged!r} fails its checksum")
    if "config.json" not in names:
        raise ValueError(f"{path} is not a .keras model file (it has no config.json)")


def evaluate(model: keras.Model, test: ImageSplit, batch_size: int = 256) -> Evaluation:
    """Loss and accuracy as `model.evaluate` reports them, plus the confusion matrix.

    The loss includes any L2 penalty of the network (as in the lecture's printout). A model
    compiled as the lecture compiles it (`categorical_crossentropy`) is scored from one forward
    pass: its predictions give the crossentropy and the accuracy as Keras computes them
    (`score_probabilities`), and its weight penalties are added as `evaluate` adds them. A model
    compiled with any other loss is also run through `model.evaluate`, which knows that loss.
    """
    probabilities = model.predict(test.images, batch_size=batch_size, verbose=0)
    if model.loss == "categorical_crossentropy":
        # One pass instead of two: `evaluate` would compile a step of its own and run the
        # test set through the network again, for the same numbers.
        scored = score_probabilities(probabilities, test)
        return replace(scored, test_loss=scored.test_loss + weight_penalty(model))
    scores = model.evaluate(
        test.images, test.onehot, batch_size=batch_size, verbose=0, return_dict=True
    )
    predictions = probabilities.argmax(axis=1)
    num_classes = probabilities.shape[1]
    matrix = confusion_matrix(test.labels, predictions, num_classes)
    return Evaluation(float(scores["loss"]), float(scores["accuracy"]), predictions, matrix)


def weight_penalty(model: keras.Model) -> float:
    """The sum of the network's own losses (its layers' kernel regularizers): what Keras adds
    to the compiled loss, at every step, in `evaluate` as in training."""
    import keras

    return float(sum(np.sum(keras.ops.convert_to_numpy(loss)) for loss in model.losses))


def score_probabilities(probabilities: np.ndarray, test: ImageSplit) -> Evaluation:
    """Loss and accuracy of a model's class `probabilities` (N, classes) on `test`, computed as
    Keras computes categorical crossentropy and accuracy: how a model run without Keras (an
    exported file) is scored. The loss is the crossentropy alone: no weight penalty, which an
    exported graph does not carry."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2 or len(probabilities) != len(test):
        raise ValueError(
            f"model gave outputs of shape {probabilities.shape} for {len(test)} images"
        )
    if not np.isfinite(probabilities).all() or probabilities.min() < 0:
        raise ValueError("model outputs are not probabilities (NaN, infinite or negative)")
    # As Keras: each row rescaled to sum to 1, then clipped away from 0 and 1 before the log.
    rows = probabilities / probabilities.sum(axis=1, keepdims=True)
    chosen = np.clip(rows[np.arange(len(test)), test.labels], EPSILON, 1 - EPSILON)
    predictions = probabilities.argmax(axis=1)
    matrix = confusion_matrix(test.labels, predictions, probabilities.shape[1])
    accuracy = float(np.mean(predictions == test.labels))
    return Evaluation(float(-np.log(chosen).mean()), accuracy, predictions, matrix)


def metrics_payload(
    evaluation: Evaluation, training_record: dict[str, Any], lecture_accuracy: float
) -> dict[str, Any]:
    """The metrics file of one model: the contract of DESIGN.md plus what a reader compares.

    A handful of numbers, so that `dvc metrics show` fits a terminal and `dvc metrics diff`
    compares numbers; the per-class accuracies and how the model was made (profile, data,
    backend, device) are files of their own (`EvaluationFiles`)."""
    return {
        "test_accuracy": round(evaluation.test_accuracy, 6),
        "test_loss": round(evaluation.test_loss, 6),
        "lecture_accuracy": lecture_accuracy,
        "accuracy_gap": round(evaluation.test_accuracy - lecture_accuracy, 6),
        "param_count": training_record["param_count"],
        "epochs": training_record["epochs"],
        "train_seconds": training_record["train_seconds"],
        "test_images": int(evaluation.confusion.sum()),
    }


def per_class_accuracy(evaluation: Evaluation, class_names: tuple[str, ...]) -> dict[str, float]:
    """Each class's share of its test images classified right, in the dataset's class order."""
    matrix = evaluation.confusion
    per_class = np.diag(matrix) / np.maximum(matrix.sum(axis=1), 1)
    return {
        name: round(float(value), 6) for name, value in zip(class_names, per_class, strict=True)
    }


def provenance(training_record: dict[str, Any]) -> dict[str, Any]:
    """How a model's metrics were made: the strings a reader needs beside the numbers."""
    described = {
        "profile": training_record["profile"],
        "data_source": training_record["data_source"],
        "backend": training_record["backend"],
        "device": training_record["device"],
        "versions": training_record.get("versions", {}),  # of the stack that trained it
    }
    if "augmentation" in training_record:  # records made before the key existed have none
        described["augmentation"] = training_record["augmentation"]
    return described


@dataclass(frozen=True)
class EvaluationFiles:
    """Where evaluate writes (dvc.yaml: `plots/<kind>/<dataset>/<variant>.*` beside the metrics)."""

    metrics: Path  # metrics/<dataset>/<variant>.json: numbers only
    predictions: Path  # (actual, predicted) per test image, for `dvc plots` confusion
    per_class: Path  # (class, accuracy), in the dataset's class order
    provenance: Path  # `provenance(training_record)`


def write_outputs(
    evaluation: Evaluation,
    payload: dict[str, Any],
    test: ImageSplit,
    class_names: tuple[str, ...],
    training_record: dict[str, Any],
    files: EvaluationFiles,
) -> None:
    """Every file of one evaluation, each written atomically."""
    write_json(files.metrics, payload)
    write_json(files.provenance, provenance(training_record))
    _write_csv(
        files.per_class,
        "class,accuracy",
        [
            f"{name},{value:.6g}"
            for name, value in per_class_accuracy(evaluation, class_names).items()
        ],
    )
    _write_csv(
        files.predictions,
        "actual,predicted",
        [
            f"{class_names[true]},{class_names[predicted]}"
            for true, predicted in zip(test.labels, evaluation.predictions, strict=True)
        ],
    )


@dataclass(frozen=True)
class SavedModelScore:
    """One saved model's evaluation, its metrics payload, its training record and its
    per-class accuracy: what the evaluate stage logs to the model's MLflow run."""

    evaluation: Evaluation
    payload: dict[str, Any]
    record: dict[str, Any]
    per_class: dict[str, float]


def evaluate_saved_model(
    model_path: Path,
    record_path: Path,
    test: ImageSplit,
    class_names: tuple[str, ...],
    lecture_accuracy: float,
    files: EvaluationFiles,
) -> SavedModelScore:
    """Score the model file on `test` and write every file of its evaluation: the evaluate
    stage's work for its model, and the together stage's for each seed's."""
    record = read_training_record(record_path)  # first: a missing record fails before the load
    result = evaluate(load_model(model_path), test)
    payload = metrics_payload(result, record, lecture_accuracy)
    write_outputs(result, payload, test, class_names, record, files)
    return SavedModelScore(result, payload, record, per_class_accuracy(result, class_names))


def _write_csv(path: Path, header: str, rows: list[str]) -> None:
    with atomic_path(path, suffix=".csv") as tmp:
        tmp.write_text("\n".join([header, *rows]) + "\n")


def read_training_record(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())
