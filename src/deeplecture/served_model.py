"""The model as MLflow logs, registers and serves it: image files in, class names out.

`mlflow models serve -m models:/cifar10-cnn74@full` answers a request whose rows each carry one
image file (PNG, JPEG, ...), base64-encoded, in the column `image`, with the predicted class and
one probability per class name:

    {"dataframe_split": {"columns": ["image"], "data": [["iVBORw0KG..."]]}}
    -> {"predictions": [{"class": "cat", "airplane": 0.01, ..., "truck": 0.0}]}

The `.keras` file travels inside the logged model as an artifact, with the class names it
carries (model_file.py); images are decoded with the checks of `deeplecture-predict`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import keras
import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.entities import LoggedModelOutput
from PIL import Image

IMAGE_COLUMN = "image"
CLASS_COLUMN = "class"
KERAS_ARTIFACT = "keras_model"
MODEL_CODE = "served_model_code.py"  # beside this file: what MLflow runs to load the model
PACKAGE = Path(__file__).parent
DIGEST_TAG = "content_sha256"  # a LoggedModel's model file and serving code (content_digest)


class ImageClassifier(mlflow.pyfunc.PythonModel):
    """Loads the `.keras` artifact once; each `predict` call classifies a batch of image files."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        from deeplecture import evaluation, model_file
        from deeplecture.predict import model_image_shape

        path = Path(context.artifacts[KERAS_ARTIFACT])
        self.model = evaluation.load_model(path)
        self.input_shape = model_image_shape(self.model)
        self.class_names = model_file.class_names(path) or tuple(
            str(index) for index in range(self.model.output_shape[-1])
        )

    def predict(
        self, context: mlflow.pyfunc.PythonModelContext, model_input: pd.DataFrame, params=None
    ) -> pd.DataFrame:
        from deeplecture.predict import image_bytes_to_model_input

        if IMAGE_COLUMN not in model_input.columns:
            raise ValueError(f"expected a column {IMAGE_COLUMN!r} of base64-encoded image files")
        batch = np.stack(
            [
                image_bytes_to_model_input(
                    decode_image_field(value, row), self.input_shape, f"row {row}"
                )
                for row, value in enumerate(model_input[IMAGE_COLUMN])
            ]
        )
        probabilities = self.model.predict(batch, batch_size=256, verbose=0).astype(np.float64)
        frame = pd.DataFrame(probabilities, columns=list(self.class_names))
        frame.insert(0, CLASS_COLUMN, [self.class_names[i] for i in probabilities.argmax(axis=1)])
        return frame


def decode_image_field(value: object, row: int) -> bytes:
    """One request cell: the bytes of an image file, from base64 text (or bytes already)."""
    if isinstance(value, bytes):
        return value
    if not isinstance(value, str):
        raise ValueError(f"row {row}: expected a base64-encoded image file, got {type(value)}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as error:
        raise ValueError(f"row {row}: not base64 text ({error})") from error


def encode_image(pixels: np.ndarray) -> str:
    """Raw pixels (H, W, 3 or 1) as a base64 PNG: an input example, or a request's cell."""
    pixels = np.asarray(pixels).astype(np.uint8)
    image = Image.fromarray(pixels.squeeze(-1) if pixels.shape[-1] == 1 else pixels)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def request_frame(images: np.ndarray) -> pd.DataFrame:
    """Raw pixel images (N, H, W, C) as the frame the served model takes."""
    return pd.DataFrame({IMAGE_COLUMN: [encode_image(image) for image in images]})


def log_model(model_path: Path, name: str, example_images: np.ndarray, run_id: str) -> str:
    """Log the saved model file as the LoggedModel called `name` of the run `run_id` (the run
    that trained it), which MLflow can serve (image files in, class names and probabilities
    out); return its model id. The run is not reopened: its status stays what training left.

    One logged before from the same file and the same serving code (the tag `content_sha256`)
    and READY is reused: an evaluate stage rerun for other reasons logs nothing twice. Earlier
    ones left PENDING (an attempt stopped while logging) are deleted, and said so."""
    client = mlflow.MlflowClient()
    run = client.get_run(run_id)
    digest = content_digest(model_path)
    reused = None
    for model in _models_of(run, name):
        if reused is None and model.status == "READY" and model.tags.get(DIGEST_TAG) == digest:
            reused = model.model_id
        elif model.status != "READY":
            client.delete_logged_model(model.model_id)
            print(
                f"deleted LoggedModel {model.model_id} ({model.status}), logged by an "
                f"interrupted attempt: {name} is logged anew"
            )
    if reused is not None:
        print(f"LoggedModel {reused} already holds this model file and serving code: reused")
        return reused
    artifacts = {KERAS_ARTIFACT: str(model_path)}
    example = request_frame(example_images)
    # The output's columns (one per class name) come from a real prediction.
    probe = ImageClassifier()
    context = mlflow.pyfunc.PythonModelContext(artifacts=artifacts, model_config={})
    probe.load_context(context)
    signature = mlflow.models.infer_signature(example, probe.predict(context, example))
    # Each backend's name is also its package's name.
    requirements = [
        f"keras=={keras.__version__}",
        *(
            _requirement(package)
            for package in (keras.backend.backend(), "pillow", "pandas", "numpy")
        ),
    ]
    # Created first, linked to the training run, so the model is that run's without it open.
    logged = mlflow.initialize_logged_model(
        name=name,
        source_run_id=run_id,
        tags={DIGEST_TAG: digest},
        experiment_id=run.info.experiment_id,
    )
    mlflow.pyfunc.log_model(
        name=name,
        model_id=logged.model_id,
        python_model=str(PACKAGE / MODEL_CODE),
        artifacts=artifacts,
        # The package travels with the model, so it loads wherever its requirements are.
        code_paths=[str(PACKAGE)],
        signature=signature,
        input_example=example,
        pip_requirements=requirements,
    )
    # An output of the run, as a model logged inside the open run is: the run's page lists it.
    client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=0)])
    return logged.model_id


def content_digest(model_path: Path) -> str:
    """sha256 over the model file and every source file of the package that travels with it:
    equal digests, the same served model."""
    digest = hashlib.sha256(model_path.read_bytes())
    for source in sorted(PACKAGE.rglob("*.py")):
        digest.update(source.relative_to(PACKAGE).as_posix().encode())
        digest.update(source.read_bytes())
    return digest.hexdigest()


def _models_of(run: mlflow.entities.Run, name: str) -> list:
    """The run's LoggedModels called `name`, deleted ones left out."""
    models = mlflow.search_logged_models(
        experiment_ids=[run.info.experiment_id],
        filter_string=f"source_run_id = '{run.info.run_id}'",
        output_format="list",
    )
    return [model for model in models if model.name == name]  # never spliced into the filter


def _requirement(package: str) -> str:
    try:
        return f"{package}=={version(package)}"
    except PackageNotFoundError:
        return package
