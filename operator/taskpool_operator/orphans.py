"""Orphaned tasks: which ones to report, and when to recover them (pure: the caller passes the clock).

A task is orphaned when it is RUNNING and the last entry of its `worker_ids` names a pod of the pool's
Deployment that no longer exists (`workers.orphaned_worker_ids`): the worker was SIGKILLed, OOM-killed,
force-deleted or lost with its node, and django-tasks-db has no lease or heartbeat, so the row never finishes.
A pod past its deletion deadline counts as gone though the API server still lists it (`pod_gone`): a lost
node's pods stay Terminating for as long as the Node object exists, since no kubelet confirms their end.

The caller keeps, per worker id, when it first saw that id's pod missing (`missing_since`) and passes it back
with each reading. An id is reported once it was missing in two readings in a row (one reading may predate the
pod's last task finishing), and recovered once its pod has been missing continuously for the pool's grace
period (a force-deleted pod's processes may still be running on its node). An id whose pod reappears, or
whose rows are no longer RUNNING, is forgotten: its clock starts again if it goes missing again.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Final, Literal, get_args

RecoveryAction = Literal["Fail", "Requeue"]
"""The actions that change the task rows (lowercased, the `action` label of the recovery counter)."""
RECOVERY_ACTIONS: Final[tuple[RecoveryAction, ...]] = get_args(RecoveryAction)
OrphanAction = Literal[RecoveryAction, "Report"]
ORPHAN_ACTIONS: Final[tuple[OrphanAction, ...]] = (*RECOVERY_ACTIONS, "Report")

# `exception_class_path` of the rows the Fail action marks FAILED: a real exception class of the worker
# runtime (django_app), so Django's `TaskError.exception_class` resolves it.
WORKER_LOST: Final = "django_taskpool.exceptions.WorkerLost"


@dataclass(frozen=True)
class OrphanView:
    missing_since: dict[str, float]
    """The state to keep: every worker id whose pod is missing now, with when it was first seen missing."""
    confirmed: frozenset[str]
    """Ids missing in the previous reading too: their RUNNING rows are orphans (reported)."""
    due: frozenset[str]
    """Confirmed ids whose pod has been missing for at least the grace period: recover their rows now."""


def observe(
    missing_since: Mapping[str, float], missing: Collection[str], now: float, grace_period_s: float
) -> OrphanView:
    """One reading: `missing` are the ids (of this pool) owning RUNNING rows whose pod is absent now."""
    since = {worker_id: missing_since.get(worker_id, now) for worker_id in missing}
    confirmed = frozenset(worker_id for worker_id in missing if worker_id in missing_since)
    due = frozenset(worker_id for worker_id in confirmed if now - since[worker_id] >= grace_period_s)
    return OrphanView(missing_since=since, confirmed=confirmed, due=due)


def pod_gone(deletion_deadline: float | None, now: float) -> bool:
    """Whether a pod the API server still lists counts as gone: it is being deleted and its deadline passed.
    `deletion_deadline` is its `metadata.deletionTimestamp` (epoch seconds; the API server sets it to the
    deletion request's time plus the pod's grace period, when the kubelet kills what is left of its
    containers); `now` is the wall clock. The orphan grace period then still applies, counted from here."""
    return deletion_deadline is not None and now >= deletion_deadline


def format_seconds(seconds: float) -> str:
    return f"{seconds:g}s"


def lost_worker_traceback(worker_id: str, pod: str, grace_period_s: float) -> str:
    """The one-line `traceback` of a row the Fail action marks FAILED (what a user sees in the result)."""
    return (
        f"WorkerLost: worker {worker_id} stopped while running this task: its pod {pod} was gone for "
        f"{format_seconds(grace_period_s)} (killed, OOM-killed, force-deleted or lost with its node), so the "
        "taskpool operator marked the task FAILED (TaskWorkerPool spec.orphans.action: Fail)"
    )
