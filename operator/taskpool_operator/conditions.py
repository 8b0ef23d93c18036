"""The pool's status vocabulary and its conditions, following the Kubernetes API conventions (pure functions).

Every condition type, condition reason and Event reason the operator writes is declared here, once.

`Ready` summarises the others for `kubectl wait --for=condition=Ready`. `Reconciling` and `Stalled` are what
kstatus (Helm 4's `--wait`) reads, in this order: `Reconciling=True` means "still working, wait";
`Stalled=True` means "cannot progress without a human", and `helm --wait` fails at once with its message. So
the two are never True together: a stalled pool is not reconciling.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from typing import Any, Final

from taskpool_operator.policy import pods_for


class ConditionType(StrEnum):
    READY = "Ready"
    RECONCILING = "Reconciling"
    STALLED = "Stalled"
    DATABASE_REACHABLE = "DatabaseReachable"
    SCALING_ACTIVE = "ScalingActive"
    SCALING_LIMITED = "ScalingLimited"


class Status(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Reason(StrEnum):
    """Reasons of the pool's conditions (also the reasons of the Events raised when a condition changes)."""

    # Ready=True, and Reconciling/Stalled=False
    WORKERS_READY = "WorkersReady"
    AS_EXPECTED = "AsExpected"
    # Ready=False and Reconciling=True: the operator is still working on it
    NEW_GENERATION = "NewGeneration"
    ROLLING_OUT = "RollingOut"
    WORKERS_STARTING = "WorkersStarting"
    DATABASE_UNREACHABLE = "DatabaseUnreachable"
    # Ready=False and Stalled=True: a human has to act
    INVALID_SPEC = "InvalidSpec"
    DEPLOYMENT_REJECTED = "DeploymentRejected"
    DEPLOYMENT_NOT_OWNED = "DeploymentNotOwned"
    PODS_REJECTED = "PodsRejected"
    IMAGE_PULL_FAILED = "ImagePullFailed"
    WORKERS_CRASH_LOOPING = "WorkersCrashLooping"
    # DatabaseReachable
    PROBE_SUCCEEDED = "ProbeSucceeded"
    PROBE_PENDING = "ProbePending"
    SECRET_NOT_FOUND = "SecretNotFound"  # noqa: S105 - a reason, not a password
    SECRET_KEY_NOT_FOUND = "SecretKeyNotFound"  # noqa: S105 - a reason, not a password
    SECRET_KEY_INVALID = "SecretKeyInvalid"  # noqa: S105 - a reason, not a password
    SECRET_FORBIDDEN = "SecretForbidden"  # noqa: S105 - a reason, not a password
    CONNECT_FAILED = "ConnectFailed"
    PROBE_TIMEOUT = "ProbeTimeout"
    TASK_TABLE_MISSING = "TaskTableMissing"
    PROBE_INDEX_MISSING = "ProbeIndexMissing"
    QUERY_FAILED = "QueryFailed"
    # ScalingActive
    QUEUE_MEASURED = "QueueMeasured"
    SCALING_DISABLED = "ScalingDisabled"
    # ScalingLimited
    TOO_MANY_REPLICAS = "TooManyReplicas"
    TOO_FEW_REPLICAS = "TooFewReplicas"
    DESIRED_WITHIN_RANGE = "DesiredWithinRange"


class EventReason(StrEnum):
    """Reasons of the Events that are not a condition's change."""

    SCALED_UP = "ScaledUp"
    SCALED_DOWN = "ScaledDown"
    ORPHANED_TASKS = "OrphanedTasks"
    ORPHANED_TASKS_FAILED = "OrphanedTasksFailed"
    ORPHANED_TASKS_REQUEUED = "OrphanedTasksRequeued"
    BUSY_PODS_DRAINING = "BusyPodsDraining"


TYPES: Final = tuple(ConditionType)

# The probe's error reasons (a metric label, probe.ERROR_REASONS) as DatabaseReachable reasons.
PROBE_ERROR_REASONS: Final[Mapping[str, Reason]] = {
    "connect": Reason.CONNECT_FAILED,
    "timeout": Reason.PROBE_TIMEOUT,
    "missing_table": Reason.TASK_TABLE_MISSING,
    "missing_index": Reason.PROBE_INDEX_MISSING,
    "query": Reason.QUERY_FAILED,
}
SECRET_REASONS: Final = frozenset(
    {Reason.SECRET_NOT_FOUND, Reason.SECRET_KEY_NOT_FOUND, Reason.SECRET_KEY_INVALID, Reason.SECRET_FORBIDDEN}
)
# A Secret can be created just after its pool (same `kubectl apply`, a chart's hook, an external secrets
# controller): it stalls the pool only when still missing after this long.
SECRET_STALL_GRACE_S: Final = 10.0
# Kubernetes' reasons for a waiting container (pod status) that retries will not fix, with the pool's reason.
STALLING_CONTAINER_REASONS: Final[Mapping[str, Reason]] = {
    "ErrImagePull": Reason.IMAGE_PULL_FAILED,
    "ImagePullBackOff": Reason.IMAGE_PULL_FAILED,
    "InvalidImageName": Reason.IMAGE_PULL_FAILED,
    "CrashLoopBackOff": Reason.WORKERS_CRASH_LOOPING,
}


@dataclasses.dataclass(frozen=True)
class Condition:
    type: ConditionType
    status: Status
    reason: Reason
    message: str


@dataclasses.dataclass(frozen=True)
class Problem:
    """Why the pool cannot progress (reason and message of Stalled and Ready)."""

    reason: Reason
    message: str


@dataclasses.dataclass(frozen=True)
class PodProblem:
    """A worker pod's container waiting for a reason of STALLING_CONTAINER_REASONS (from its pod status)."""

    pod: str
    container_reason: str
    message: str


@dataclasses.dataclass(frozen=True)
class Progress:
    """What Ready, Reconciling and Stalled are decided from (gathered by the scaling loop)."""

    database: Condition | None
    desired_replicas: int
    ready_replicas: int
    generation_applied: bool = True
    """The Deployment carries the pool's current spec."""
    rolling_out: bool = False
    """The Deployment has not yet replaced every pod with the current template."""
    secret_missing_for_s: float | None = None
    """How long the pool's Secret or key has been missing or unreadable, continuously."""
    write_rejected: Problem | None = None
    """The API server refused a write of the pool's Deployment (its message), or another owner has it."""
    pods_rejected: str | None = None
    """The Deployment's ReplicaFailure message: its pods were refused (admission, quota...)."""
    pod_problems: Sequence[PodProblem] = ()


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
            "type": str(update.type),
            "status": str(update.status),
            "reason": str(update.reason),
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


def database_reachable(error: str | None, reason: Reason = Reason.QUERY_FAILED) -> Condition:
    if error is None:
        return Condition(
            ConditionType.DATABASE_REACHABLE, Status.TRUE, Reason.PROBE_SUCCEEDED, "the task table was read"
        )
    return Condition(ConditionType.DATABASE_REACHABLE, Status.FALSE, reason, error)


def scaling_active(enabled: bool, reachable: bool) -> Condition:
    if not enabled:
        return Condition(
            ConditionType.SCALING_ACTIVE,
            Status.FALSE,
            Reason.SCALING_DISABLED,
            "spec.scaling.enabled is false",
        )
    if not reachable:
        return Condition(
            ConditionType.SCALING_ACTIVE,
            Status.FALSE,
            Reason.DATABASE_UNREACHABLE,
            "replicas are held until the queue can be read",
        )
    return Condition(
        ConditionType.SCALING_ACTIVE, Status.TRUE, Reason.QUEUE_MEASURED, "replicas follow the queue depth"
    )


def scaling_limited(tasks: int, tasks_per_replica: int, minimum: int, maximum: int) -> Condition:
    """Whether the queue (ready plus running tasks) asks for more pods than maxReplicas or fewer than
    minReplicas."""
    wanted = pods_for(tasks, tasks_per_replica)
    if wanted > maximum:
        return Condition(
            ConditionType.SCALING_LIMITED,
            Status.TRUE,
            Reason.TOO_MANY_REPLICAS,
            f"the queue asks for {wanted} pods; maxReplicas is {maximum}",
        )
    if wanted < minimum:
        return Condition(
            ConditionType.SCALING_LIMITED,
            Status.TRUE,
            Reason.TOO_FEW_REPLICAS,
            f"the queue asks for {wanted} pods; minReplicas is {minimum}",
        )
    return Condition(
        ConditionType.SCALING_LIMITED,
        Status.FALSE,
        Reason.DESIRED_WITHIN_RANGE,
        "the pods the queue asks for are within min and max",
    )


def pod_problem(pod: str, container_statuses: Iterable[Mapping[str, Any]]) -> PodProblem | None:
    """The first container of a pod waiting for a reason retries will not fix (pod status)."""
    for container in container_statuses:
        waiting = (container.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        if reason in STALLING_CONTAINER_REASONS:
            return PodProblem(pod, str(reason), str(waiting.get("message") or reason))
    return None


def stall(progress: Progress) -> Problem | None:
    """Why the pool cannot progress without a human, or None while retries may still get it there."""
    if progress.write_rejected is not None:
        return progress.write_rejected
    database = progress.database
    if (
        database is not None
        and database.reason in SECRET_REASONS
        and progress.secret_missing_for_s is not None
        and progress.secret_missing_for_s >= SECRET_STALL_GRACE_S
    ):
        return Problem(database.reason, database.message)
    if progress.pods_rejected is not None:
        return Problem(Reason.PODS_REJECTED, f"worker pods are refused: {progress.pods_rejected}")
    if progress.pod_problems:
        first = progress.pod_problems[0]
        pods = ", ".join(sorted({p.pod for p in progress.pod_problems}))
        return Problem(
            STALLING_CONTAINER_REASONS[first.container_reason],
            f"{first.container_reason}: {first.message} (pods: {pods})",
        )
    return None


def invalid_spec(message: str) -> list[Condition]:
    """Ready, Reconciling and Stalled of a pool whose spec cannot be acted on."""
    return progress_conditions(
        Progress(None, 0, 0, write_rejected=Problem(Reason.INVALID_SPEC, f"invalid spec: {message}"))
    )


def progress_conditions(progress: Progress) -> list[Condition]:
    """Ready, Reconciling and Stalled. Ready: the spec reached the Deployment, the queue can be read and the
    wanted pods run the current template and are ready. Otherwise either Stalled (a human has to act) or
    Reconciling (retries will get there), with Ready's reason and message."""
    problem = stall(progress)
    ready_message = f"{progress.ready_replicas} of {progress.desired_replicas} worker pods are ready"
    database = progress.database
    if problem is not None:
        not_ready = problem
    elif database is not None and database.status != Status.TRUE:
        not_ready = Problem(Reason.DATABASE_UNREACHABLE, database.message)
    elif not progress.generation_applied:
        not_ready = Problem(Reason.NEW_GENERATION, "the pool's spec is not yet written to its Deployment")
    elif progress.rolling_out:
        not_ready = Problem(Reason.ROLLING_OUT, f"the Deployment is rolling out; {ready_message}")
    elif progress.ready_replicas < progress.desired_replicas:
        not_ready = Problem(Reason.WORKERS_STARTING, ready_message)
    else:
        return [
            Condition(ConditionType.READY, Status.TRUE, Reason.WORKERS_READY, ready_message),
            Condition(ConditionType.RECONCILING, Status.FALSE, Reason.AS_EXPECTED, "the pool is ready"),
            Condition(ConditionType.STALLED, Status.FALSE, Reason.AS_EXPECTED, "the pool is ready"),
        ]
    ready = Condition(ConditionType.READY, Status.FALSE, not_ready.reason, not_ready.message)
    if problem is not None:
        return [
            ready,
            Condition(ConditionType.RECONCILING, Status.FALSE, problem.reason, "stalled: a human has to act"),
            Condition(ConditionType.STALLED, Status.TRUE, problem.reason, problem.message),
        ]
    return [
        ready,
        Condition(ConditionType.RECONCILING, Status.TRUE, not_ready.reason, not_ready.message),
        Condition(ConditionType.STALLED, Status.FALSE, Reason.AS_EXPECTED, "retries may still succeed"),
    ]


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
