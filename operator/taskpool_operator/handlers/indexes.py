"""In-memory indexes of the operator's worker pods and Deployments, kept current by kopf's watches."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from taskpool_operator import objects
from taskpool_operator.conditions import PodProblem, pod_problem
from taskpool_operator.pool import PoolKey


@dataclasses.dataclass(frozen=True)
class WorkerPod:
    name: str
    deleting: bool
    deletion_cost: int | None
    problem: PodProblem | None = None
    """A container waiting for a reason retries will not fix (image pull, crash loop)."""
    deletion_deadline: float | None = None
    """`metadata.deletionTimestamp` in epoch seconds (None: not being deleted); see `orphans.pod_gone`."""


@dataclasses.dataclass(frozen=True)
class WorkerDeployment:
    spec_replicas: int
    replicas: int
    ready_replicas: int
    rolling_out: bool = False
    """Not every pod runs the current template yet (or the controller has not seen the latest spec)."""
    replica_failure: str | None = None
    """The message of the Deployment's ReplicaFailure condition: its pods are refused (admission, quota)."""


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
    status = body.get("status") or {}
    containers = [*(status.get("initContainerStatuses") or ()), *(status.get("containerStatuses") or ())]
    pod = WorkerPod(
        name,
        bool(meta.get("deletionTimestamp")),
        objects.pod_deletion_cost(body),
        problem=pod_problem(name, containers),
        deletion_deadline=objects.pod_deletion_deadline(meta),
    )
    return {key: pod}


def worker_deployments(
    namespace: str | None,
    labels: Mapping[str, str],
    meta: Mapping[str, Any],
    spec: Mapping[str, Any],
    status: Mapping[str, Any],
    **_: Any,
) -> dict[PoolKey, WorkerDeployment]:
    key = _pool_key(namespace, labels)
    if key is None:
        return {}
    spec_replicas = int(spec.get("replicas", 0) or 0)
    replicas = int(status.get("replicas", 0) or 0)
    updated = int(status.get("updatedReplicas", 0) or 0)
    failure = next(
        (
            c
            for c in status.get("conditions") or ()
            if c.get("type") == "ReplicaFailure" and c.get("status") == "True"
        ),
        None,
    )
    deployment = WorkerDeployment(
        spec_replicas=spec_replicas,
        replicas=replicas,
        ready_replicas=int(status.get("readyReplicas", 0) or 0),
        # As `kubectl rollout status`: the controller saw the latest spec and replaced every old pod.
        rolling_out=int(status.get("observedGeneration", 0) or 0) < int(meta.get("generation", 0) or 0)
        or updated < spec_replicas
        or replicas > updated,
        replica_failure=None if failure is None else str(failure.get("message") or failure.get("reason")),
    )
    return {key: deployment}
