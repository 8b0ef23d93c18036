"""Operator start and stop: kopf settings, Kubernetes credentials, the shared queue probe."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import kopf

from taskpool_operator import crd, kube, metrics, objects
from taskpool_operator.probe.hub import ProbeHub

# kopf's finalizer and state annotations carry our API group as their prefix (docs/contracts.md).
PREFIX = crd.GROUP
# Watch requests end on the server after SERVER_TIMEOUT_S and are abandoned by the client after
# CLIENT_TIMEOUT_S: a silently stalled watch stream is re-opened instead of freezing the operator.
SERVER_TIMEOUT_S = 300
CLIENT_TIMEOUT_S = 330
CONNECT_TIMEOUT_S = 10
REQUEST_TIMEOUT_S = 30
SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")


def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.finalizer = f"{PREFIX}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=PREFIX, key="last-handled-configuration"
    )
    settings.watching.server_timeout = SERVER_TIMEOUT_S
    settings.watching.client_timeout = CLIENT_TIMEOUT_S
    settings.watching.connect_timeout = CONNECT_TIMEOUT_S
    settings.networking.request_timeout = REQUEST_TIMEOUT_S
    settings.networking.connect_timeout = CONNECT_TIMEOUT_S
    settings.posting.reporting_component = objects.MANAGER
    settings.posting.event_name_prefix = "taskpool-"


def in_cluster_credentials() -> kopf.ConnectionInfo | None:
    """The pod's service account, at the API server's service address (as the official client finds it:
    cluster DNS is not needed)."""
    host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT")
    token = SERVICE_ACCOUNT / "token"
    if not host or not port or not token.exists():
        return None
    namespace = SERVICE_ACCOUNT / "namespace"
    return kopf.ConnectionInfo(
        server=f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}",
        ca_path=str(SERVICE_ACCOUNT / "ca.crt"),
        scheme="Bearer",
        token=token.read_text().strip(),
        default_namespace=namespace.read_text().strip() if namespace.exists() else None,
    )


def load_credentials(settings: kopf.OperatorSettings) -> kopf.ConnectionInfo:
    """In-cluster credentials when running in a pod, else the kubeconfig ($KUBECONFIG, ~/.kube/config:
    server, CA, client certificate, token or user and password; no exec plugins)."""
    found = in_cluster_credentials() or kopf.login_with_kubeconfig(settings=settings)
    if found is None:
        raise kopf.LoginError("no service account token and no kubeconfig")
    if not (found.token or found.username or found.certificate_path or found.certificate_data):
        # kopf reads an exec plugin's or auth provider's user as no credentials at all: every request would
        # then fail as anonymous, far from the cause.
        raise kopf.LoginError(
            f"the kubeconfig's user for {found.server} has no token, client certificate or password "
            "(exec plugins and auth providers are not supported: use a token or certificate kubeconfig)"
        )
    return found


def login(settings: kopf.OperatorSettings, **_: Any) -> kopf.ConnectionInfo:
    """kopf and the handlers' own requests use the same credentials (in-cluster, else the kubeconfig)."""
    return kube.configure(functools.partial(load_credentials, settings))


def start_probe(memo: kopf.Memo, **_: Any) -> None:
    memo["hub"] = ProbeHub(on_probe=metrics.observe_probe)


async def stop_probe(memo: kopf.Memo, **_: Any) -> None:
    hub: ProbeHub | None = memo.get("hub")
    if hub is not None:
        await hub.close()


def liveness(memo: kopf.Memo, **_: Any) -> int:
    """Reported on the liveness endpoint: how many databases the probe reads."""
    hub: ProbeHub = memo["hub"]
    return len(hub.databases())
