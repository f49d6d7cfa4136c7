"""Which accounts may change an experiment or a registered model on the class server.

MLflow's basic-auth keeps each account's permissions (its creator gets MANAGE); an account that
holds EDIT or MANAGE on a name another account owns can write its runs, move its aliases to
versions of its own, or delete it. The accounts tool (as the admin) reads every account's
permissions; evaluate reads its own (registry.py). Admins are left out: they may do anything.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.utils.credentials import get_default_host_creds
from mlflow.utils.rest_utils import http_request, verify_rest_response

WRITE_PERMISSIONS = ("EDIT", "MANAGE")  # MLflow's permissions that change a resource
ANY = "*"  # a grant's pattern that matches every resource of its type
_LIST_USERS = "/api/2.0/mlflow/users/list"
_USER_PERMISSIONS = "/api/3.0/mlflow/users/permissions/list"
_CURRENT_USER_PERMISSIONS = "/api/3.0/mlflow/users/current/permissions"

# (resource type as MLflow names it: "experiment" or "registered_model", the experiment's id or
# the model's name) -> {account: its write permission}
Holders = dict[tuple[str, str], dict[str, str]]


def get(server: str, endpoint: str, **params: str) -> dict[str, Any]:
    """One GET with the MLflow client's own credentials (MLFLOW_TRACKING_USERNAME/PASSWORD)."""
    response = http_request(get_default_host_creds(server), endpoint, "GET", params=params)
    return verify_rest_response(response, endpoint).json()


def own_permissions(server: str) -> dict[str, Any] | None:
    """This account's permission rows and admin flag; None where the server has no accounts."""
    endpoint = _CURRENT_USER_PERMISSIONS
    response = http_request(get_default_host_creds(server), endpoint, "GET")
    if response.status_code == 404:  # a plain `mlflow server`: anyone may change anything
        return None
    return verify_rest_response(response, endpoint).json()


def write_holders(server: str) -> Holders:
    """Every non-admin account's EDIT and MANAGE grants (the caller must be an admin)."""
    holders: Holders = defaultdict(dict)
    for user in get(server, _LIST_USERS)["users"]:
        if user["is_admin"]:
            continue
        rows = get(server, _USER_PERMISSIONS, username=user["username"])["permissions"]
        for resource, permission in writes(rows):
            holders[resource][user["username"]] = permission
    return holders


def writes(rows: list[dict[str, Any]]) -> list[tuple[tuple[str, str], str]]:
    """The (resource, permission) pairs among permission rows that allow writing."""
    return [
        ((row["resource_type"], row["resource_pattern"]), row["permission"])
        for row in rows
        if row["permission"] in WRITE_PERMISSIONS
    ]


def of(
    holders: Holders, resource_type: str, resource_id: str, besides: str | None = None
) -> dict[str, str]:
    """The accounts that may change one resource, by a grant of its own or of every one; all
    but `besides` (its owner, or the caller), where given."""
    held = {
        **holders.get((resource_type, ANY), {}),
        **holders.get((resource_type, resource_id), {}),
    }
    return {user: permission for user, permission in held.items() if user != besides}


def found(lookup: Callable[[str], object], name: str) -> bool:
    """Whether `lookup(name)` (an account, a registered model) finds it on the server."""
    try:
        lookup(name)
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            return False
        raise
    return True


def describe(held_by: dict[str, str]) -> str:
    """`alice (MANAGE), bob (EDIT)`."""
    return ", ".join(f"{user} ({permission})" for user, permission in sorted(held_by.items()))
