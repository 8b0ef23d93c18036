"""Operator start and stop: kopf settings, Kubernetes credentials, the shared queue probe."""

from __future__ import annotations

import functools
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


def login(settings: kopf.OperatorSettings, **_: Any) -> kopf.ConnectionInfo:
    """kopf and the handlers' own requests use the same credentials (in-cluster, else the kubeconfig)."""
    return kube.configure(functools.partial(kube.load_credentials, settings))


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
