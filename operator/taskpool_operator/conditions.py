"""Status conditions of a pool, following the Kubernetes API conventions (pure functions).

Ready summarises the others so that kstatus (`helm --wait`) and `kubectl wait --for=condition=Ready` work.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from taskpool_operator.policy import pods_for

READY = "Ready"
DATABASE_REACHABLE = "DatabaseReachable"
SCALING_ACTIVE = "ScalingActive"
SCALING_LIMITED = "ScalingLimited"
TYPES = (READY, DATABASE_REACHABLE, SCALING_ACTIVE, SCALING_LIMITED)

TRUE, FALSE, UNKNOWN = "True", "False", "Unknown"


@dataclasses.dataclass(frozen=True)
class Condition:
    type: str
    status: str
    reason: str
    message: str


def merge(
    current: Sequence[Mapping[str, Any]],
    updates: Iterable[Condition],
    generation: int,
    now: str,
) -> list[dict[str, Any]]:
    """The conditions after `updates`; lastTransitionTime changes only when a condition's status does."""
    by_type = {c["type"]: dict(c) for c in current if "type" in c}
    for update in updates:
        previous = by_type.get(update.type)
        changed = previous is None or previous.get("status") != update.status
        by_type[update.type] = {
            "type": update.type,
            "status": update.status,
            "reason": update.reason,
            "message": update.message,
            "observedGeneration": generation,
            "lastTransitionTime": now
            if previous is None or changed
            else previous.get("lastTransitionTime", now),
        }
    ordered = [by_type.pop(t) for t in TYPES if t in by_type]
    return ordered + list(by_type.values())


def find(conditions: Sequence[Mapping[str, Any]], condition_type: str) -> Mapping[str, Any] | None:
    return next((c for c in conditions if c.get("type") == condition_type), None)


def database_reachable(error: str | None, reason: str = "ProbeFailed") -> Condition:
    if error is None:
        return Condition(DATABASE_REACHABLE, TRUE, "ProbeSucceeded", "the task table was read")
    return Condition(DATABASE_REACHABLE, FALSE, reason, error)


def scaling_active(enabled: bool, reachable: bool) -> Condition:
    if not enabled:
        return Condition(SCALING_ACTIVE, FALSE, "ScalingDisabled", "spec.scaling.enabled is false")
    if not reachable:
        return Condition(
            SCALING_ACTIVE, FALSE, "DatabaseUnreachable", "replicas are held until the queue can be read"
        )
    return Condition(SCALING_ACTIVE, TRUE, "QueueMeasured", "replicas follow the queue depth")


def scaling_limited(tasks: int, tasks_per_replica: int, minimum: int, maximum: int) -> Condition:
    """Whether the queue (ready plus running tasks) asks for more pods than maxReplicas or fewer than
    minReplicas."""
    wanted = pods_for(tasks, tasks_per_replica)
    if wanted > maximum:
        return Condition(
            SCALING_LIMITED,
            TRUE,
            "TooManyReplicas",
            f"the queue asks for {wanted} pods; maxReplicas is {maximum}",
        )
    if wanted < minimum:
        return Condition(
            SCALING_LIMITED,
            TRUE,
            "TooFewReplicas",
            f"the queue asks for {wanted} pods; minReplicas is {minimum}",
        )
    return Condition(
        SCALING_LIMITED, FALSE, "DesiredWithinRange", "the pods the queue asks for are within min and max"
    )


def ready(
    database: Condition | None,
    desired_replicas: int,
    ready_replicas: int,
    deployment_error: str | None = None,
) -> Condition:
    """Ready: the Deployment exists, the queue can be read, and the wanted pods are ready."""
    if deployment_error is not None:
        return Condition(READY, FALSE, "DeploymentFailed", deployment_error)
    if database is not None and database.status != TRUE:
        return Condition(READY, FALSE, "DatabaseUnreachable", database.message)
    if ready_replicas < desired_replicas:
        return Condition(
            READY, FALSE, "WorkersStarting", f"{ready_replicas} of {desired_replicas} worker pods are ready"
        )
    return Condition(
        READY, TRUE, "WorkersReady", f"{ready_replicas} of {desired_replicas} worker pods are ready"
    )


def transitions(
    before: Sequence[Mapping[str, Any]], after: Sequence[Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    """Conditions whose status or reason changed (one Event each)."""
    changed = []
    for condition in after:
        previous = find(before, condition["type"])
        if (
            previous is None
            or previous.get("status") != condition["status"]
            or previous.get("reason") != condition["reason"]
        ):
            changed.append(condition)
    return changed
