"""The Kubernetes API calls the handlers make: JSON over HTTPS (blocking; handlers run them in a thread).

Not the official `kubernetes` client: importing it loads every generated model class, about 36 MB of the
operator's resident memory (benchmarks/many_pools.py), and kopf imports it too whenever it is installed. The
operator makes a dozen plain JSON requests; urllib3 pools their connections.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import os
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from http import HTTPStatus
from pathlib import Path
from typing import Any, Protocol, cast
from urllib.parse import quote, urlencode

import urllib3

from taskpool_operator import crd, objects, orphans
from taskpool_operator.conditions import Problem, Reason

REQUEST_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 5.0
# Every patch here is a JSON merge patch.
MERGE_PATCH = "application/merge-patch+json"
# Handlers of many pools call the API from several threads at once; urllib3's default of 10 pooled
# connections made it drop and re-open connections ("Connection pool is full") with 200 pools.
CONNECTION_POOL_SIZE = 32


class SecretProblem(Exception):
    """The pool's Secret or its key is missing or unreadable; the message names them, never their content."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class ApiError(Exception):
    """The API server answered with an error status; `body` is its answer (a Status object, as text)."""

    def __init__(self, status: int, reason: str, body: str = "") -> None:
        super().__init__(f"({status}) {reason}")
        self.status = status
        self.reason = reason
        self.body = body


@dataclasses.dataclass(frozen=True)
class Resource:
    """A kind of object the operator reads or writes, and the RBAC resource a call on it needs."""

    group: str
    version: str
    plural: str
    subresource: str = ""

    @property
    def rbac(self) -> tuple[str, str]:
        return self.group, f"{self.plural}/{self.subresource}" if self.subresource else self.plural

    def path(self, namespace: str, name: str = "") -> str:
        prefix = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        path = f"{prefix}/namespaces/{quote(namespace)}/{self.plural}"
        if name:
            path += f"/{quote(name)}"
        if self.subresource:
            path += f"/{self.subresource}"
        return path


DEPLOYMENTS = Resource("apps", "v1", "deployments")
PODS = Resource("", "v1", "pods")
SECRETS = Resource("", "v1", "secrets")
POOLS = Resource(crd.GROUP, crd.VERSION, crd.PLURAL)
POOL_STATUS = Resource(crd.GROUP, crd.VERSION, crd.PLURAL, subresource="status")
# The RBAC verb of each call -> its HTTP method.
_METHODS = {
    "get": "GET",
    "list": "GET",
    "create": "POST",
    "update": "PUT",
    "patch": "PATCH",
    "delete": "DELETE",
}


class Credentials(Protocol):
    """What a login gives (Credentials has these fields)."""

    @property
    def server(self) -> str: ...
    @property
    def ca_path(self) -> str | bytes | os.PathLike[str] | os.PathLike[bytes] | None: ...
    @property
    def ca_data(self) -> str | bytes | None: ...
    @property
    def insecure(self) -> bool | None: ...
    @property
    def scheme(self) -> str | None: ...
    @property
    def token(self) -> str | None: ...
    @property
    def username(self) -> str | None: ...
    @property
    def password(self) -> str | None: ...
    @property
    def certificate_path(self) -> str | bytes | os.PathLike[str] | os.PathLike[bytes] | None: ...
    @property
    def certificate_data(self) -> str | bytes | None: ...
    @property
    def private_key_path(self) -> str | bytes | os.PathLike[str] | os.PathLike[bytes] | None: ...
    @property
    def private_key_data(self) -> str | bytes | None: ...


def _pem(data: str | bytes) -> str:
    """A kubeconfig's `*-data` field (base64 of PEM) as PEM text."""
    return base64.b64decode(data).decode("ascii")


def _ssl_context(info: Credentials) -> ssl.SSLContext:
    context = ssl.create_default_context(
        cafile=os.fsdecode(info.ca_path) if info.ca_path else None,
        cadata=_pem(info.ca_data) if info.ca_data else None,
    )
    if info.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    certificate, key = info.certificate_path, info.private_key_path
    if certificate is None and info.certificate_data is None:
        return context
    with tempfile.TemporaryDirectory(prefix="taskpool-operator-") as folder:
        # The ssl module loads a client certificate from files only: private ones, gone once loaded.
        if info.certificate_data:
            certificate = Path(folder, "tls.crt")
            certificate.write_text(_pem(info.certificate_data))
        if info.private_key_data:
            key = Path(folder, "tls.key")
            key.write_text(_pem(info.private_key_data))
        assert certificate is not None  # one of path and data (ConnectionInfo refuses both)
        context.load_cert_chain(os.fsdecode(certificate), os.fsdecode(key) if key else None)
    return context


class _Client:
    """One API server and its credentials, with a connection pool shared by the handlers' threads."""

    def __init__(self, info: Credentials) -> None:
        self.server = info.server.rstrip("/")
        self.headers = {"Accept": "application/json"}
        if info.token:
            self.headers["Authorization"] = f"{info.scheme or 'Bearer'} {info.token}"
        elif info.username and info.password:
            self.headers.update(urllib3.make_headers(basic_auth=f"{info.username}:{info.password}"))
        self.pool = urllib3.PoolManager(
            num_pools=1,
            maxsize=CONNECTION_POOL_SIZE,
            ssl_context=_ssl_context(info),
            # As the official client: a few retries of failed connections (a pooled one the server closed),
            # never of a request the server may have acted on.
            retries=urllib3.Retry(total=3, read=0, redirect=False),
            timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT_S, read=REQUEST_TIMEOUT_S),
        )

    def request(
        self, method: str, url: str, body: bytes | None, content_type: str
    ) -> urllib3.BaseHTTPResponse:
        headers = {**self.headers, "Content-Type": content_type} if body is not None else self.headers
        return self.pool.request(method, self.server + url, body=body, headers=headers)


_login: Callable[[], Credentials] | None = None
_client: _Client | None = None
_client_lock = threading.Lock()


def configure[C: Credentials](login: Callable[[], C]) -> C:
    """Logs in with `login` (again after a 401: a service account's token is rotated) and returns the
    credentials, which kopf uses for its own requests."""
    global _login, _client
    info = login()
    with _client_lock:
        _login, _client = login, _Client(info)
    return info


def _current() -> _Client:
    if _client is None:
        raise RuntimeError("kube.configure() was not called (the operator's login handler does it)")
    return _client


def _request(
    verb: str,
    resource: Resource,
    namespace: str,
    name: str = "",
    *,
    body: Mapping[str, Any] | None = None,
    params: Mapping[str, str | int] | None = None,
    content_type: str = "application/json",
) -> dict[str, Any]:
    """One call; `verb` is the RBAC verb it needs (tests/unit/test_chart_rbac.py reads these calls)."""
    url = resource.path(namespace, name)
    if verb in ("create", "update", "patch"):
        params = {**(params or {}), "fieldManager": objects.MANAGER}
    if params:
        url += "?" + urlencode(params)
    data = None if body is None else json.dumps(body).encode()
    response = _current().request(_METHODS[verb], url, data, content_type)
    if response.status == HTTPStatus.UNAUTHORIZED and _login is not None:
        configure(_login)
        response = _current().request(_METHODS[verb], url, data, content_type)
    if response.status >= 400:
        reason = response.reason or HTTPStatus(response.status).phrase
        raise ApiError(response.status, reason, response.data.decode(errors="replace"))
    return cast(dict[str, Any], json.loads(response.data))


def is_not_found(exc: BaseException) -> bool:
    """The one check for "that object does not exist (any more)"."""
    return isinstance(exc, ApiError) and exc.status == HTTPStatus.NOT_FOUND


# 4xx answers that retrying the same write may cure: gone meanwhile, changed meanwhile, throttled.
_RETRYABLE_CLIENT_ERRORS = frozenset({404, 408, 409, 429})
REJECTION_MESSAGE_LIMIT = 1024


def rejection_message(exc: BaseException) -> str | None:
    """The API server's own message when it refused a write (invalid, forbidden by RBAC or admission...),
    None for errors that a retry may cure. The operator's writes never carry a Secret's value (the DSN
    reaches the pods through a secretKeyRef), so neither does the message."""
    if not isinstance(exc, ApiError):
        return None
    if not 400 <= exc.status < 500 or exc.status in _RETRYABLE_CLIENT_ERRORS:
        return None
    message = ""
    with contextlib.suppress(ValueError, AttributeError):  # a body that is not a Status object
        message = str(json.loads(exc.body or "{}").get("message") or "")
    return (message or f"{exc.status} {exc.reason}")[:REJECTION_MESSAGE_LIMIT]


def read_deployment(namespace: str, name: str) -> dict[str, Any] | None:
    try:
        return _request("get", DEPLOYMENTS, namespace, name)
    except ApiError as exc:
        if is_not_found(exc):
            return None
        raise


def create_deployment(manifest: dict[str, Any]) -> dict[str, Any]:
    return _request("create", DEPLOYMENTS, manifest["metadata"]["namespace"], body=manifest)


def replace_deployment(manifest: dict[str, Any]) -> dict[str, Any]:
    """PUT: the Deployment becomes exactly what the operator built (manual edits are undone)."""
    meta = manifest["metadata"]
    return _request("update", DEPLOYMENTS, meta["namespace"], meta["name"], body=manifest)


class WriteRefused(Exception):
    """A write that retrying cannot cure: another controller owns the object, or the API server refused it.
    `problem` is what the pool's Stalled condition and its Warning Event say."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


def write_deployment(manifest: dict[str, Any], live: dict[str, Any] | None) -> dict[str, Any]:
    """The one create-or-replace of a Deployment the operator builds (a pool's workers or scheduler): created
    when there is none (`live` None), else replaced so that it is exactly what the operator built, keeping the
    annotations and labels other controllers put on the Deployment itself (its revision...) and a `kubectl
    rollout restart` stamp on its pod template.

    Raises WriteRefused when `live` has another controlling owner than the manifest, or when the API server
    refuses the write (invalid, forbidden by RBAC or an admission policy...; the message is the server's);
    ApiError for what a retry may cure (409: changed meanwhile)."""
    name = manifest["metadata"]["name"]
    if live is not None and objects.controller_uid(live) != objects.controller_uid(manifest):
        raise WriteRefused(
            Problem(
                Reason.DEPLOYMENT_NOT_OWNED,
                f"Deployment {name!r} already exists and is not owned by this pool",
            )
        )
    try:
        if live is None:
            return create_deployment(manifest)
        live_meta = live["metadata"]
        metadata = {
            **manifest["metadata"],
            "resourceVersion": live_meta["resourceVersion"],
            "annotations": dict(live_meta.get("annotations") or {}),
            "labels": {**(live_meta.get("labels") or {}), **manifest["metadata"]["labels"]},
        }
        spec = objects.keep_rollout_restart(manifest["spec"], live)
        return replace_deployment({**manifest, "metadata": metadata, "spec": spec})
    except ApiError as exc:
        rejection = rejection_message(exc)
        if rejection is None:
            raise
        raise WriteRefused(
            Problem(
                Reason.DEPLOYMENT_REJECTED, f"the API server refused the Deployment {name!r}: {rejection}"
            )
        ) from None


def scale_deployment(namespace: str, name: str, replicas: int) -> int:
    """Sets the Deployment's replicas; returns its new generation."""
    patched = _request(
        "patch",
        DEPLOYMENTS,
        namespace,
        name,
        body=objects.build_scale_patch(replicas),
        content_type=MERGE_PATCH,
    )
    return int(patched.get("metadata", {}).get("generation") or 0)


def patch_pod(namespace: str, name: str, patch: dict[str, Any]) -> None:
    try:
        _request("patch", PODS, namespace, name, body=patch, content_type=MERGE_PATCH)
    except ApiError as exc:
        if not is_not_found(exc):  # the pod went away meanwhile: nothing left to mark
            raise


def live_worker_pods(namespace: str, pool: str) -> set[str]:
    """The names of the pool's worker pods that the API server has and that are not past their deletion
    deadline (`orphans.pod_gone`). Asked directly, never a watch cache: before the operator recovers a pod's
    tasks. A list by label needs only the `list` verb the pod watch has."""
    found = _request("list", PODS, namespace, params={"labelSelector": objects.selector_string(pool)})
    now = time.time()
    return {
        pod["metadata"]["name"]
        for pod in found.get("items") or []
        if not orphans.pod_gone(objects.pod_deletion_deadline(pod["metadata"]), now)
    }


def read_secret_value(namespace: str, name: str, key: str) -> str:
    """The decoded value of one key of a Secret."""
    try:
        secret = _request("get", SECRETS, namespace, name)
    except ApiError as exc:
        if is_not_found(exc):
            raise SecretProblem(Reason.SECRET_NOT_FOUND, f"Secret {name!r} does not exist") from None
        if exc.status == HTTPStatus.FORBIDDEN:
            raise SecretProblem(
                Reason.SECRET_FORBIDDEN, f"the operator may not read Secret {name!r}"
            ) from None
        raise
    data = secret.get("data") or {}
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
        _request("patch", POOL_STATUS, namespace, name, body={"status": status}, content_type=MERGE_PATCH)
    except ApiError as exc:
        if not is_not_found(exc):  # the pool was deleted meanwhile
            raise


def read_pool(namespace: str, name: str) -> dict[str, Any] | None:
    try:
        return _request("get", POOLS, namespace, name)
    except ApiError as exc:
        if is_not_found(exc):
            return None
        raise


def delete_pool(namespace: str, name: str) -> None:
    """Deletes a TaskWorkerPool (the chart's pre-delete hook; the operator never deletes pools); gone already
    is fine."""
    try:
        _request("delete", POOLS, namespace, name)
    except ApiError as exc:
        if not is_not_found(exc):
            raise


def delete_deployment(namespace: str, name: str) -> None:
    """Deletes a Deployment (its pods go with it); gone already is fine."""
    try:
        _request("delete", DEPLOYMENTS, namespace, name)
    except ApiError as exc:
        if exc.status != HTTPStatus.NOT_FOUND:
            raise
