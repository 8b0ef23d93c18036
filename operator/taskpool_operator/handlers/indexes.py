"""In-memory indexes of the operator's worker pods and Deployments, kept current by kopf's watches."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from taskpool_operator import objects
from taskpool_operator.pool import PoolKey


@dataclasses.dataclass(frozen=True)
class WorkerPod:
    name: str
    deleting: bool
    deletion_cost: int | None


@dataclasses.dataclass(frozen=True)
class WorkerDeployment:
    spec_replicas: int
    replicas: int
    ready_replicas: int


def _pool_key(namespace: str | None, labels: Mapping[str, str]) -> PoolKey | None:
    pool = labels.get(objects.POOL_LABEL)
    return (namespace, pool) if namespace and pool else None


def worker_pods(
    body: Mapping[str, Any],
    name: str,
    namespace: str | None,
    labels: Mapping[str, str],
    meta: Mapping[str, Any],
    **_: Any,
) -> dict[PoolKey, WorkerPod]:
    key = _pool_key(namespace, labels)
    if key is None:
        return {}
    pod = WorkerPod(name, bool(meta.get("deletionTimestamp")), objects.pod_deletion_cost(body))
    return {key: pod}


def worker_deployments(
    namespace: str | None,
    labels: Mapping[str, str],
    spec: Mapping[str, Any],
    status: Mapping[str, Any],
    **_: Any,
) -> dict[PoolKey, WorkerDeployment]:
    key = _pool_key(namespace, labels)
    if key is None:
        return {}
    deployment = WorkerDeployment(
        spec_replicas=int(spec.get("replicas", 0) or 0),
        replicas=int(status.get("replicas", 0) or 0),
        ready_replicas=int(status.get("readyReplicas", 0) or 0),
    )
    return {key: deployment}
