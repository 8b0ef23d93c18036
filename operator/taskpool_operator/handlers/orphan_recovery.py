"""Orphaned tasks of a pool: RUNNING rows whose worker pod is gone. Detect them, report them once (Event,
status, metric), and recover them per `spec.orphans.action` once their pod has been gone for the grace period
(the rules are in `taskpool_operator.orphans`; the write is the probe's `recover_orphans`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Collection

import kopf

from taskpool_operator import conditions as cond
from taskpool_operator import kube, metrics, orphans, workers
from taskpool_operator.handlers import memory
from taskpool_operator.handlers.indexes import WorkerPod
from taskpool_operator.pool import Pool
from taskpool_operator.probe.depth import OrphanedRows, OrphanRecovery, PoolDepth, ProbeError
from taskpool_operator.probe.hub import ProbeHub

logger = logging.getLogger(__name__)
ERRORS_LABEL = "orphans"
metrics.reconcile_errors.labels(ERRORS_LABEL)  # the series exists (at 0) from start-up


@dataclasses.dataclass(frozen=True)
class OrphanRound:
    orphaned: int
    """Orphaned RUNNING tasks in this reading."""
    recovered: int
    """How many of them were just failed or requeued."""

    @property
    def left(self) -> int:
        """Orphaned tasks still RUNNING after this round."""
        return max(0, self.orphaned - self.recovered)


def _orphans(
    pool: Pool, depth: PoolDepth, pods: Collection[WorkerPod], mem: memory.PoolMemory, now: float
) -> orphans.OrphanView:
    """The pool's worker ids owning RUNNING rows whose pod is gone (absent, or past its deletion deadline:
    `orphans.pod_gone`); `now` is time.monotonic()."""
    wall_clock = time.time()
    live = {pod.name for pod in pods if not orphans.pod_gone(pod.deletion_deadline, wall_clock)}
    missing = workers.orphaned_worker_ids(pool.name, (w.worker_id for w in depth.running_by_worker), live)
    view = orphans.observe(mem.orphan_missing_since, missing, now, pool.orphans.grace_period_s)
    mem.orphan_missing_since = view.missing_since
    return view


def _orphan_warning(pool: Pool, tasks: int, worker_ids: frozenset[str]) -> str:
    listed = ", ".join(sorted(worker_ids)[:5]) + (", ..." if len(worker_ids) > 5 else "")
    grace = orphans.format_seconds(pool.orphans.grace_period_s)
    outcome = {
        "Fail": f"they will be marked FAILED once their pod has been gone for {grace}",
        "Requeue": f"they will be made READY again once their pod has been gone for {grace}",
        "Report": "spec.orphans.action is Report: they will not finish by themselves",
    }[pool.orphans.action]
    return (
        f"{tasks} RUNNING task(s) were claimed by worker pods that no longer exist (worker ids: {listed}); "
        f"{outcome}"
    )


async def handle(
    body: kopf.Body,
    pool: Pool,
    hub: ProbeHub,
    *,
    depth: PoolDepth,
    pods: Collection[WorkerPod],
    mem: memory.PoolMemory,
) -> OrphanRound:
    """Detects orphaned tasks (reported once per new worker id) and recovers those past the grace period."""
    view = _orphans(pool, depth, pods, mem, time.monotonic())
    orphaned_tasks = sum(w.running for w in depth.running_by_worker if w.worker_id in view.confirmed)
    if view.confirmed - mem.orphans:
        kopf.warn(
            body,
            reason=cond.EventReason.ORPHANED_TASKS,
            message=_orphan_warning(pool, orphaned_tasks, view.confirmed),
        )
    mem.orphans = view.confirmed
    if pool.orphans.action != "Report":  # the series of the pool's action exists from the start, at 0
        metrics.orphaned_tasks_recovered.labels(pool.namespace, pool.name, pool.orphans.action.lower())
    recovered = await _recover_orphans(body, pool, hub, depth=depth, due=view.due, mem=mem)
    if mem.orphans_recovered is None:
        mem.orphans_recovered = int(mem.last_status.get("orphansRecovered") or 0)
    mem.orphans_recovered += recovered
    found = OrphanRound(orphaned_tasks, recovered)
    metrics.record_orphaned(pool.namespace, pool.name, found.left)
    return found


async def _recover_orphans(
    body: kopf.Body,
    pool: Pool,
    hub: ProbeHub,
    *,
    depth: PoolDepth,
    due: frozenset[str],
    mem: memory.PoolMemory,
) -> int:
    """Fails or requeues the RUNNING rows of `due` worker ids (spec.orphans.action) once the API server
    confirms their pods are gone (or past their deletion deadline); returns how many rows changed. Errors are
    counted and logged, never raised: the rows stay RUNNING and the next round tries again."""
    action = pool.orphans.action
    if action == "Report" or not due:
        return 0
    try:
        # One list of the pool's pods, matched by the ids' rule (a trimmed id names only the end of its pod).
        live = await asyncio.to_thread(kube.live_worker_pods, pool.namespace, pool.name)
        lost = workers.orphaned_worker_ids(pool.name, due, live)
        # The watch missed these pods (it lags, or stalled): their tasks are not orphans; restart their clock.
        for worker_id in due - lost:
            mem.orphan_missing_since.pop(worker_id, None)
        rows = tuple(
            OrphanedRows(
                w.queue,
                w.worker_id,
                orphans.lost_worker_traceback(
                    w.worker_id, workers.pod_of_worker(w.worker_id), pool.orphans.grace_period_s
                ),
            )
            for w in depth.running_by_worker
            if w.worker_id in lost
        )
        if not rows:
            return 0
        recovery = OrphanRecovery(action, pool.backend, rows, orphans.WORKER_LOST)
        recovered = await hub.recover_orphans(pool.key, recovery)
    except ProbeError as exc:  # its message never has the password
        metrics.reconcile_errors.labels(ERRORS_LABEL).inc()
        logger.warning("%s/%s: orphan recovery failed: %s", pool.namespace, pool.name, exc)
        return 0
    except Exception:
        metrics.reconcile_errors.labels(ERRORS_LABEL).inc()
        logger.exception("%s/%s: orphan recovery failed", pool.namespace, pool.name)
        return 0
    if not recovered:
        return 0
    metrics.orphaned_tasks_recovered.labels(pool.namespace, pool.name, action.lower()).inc(len(recovered))
    gone = ", ".join(sorted({workers.pod_of_worker(w) for w in recovered.values()}))
    grace = orphans.format_seconds(pool.orphans.grace_period_s)
    if action == "Fail":
        message = (
            f"marked {len(recovered)} orphaned task(s) FAILED ({orphans.WORKER_LOST}): their worker pod(s) "
            f"{gone} had been gone for {grace}"
        )
        kopf.warn(body, reason=cond.EventReason.ORPHANED_TASKS_FAILED, message=message)
    else:
        message = (
            f"made {len(recovered)} orphaned task(s) READY again for another worker: their worker pod(s) "
            f"{gone} had been gone for {grace}"
        )
        kopf.info(body, reason=cond.EventReason.ORPHANED_TASKS_REQUEUED, message=message)
    logger.info("%s/%s: %s (task ids: %s)", pool.namespace, pool.name, message, ", ".join(sorted(recovered)))
    return len(recovered)
