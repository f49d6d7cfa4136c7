"""The code MLflow logs as each model's (MLflow's "models from code": nothing is pickled).

`mlflow.pyfunc.log_model(python_model=<this file>)` stores this file beside the model; loading
the model runs it, and the `ImageClassifier` it declares loads the `.keras` artifact.
"""

import mlflow.models

from deeplecture.served_model import ImageClassifier

mlflow.models.set_model(ImageClassifier())
