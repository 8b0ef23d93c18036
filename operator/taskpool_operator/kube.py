"""The Kubernetes API calls the handlers make (blocking; handlers run them in a thread)."""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import time
from http import HTTPStatus
from typing import Any, cast

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from taskpool_operator import crd, objects, orphans
from taskpool_operator.conditions import Reason

REQUEST_TIMEOUT_S = 10.0
# The generated client would pick JSON Patch for dict bodies; every patch here is a JSON merge patch.
MERGE_PATCH = "application/merge-patch+json"


class SecretProblem(Exception):
    """The pool's Secret or its key is missing or unreadable; the message names them, never their content."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def load_config() -> None:
    """In-cluster credentials when running in a pod, else the kubeconfig ($KUBECONFIG)."""
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]


# Handlers of many pools call the API from several threads at once; urllib3's default of 10 pooled
# connections made it drop and re-open connections ("Connection pool is full") with 200 pools.
CONNECTION_POOL_SIZE = 32


@functools.cache
def _api() -> client.ApiClient:
    configuration = client.Configuration.get_default_copy()
    configuration.connection_pool_maxsize = CONNECTION_POOL_SIZE
    return client.ApiClient(configuration)


def _apps() -> client.AppsV1Api:
    return client.AppsV1Api(_api())


def _core() -> client.CoreV1Api:
    return client.CoreV1Api(_api())


def _custom() -> client.CustomObjectsApi:
    return client.CustomObjectsApi(_api())


def _plain(obj: Any) -> dict[str, Any]:
    return cast(dict[str, Any], _api().sanitize_for_serialization(obj))  # type: ignore[no-untyped-call]


def is_not_found(exc: BaseException) -> bool:
    """The one check for "that object does not exist (any more)"."""
    return isinstance(exc, ApiException) and exc.status == HTTPStatus.NOT_FOUND


# 4xx answers that retrying the same write may cure: gone meanwhile, changed meanwhile, throttled.
_RETRYABLE_CLIENT_ERRORS = frozenset({404, 408, 409, 429})
REJECTION_MESSAGE_LIMIT = 1024


def rejection_message(exc: BaseException) -> str | None:
    """The API server's own message when it refused a write (invalid, forbidden by RBAC or admission...),
    None for errors that a retry may cure. The operator's writes never carry a Secret's value (the DSN
    reaches the pods through a secretKeyRef), so neither does the message."""
    if not isinstance(exc, ApiException) or exc.status is None:
        return None
    if not 400 <= exc.status < 500 or exc.status in _RETRYABLE_CLIENT_ERRORS:
        return None
    message = ""
    with contextlib.suppress(ValueError, AttributeError):  # a body that is not a Status object
        message = str(json.loads(exc.body or "{}").get("message") or "")
    return (message or f"{exc.status} {exc.reason}")[:REJECTION_MESSAGE_LIMIT]


def read_deployment(namespace: str, name: str) -> dict[str, Any] | None:
    try:
        found = _apps().read_namespaced_deployment(name, namespace, _request_timeout=REQUEST_TIMEOUT_S)
    except ApiException as exc:
        if is_not_found(exc):
            return None
        raise
    return _plain(found)


def _deployment(manifest: dict[str, Any]) -> client.V1Deployment:
    deployment = client.V1Deployment.from_dict(manifest)
    if deployment is None:
        raise ValueError("empty Deployment manifest")
    return deployment


def create_deployment(manifest: dict[str, Any]) -> dict[str, Any]:
    namespace = manifest["metadata"]["namespace"]
    created = _apps().create_namespaced_deployment(
        namespace, _deployment(manifest), field_manager=objects.MANAGER, _request_timeout=REQUEST_TIMEOUT_S
    )
    return _plain(created)


def replace_deployment(manifest: dict[str, Any]) -> dict[str, Any]:
    """PUT: the Deployment becomes exactly what the operator built (manual edits are undone)."""
    meta = manifest["metadata"]
    replaced = _apps().replace_namespaced_deployment(
        meta["name"],
        meta["namespace"],
        _deployment(manifest),
        field_manager=objects.MANAGER,
        _request_timeout=REQUEST_TIMEOUT_S,
    )
    return _plain(replaced)


def scale_deployment(namespace: str, name: str, replicas: int) -> int:
    """Sets the Deployment's replicas; returns its new generation."""
    patched = _apps().patch_namespaced_deployment(
        name,
        namespace,
        objects.build_scale_patch(replicas),
        field_manager=objects.MANAGER,
        _content_type=MERGE_PATCH,
        _request_timeout=REQUEST_TIMEOUT_S,
    )
    return int(patched.metadata.generation or 0) if patched.metadata else 0


def patch_pod(namespace: str, name: str, patch: dict[str, Any]) -> None:
    try:
        _core().patch_namespaced_pod(
            name,
            namespace,
            patch,
            field_manager=objects.MANAGER,
            _content_type=MERGE_PATCH,
            _request_timeout=REQUEST_TIMEOUT_S,
        )
    except ApiException as exc:
        if not is_not_found(exc):  # the pod went away meanwhile: nothing left to mark
            raise


def live_worker_pods(namespace: str, pool: str) -> set[str]:
    """The names of the pool's worker pods that the API server has and that are not past their deletion
    deadline (`orphans.pod_gone`). Asked directly, never a watch cache: before the operator recovers a pod's
    tasks. A list by label needs only the `list` verb the pod watch has."""
    found = _core().list_namespaced_pod(
        namespace, label_selector=objects.selector_string(pool), _request_timeout=REQUEST_TIMEOUT_S
    )
    now = time.time()
    names = set()
    for pod in found.items:
        meta = pod.metadata
        if meta is None or meta.name is None:
            continue
        deadline = meta.deletion_timestamp
        if not orphans.pod_gone(None if deadline is None else deadline.timestamp(), now):
            names.add(meta.name)
    return names


def read_secret_value(namespace: str, name: str, key: str) -> str:
    """The decoded value of one key of a Secret."""
    try:
        secret = _core().read_namespaced_secret(name, namespace, _request_timeout=REQUEST_TIMEOUT_S)
    except ApiException as exc:
        if is_not_found(exc):
            raise SecretProblem(Reason.SECRET_NOT_FOUND, f"Secret {name!r} does not exist") from None
        if exc.status == HTTPStatus.FORBIDDEN:
            raise SecretProblem(
                Reason.SECRET_FORBIDDEN, f"the operator may not read Secret {name!r}"
            ) from None
        raise
    data = secret.data or {}
    if key not in data:
        raise SecretProblem(Reason.SECRET_KEY_NOT_FOUND, f"Secret {name!r} has no key {key!r}")
    try:
        return base64.b64decode(data[key]).decode("utf-8").strip()
    except (ValueError, UnicodeDecodeError):
        raise SecretProblem(
            Reason.SECRET_KEY_INVALID, f"key {key!r} of Secret {name!r} is not UTF-8 text"
        ) from None


def patch_pool_status(namespace: str, name: str, status: dict[str, Any]) -> None:
    try:
        _custom().patch_namespaced_custom_object_status(
            crd.GROUP,
            crd.VERSION,
            namespace,
            crd.PLURAL,
            name,
            {"status": status},
            field_manager=objects.MANAGER,
            _content_type=MERGE_PATCH,
            _request_timeout=REQUEST_TIMEOUT_S,
        )
    except ApiException as exc:
        if not is_not_found(exc):  # the pool was deleted meanwhile
            raise


def read_pool(namespace: str, name: str) -> dict[str, Any] | None:
    try:
        found = _custom().get_namespaced_custom_object(
            crd.GROUP, crd.VERSION, namespace, crd.PLURAL, name, _request_timeout=REQUEST_TIMEOUT_S
        )
    except ApiException as exc:
        if is_not_found(exc):
            return None
        raise
    return cast(dict[str, Any], found)


def delete_deployment(namespace: str, name: str) -> None:
    """Deletes a Deployment (its pods go with it); gone already is fine."""
    try:
        _apps().delete_namespaced_deployment(name, namespace, _request_timeout=REQUEST_TIMEOUT_S)
    except ApiException as exc:
        if exc.status != 404:
            raise
