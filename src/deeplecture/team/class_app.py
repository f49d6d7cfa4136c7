"""The class server's app (`mlflow server --app-name deeplecture-class`): MLflow's basic-auth
app, plus one rule: a student creates, or renames to, only names inside their own prefix.

MLflow's basic-auth lets any account create any experiment or registered model and makes its
creator the owner (MANAGE). A student could so take a name before its owner does: the teacher's
`cifar10-cnn88` (whose alias the README serves, and a model from code runs its code on whoever
serves it), or a classmate's `bob-cifar10` before bob's account exists. Here a non-admin's
create or rename of an experiment or a registered model (prompts are registered models too) must
name `<username>-…` (names.py), on every path MLflow serves these calls (REST and ajax-api);
the admin (the teacher) is not limited. MLflow's GraphQL and its other routes create neither.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Response, g, request
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import PERMISSION_DENIED
from mlflow.protos.model_registry_pb2 import CreateRegisteredModel, RenameRegisteredModel
from mlflow.protos.service_pb2 import CreateExperiment, UpdateExperiment
from mlflow.server import app as flask_app
from mlflow.server import auth, handlers

from deeplecture.team import names

# Each call that names a new experiment or registered model, and the field holding that name.
_NAMED_BY = {
    CreateExperiment: ("experiment", "name"),
    UpdateExperiment: ("experiment", "new_name"),
    CreateRegisteredModel: ("registered model", "name"),
    RenameRegisteredModel: ("registered model", "new_name"),
}


def _naming_call(request_class: type) -> Callable[[], tuple[str, str]] | None:
    if request_class not in _NAMED_BY:
        return None
    kind, field = _NAMED_BY[request_class]

    def requested_name() -> tuple[str, str]:
        # Parsed as MLflow's own handler parses it (query string, JSON, double-encoded JSON),
        # so no form of the request reaches the handler with a name this check did not see.
        message = handlers._get_request_message(request_class())
        return kind, getattr(message, field)

    return requested_name


# (path, method) for both /api/2.0/mlflow/... and /ajax-api/2.0/mlflow/..., from MLflow's own
# route table: a path MLflow adds for these calls is covered without a change here.
_NAMING_ROUTES = {
    (path, method): handler
    for path, handler, methods in handlers.get_endpoints(_naming_call)
    if handler is not None and handler.__name__ == "requested_name"
    for method in methods
}


@handlers.catch_mlflow_exception
def _only_own_names() -> Response | None:
    """Refuse (403, MLflow's JSON error) a student's name outside `<username>-…`."""
    # The rule Flask matched, not the raw path: the same handler runs for every spelling of it.
    rule = request.url_rule.rule if request.url_rule else None
    requested_name = _NAMING_ROUTES.get((rule, request.method))
    if requested_name is None:
        return None
    # Set by basic-auth's check, which ran first; never unset on these routes, but fail closed.
    username = getattr(g, "mlflow_authenticated_user", None)
    if username and auth.store.get_user(username).is_admin:
        return None
    kind, name = requested_name()
    if name and not (username and names.own_name(username, name)):
        raise MlflowException(
            f"the {kind} name {name!r} is not yours: your account ({username}) may create "
            f"{kind}s only under names that start with '{username}-' "
            f"(set DEEPLECTURE_EXPERIMENT_PREFIX={username})",
            PERMISSION_DENIED,
        )
    return None


def create_app():
    """MLflow's basic-auth app with the names rule after its own checks (Flask runs before-request
    functions in order; the first that answers ends the request, so an unauthenticated one gets
    basic-auth's 401 and never reaches the rule)."""
    served = auth.create_app(flask_app)
    flask_app.before_request(_only_own_names)
    return served
