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
from taskpool_operator import kube, metrics, objects, policy, workers
from taskpool_operator.handlers import memory
from taskpool_operator.handlers.indexes import WorkerDeployment, WorkerPod
from taskpool_operator.pool import InvalidPool, Pool, probe_target, scaling_spec
from taskpool_operator.probe import PoolDepth, ProbeError, ProbeHub

logger = logging.getLogger(__name__)
ERRORS_LABEL = "scaling"
metrics.reconcile_errors.labels(ERRORS_LABEL)  # the series exists (at 0) from start-up

SECRET_REFRESH_S = 30.0
INVALID_SPEC_RETRY_S = 10.0
PROBE_ERROR_REASONS = {
    "connect": "ConnectFailed",
    "timeout": "ProbeTimeout",
    "missing_table": "TaskTableMissing",
    "missing_index": "ProbeIndexMissing",
    "query": "QueryFailed",
}


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
        return _Measurement(None, cond.database_reachable(str(exc), reason=PROBE_ERROR_REASONS[exc.reason]))
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
            None, cond.database_reachable(str(reading), reason=PROBE_ERROR_REASONS[reading.reason])
        )
    return _Measurement(None, cond.database_reachable("no reading yet", reason="ProbePending"))


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
    pool: Pool, depth: PoolDepth, pods: Collection[WorkerPod], mem: memory.PoolMemory
) -> tuple[int, frozenset[str]]:
    """RUNNING tasks claimed by this pool's pods that no longer exist, seen in two readings in a row (one
    reading may predate the pod's last task finishing)."""
    live = {pod.name for pod in pods}
    suspects = workers.orphaned_worker_ids(pool.name, (w.worker_id for w in depth.running_by_worker), live)
    confirmed = frozenset(suspects & mem.orphan_suspects)
    mem.orphan_suspects = frozenset(suspects)
    tasks = sum(w.running for w in depth.running_by_worker if w.worker_id in confirmed)
    return tasks, confirmed


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
        invalid = cond.Condition(cond.READY, cond.FALSE, "InvalidSpec", str(exc))
        await _write_status(
            body,
            mem,
            {
                "conditions": cond.merge(
                    mem.last_status.get("conditions", []),
                    [invalid],
                    int(body["metadata"].get("generation", 0)),
                    _now_iso(),
                )
            },
        )
        return INVALID_SPEC_RETRY_S

    measured = await _measure(pool, hub, secret)
    depth = measured.depth
    current = mem.desired if mem.desired is not None else deployment.spec_replicas if deployment else 0
    desired = current
    orphaned_tasks: int | None = None
    busy: set[str] = set()
    if depth is not None:
        metrics.record_queues(
            namespace,
            name,
            ready={q.queue: q.ready for q in depth.queues},
            running={q.queue: q.running for q in depth.queues},
            oldest_age_s={q.queue: q.oldest_ready_age_seconds for q in depth.queues},
        )
        orphaned_tasks, orphan_ids = _orphans(pool, depth, pods, mem)
        metrics.pool_orphaned_tasks.labels(namespace, name).set(orphaned_tasks)
        if orphan_ids - mem.orphans:
            kopf.warn(
                body,
                reason="OrphanedTasks",
                message=f"{orphaned_tasks} RUNNING task(s) were claimed by worker pods that no longer exist "
                f"(worker ids: {', '.join(sorted(orphan_ids)[:5])}{', ...' if len(orphan_ids) > 5 else ''}); "
                "they will not finish by themselves",
            )
        mem.orphans = orphan_ids
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

    reachable = measured.database.status == cond.TRUE
    updates = [
        measured.database,
        cond.scaling_active(pool.scaling.enabled, reachable),
        cond.ready(
            measured.database,
            desired,
            deployment.ready_replicas if deployment else 0,
            deployment_error=mem.deployment_error,
        ),
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
    conditions = cond.merge(mem.last_status.get("conditions", []), updates, pool.generation, _now_iso())
    for changed in cond.transitions(mem.last_status.get("conditions", []), conditions):
        if changed["type"] == cond.DATABASE_REACHABLE:
            event = kopf.info if changed["status"] == cond.TRUE else kopf.warn
            event(body, reason=changed["reason"], message=changed["message"])
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
        observed_generation=mem.applied_generation,
        ready_tasks=None if depth is None else depth.ready,
        running_tasks=None if depth is None else depth.running,
        oldest_ready_age_s=None if depth is None else depth.oldest_ready_age_seconds,
        orphaned_tasks=orphaned_tasks,
        last_scale_time=mem.last_scale_time,
    )
    await _write_status(body, mem, status)
    return pool.scaling.poll_interval_s


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
    generation = await asyncio.to_thread(
        kube.scale_deployment, pool.namespace, objects.deployment_name(pool.name), decision.replicas
    )
    mem.deployment_generation = max(mem.deployment_generation, generation)
    mem.last_scale_time = _now_iso()
    direction = "up" if decision.replicas > current else "down"
    metrics.scale_events.labels(pool.namespace, pool.name, direction).inc()
    kopf.info(body, reason="ScaledUp" if direction == "up" else "ScaledDown", message=decision.message)
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
