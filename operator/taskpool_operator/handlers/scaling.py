"""The per-pool loop: measure the queue, decide, scale, and report (status, Events, metrics).

Every poll interval the loop asks the shared probe for the pool's queue depth (ticking the probe itself when
the latest reading is older than half an interval, so a decision never waits a whole extra interval for
data), applies the policy, patches the Deployment's replicas and writes the pool's status. Database trouble
holds the replicas where they are.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

import kopf

from taskpool_operator import conditions as cond
from taskpool_operator import kube, metrics, objects, orphans, policy, workers
from taskpool_operator.handlers import memory
from taskpool_operator.handlers.indexes import WorkerDeployment, WorkerPod
from taskpool_operator.pool import InvalidPool, Pool, probe_target, scaling_spec
from taskpool_operator.probe import OrphanedRows, OrphanRecovery, PoolDepth, ProbeError, ProbeHub

logger = logging.getLogger(__name__)
ERRORS_LABEL = "scaling"
ORPHANS_ERRORS_LABEL = "orphans"
for _label in (ERRORS_LABEL, ORPHANS_ERRORS_LABEL):
    metrics.reconcile_errors.labels(_label)  # the series exists (at 0) from start-up

SECRET_REFRESH_S = 30.0
INVALID_SPEC_RETRY_S = 10.0


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclasses.dataclass
class _Secret:
    """The pool's DSN, re-read from its Secret every SECRET_REFRESH_S, at once after a failure, and when the
    pool names another Secret or key."""

    dsn: str | None = None
    read_at: float = -math.inf
    source: tuple[str, str] = ("", "")

    async def get(self, pool: Pool) -> str:
        source = (pool.secret_name, pool.secret_key)
        if self.dsn is None or source != self.source or time.monotonic() - self.read_at > SECRET_REFRESH_S:
            self.dsn = None
            self.source = source
            self.dsn = await asyncio.to_thread(
                kube.read_secret_value, pool.namespace, pool.secret_name, pool.secret_key
            )
            self.read_at = time.monotonic()
        return self.dsn


@dataclasses.dataclass(frozen=True)
class _Measurement:
    depth: PoolDepth | None
    database: cond.Condition


async def _measure(pool: Pool, hub: ProbeHub, secret: _Secret) -> _Measurement:
    key = f"{pool.namespace}/{pool.name}"
    try:
        dsn = await secret.get(pool)
        hub.register(key, dsn, probe_target(pool))
    except kube.SecretProblem as exc:
        await hub.unregister(key)
        return _Measurement(None, cond.database_reachable(f"{exc} (spec.database)", reason=exc.reason))
    except ProbeError as exc:  # a DSN that cannot be parsed
        secret.dsn = None
        return _Measurement(
            None, cond.database_reachable(str(exc), reason=cond.PROBE_ERROR_REASONS[exc.reason])
        )
    reading = hub.latest(key)
    if (
        not isinstance(reading, PoolDepth)
        or time.monotonic() - reading.probed_at > pool.scaling.poll_interval_s / 2
    ):
        await hub.tick(dsn)
        reading = hub.latest(key)
    if isinstance(reading, PoolDepth):
        return _Measurement(reading, cond.database_reachable(None))
    if isinstance(reading, ProbeError):
        secret.dsn = None  # a rotated Secret fixes a wrong DSN: read it again next time
        return _Measurement(
            None, cond.database_reachable(str(reading), reason=cond.PROBE_ERROR_REASONS[reading.reason])
        )
    return _Measurement(None, cond.database_reachable("no reading yet", reason=cond.Reason.PROBE_PENDING))


async def _mark_deletion_costs(namespace: str, pods: Collection[WorkerPod], busy: Collection[str]) -> None:
    """Before a scale-down: idle pods get the lowest deletion cost, busy pods the highest, so the ReplicaSet
    removes idle workers first and a worker in the middle of a task last."""
    patches = []
    for pod in pods:
        if pod.deleting:
            continue
        is_busy = pod.name in busy
        patch = objects.build_pod_deletion_cost_patch(is_busy)
        if pod.deletion_cost != objects.pod_deletion_cost(patch):
            patches.append(asyncio.to_thread(kube.patch_pod, namespace, pod.name, patch))
    await asyncio.gather(*patches)


def _orphans(
    pool: Pool, depth: PoolDepth, pods: Collection[WorkerPod], mem: memory.PoolMemory, now: float
) -> orphans.OrphanView:
    """The pool's worker ids owning RUNNING rows whose pod no longer exists; `now` is time.monotonic()."""
    live = {pod.name for pod in pods}
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


async def _orphan_round(
    body: kopf.Body,
    pool: Pool,
    hub: ProbeHub,
    *,
    depth: PoolDepth,
    pods: Collection[WorkerPod],
    mem: memory.PoolMemory,
) -> tuple[int, int]:
    """Detects orphaned tasks (reported once per new worker id) and recovers those past the grace period;
    returns (orphaned RUNNING tasks in this reading, how many of them were just recovered)."""
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
    metrics.pool_orphaned_tasks.labels(pool.namespace, pool.name).set(max(0, orphaned_tasks - recovered))
    return orphaned_tasks, recovered


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
    confirms their pods are gone; returns how many rows changed. Errors are counted and logged, never raised:
    the rows stay RUNNING and the next round tries again."""
    action = pool.orphans.action
    if action == "Report" or not due:
        return 0
    try:
        pods = {workers.pod_of_worker(worker_id) for worker_id in due}
        exists = await asyncio.gather(*(asyncio.to_thread(kube.pod_exists, pool.namespace, p) for p in pods))
        alive = {pod for pod, found in zip(pods, exists, strict=True) if found}
        # The watch missed these pods (it lags, or stalled): their tasks are not orphans; restart their clock.
        for worker_id in [w for w in due if workers.pod_of_worker(w) in alive]:
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
            if w.worker_id in due and workers.pod_of_worker(w.worker_id) not in alive
        )
        if not rows:
            return 0
        recovery = OrphanRecovery(action, pool.backend, rows, orphans.WORKER_LOST)
        recovered = await hub.recover_orphans(f"{pool.namespace}/{pool.name}", recovery)
    except ProbeError as exc:  # its message never has the password
        metrics.reconcile_errors.labels(ORPHANS_ERRORS_LABEL).inc()
        logger.warning("%s/%s: orphan recovery failed: %s", pool.namespace, pool.name, exc)
        return 0
    except Exception:
        metrics.reconcile_errors.labels(ORPHANS_ERRORS_LABEL).inc()
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


async def tick(
    body: kopf.Body,
    hub: ProbeHub,
    secret: _Secret,
    pods: Collection[WorkerPod],
    deployment: WorkerDeployment | None,
) -> float:
    """One round for one pool; returns the seconds until the next."""
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    mem = memory.of((namespace, name))
    try:
        pool = Pool.from_body(body)
    except InvalidPool as exc:
        generation = int(body["metadata"].get("generation", 0))
        before = mem.last_status.get("conditions", [])
        conditions = cond.merge(before, cond.invalid_spec(str(exc)), generation, _now_iso())
        _report_transitions(body, before, conditions)
        # Observed (and found invalid): kstatus then reads Stalled instead of waiting for the generation.
        await _write_status(body, mem, {"conditions": conditions, "observedGeneration": generation})
        return INVALID_SPEC_RETRY_S

    measured = await _measure(pool, hub, secret)
    depth = measured.depth
    if measured.database.reason in cond.SECRET_REASONS:
        mem.secret_missing_since = mem.secret_missing_since or time.monotonic()
    else:
        mem.secret_missing_since = None
    current = mem.desired if mem.desired is not None else deployment.spec_replicas if deployment else 0
    desired = current
    orphaned_tasks: int | None = None
    recovered = 0
    busy: set[str] = set()
    if depth is not None:
        metrics.record_queues(
            namespace,
            name,
            ready={q.queue: q.ready for q in depth.queues},
            running={q.queue: q.running for q in depth.queues},
            oldest_age_s={q.queue: q.oldest_ready_age_seconds for q in depth.queues},
        )
        orphaned_tasks, recovered = await _orphan_round(body, pool, hub, depth=depth, pods=pods, mem=mem)
        busy = workers.busy_pods((w.worker_id for w in depth.running_by_worker), {p.name for p in pods})

    if pool.scaling.enabled and mem.applied_generation is not None and deployment is not None:
        observation = policy.Observation(
            ready=None if depth is None else depth.ready,
            running=0 if depth is None else depth.running - (orphaned_tasks or 0),
            current_replicas=current,
            now=time.time(),
        )
        decision = policy.decide(scaling_spec(pool), observation, mem.policy_state)
        mem.policy_state = decision.state
        desired = decision.replicas
        if desired != current:
            await _scale(
                body=body, pool=pool, mem=mem, pods=pods, busy=busy, current=current, decision=decision
            )
    elif not pool.scaling.enabled:
        desired = pool.fixed_replicas

    reachable = measured.database.status == cond.Status.TRUE
    progress = cond.Progress(
        database=measured.database,
        desired_replicas=desired,
        ready_replicas=deployment.ready_replicas if deployment else 0,
        generation_applied=_generation_applied(pool, mem) and deployment is not None,
        rolling_out=deployment is not None and deployment.rolling_out,
        secret_missing_for_s=None
        if mem.secret_missing_since is None
        else time.monotonic() - mem.secret_missing_since,
        write_rejected=mem.deployment_error or mem.scale_error,
        pods_rejected=deployment.replica_failure if deployment else None,
        pod_problems=[p.problem for p in pods if p.problem is not None and not p.deleting],
    )
    stalled = cond.stall(progress) is not None
    updates = [
        measured.database,
        cond.scaling_active(pool.scaling.enabled, reachable),
        *cond.progress_conditions(progress),
    ]
    if depth is not None:
        updates.append(
            cond.scaling_limited(
                depth.ready + depth.running,
                pool.scaling.tasks_per_replica,
                pool.scaling.min_replicas,
                pool.scaling.max_replicas,
            )
        )
    before = mem.last_status.get("conditions", [])
    conditions = cond.merge(before, updates, pool.generation, _now_iso())
    _report_transitions(body, before, conditions)
    metrics.record_conditions(namespace, name, conditions)
    metrics.record_replicas(
        namespace,
        name,
        desired=desired,
        current=deployment.replicas if deployment else 0,
        ready=deployment.ready_replicas if deployment else 0,
        minimum=pool.scaling.min_replicas,
        maximum=pool.scaling.max_replicas,
    )
    status = objects.build_pool_status(
        pool,
        replicas=deployment.replicas if deployment else 0,
        ready_replicas=deployment.ready_replicas if deployment else 0,
        desired_replicas=desired,
        conditions=conditions,
        # The generation acted on: written to the Deployment, or found impossible to act on (Stalled).
        observed_generation=pool.generation if stalled else mem.applied_generation,
        ready_tasks=None if depth is None else depth.ready,
        running_tasks=None if depth is None else depth.running,
        oldest_ready_age_s=None if depth is None else depth.oldest_ready_age_seconds,
        orphaned_tasks=None if orphaned_tasks is None else max(0, orphaned_tasks - recovered),
        orphans_recovered=mem.orphans_recovered,
        last_scale_time=mem.last_scale_time,
    )
    await _write_status(body, mem, status)
    return pool.scaling.poll_interval_s


def _generation_applied(pool: Pool, mem: memory.PoolMemory) -> bool:
    """Whether the Deployment carries the pool's spec. Until this operator process has written it once, the
    stored status.observedGeneration stands (so a restart of the operator does not make Ready pools flap)."""
    if mem.applied_generation is not None:
        return mem.applied_generation == pool.generation
    return mem.last_status.get("observedGeneration") == pool.generation


def _report_transitions(body: kopf.Body, before: list[dict[str, Any]], after: list[dict[str, Any]]) -> None:
    """One Event per change of DatabaseReachable, and a Warning when the pool becomes Stalled."""
    for changed in cond.transitions(before, after):
        if changed["type"] == cond.ConditionType.DATABASE_REACHABLE:
            event = kopf.info if changed["status"] == cond.Status.TRUE else kopf.warn
            event(body, reason=changed["reason"], message=changed["message"])
        elif changed["type"] == cond.ConditionType.STALLED and changed["status"] == cond.Status.TRUE:
            kopf.warn(body, reason=changed["reason"], message=changed["message"])


async def _scale(
    *,
    body: kopf.Body,
    pool: Pool,
    mem: memory.PoolMemory,
    pods: Collection[WorkerPod],
    busy: Collection[str],
    current: int,
    decision: policy.Decision,
) -> None:
    if decision.replicas < current:
        await _mark_deletion_costs(pool.namespace, pods, busy)
    mem.desired = decision.replicas  # first: the watch event of this write must not look like a manual edit
    name = objects.deployment_name(pool.name)
    try:
        generation = await asyncio.to_thread(kube.scale_deployment, pool.namespace, name, decision.replicas)
    except Exception as exc:
        rejection = kube.rejection_message(exc)
        if rejection is None:
            raise
        mem.desired = current  # refused, so not written: the next round decides again
        mem.scale_error = cond.Problem(
            cond.Reason.DEPLOYMENT_REJECTED,
            f"the API server refused to scale Deployment {name!r}: {rejection}",
        )
        return
    mem.scale_error = None
    mem.deployment_generation = max(mem.deployment_generation, generation)
    mem.last_scale_time = _now_iso()
    direction = "up" if decision.replicas > current else "down"
    metrics.scale_events.labels(pool.namespace, pool.name, direction).inc()
    reason = cond.EventReason.SCALED_UP if direction == "up" else cond.EventReason.SCALED_DOWN
    kopf.info(body, reason=reason, message=decision.message)
    logger.info("%s/%s: %s", pool.namespace, pool.name, decision.message)


async def _write_status(body: kopf.Body, mem: memory.PoolMemory, status: dict[str, Any]) -> None:
    """Patches the pool's status when it changed (merge patch: fields left out keep their value)."""
    merged = {**mem.last_status, **status}
    if merged == mem.last_status:
        return
    await asyncio.to_thread(
        kube.patch_pool_status, body["metadata"]["namespace"], body["metadata"]["name"], status
    )
    mem.last_status = merged


async def run(
    stopped: kopf.DaemonStopped,
    body: kopf.Body,
    memo: kopf.Memo,
    **kwargs: Any,
) -> None:
    """The daemon of one pool: ticks until the pool is deleted or the operator stops."""
    # kopf passes every index by its handler's name (handlers/__init__.py).
    worker_pods: kopf.Index[memory.PoolKey, WorkerPod] = kwargs["worker_pods"]
    worker_deployments: kopf.Index[memory.PoolKey, WorkerDeployment] = kwargs["worker_deployments"]
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    key = (namespace, name)
    hub: ProbeHub = memo["hub"]
    mem = memory.of(key)
    mem.last_status = dict(body.get("status") or {})  # Events only for transitions since the last write
    secret = _Secret()
    try:
        while not stopped:
            interval = INVALID_SPEC_RETRY_S
            try:
                deployment = next(iter(worker_deployments.get(key, ())), None)
                interval = await tick(body, hub, secret, list(worker_pods.get(key, ())), deployment)
            except Exception:
                metrics.reconcile_errors.labels(ERRORS_LABEL).inc()
                logger.exception("%s/%s: scaling round failed", namespace, name)
            await stopped.wait(interval)
    finally:
        await hub.unregister(f"{namespace}/{name}")
        metrics.forget_pool(namespace, name)
        memory.forget(key)
