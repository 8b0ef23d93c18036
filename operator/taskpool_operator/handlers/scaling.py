"""The per-pool loop: measure the queue, decide, act (scale), and report (status, Events, metrics).

Every poll interval the loop asks the shared probe for the pool's queue depth (`ProbeHub.fresh`: the probe
ticks when the latest reading is older than half an interval, so a decision never waits a whole extra
interval for data), handles orphaned tasks (`orphan_recovery`), applies the policy with the busy pods as a
floor (or, with scaling disabled, takes spec.replicas), patches the Deployment's replicas (after the deletion
costs that make the ReplicaSet remove idle pods first) and writes the pool's status. Database trouble holds
the policy's replicas where they are (a manual count is still applied).
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
from taskpool_operator.handlers import memory, orphan_recovery
from taskpool_operator.handlers.indexes import WorkerDeployment, WorkerPod
from taskpool_operator.pool import InvalidPool, Pool, PoolKey, probe_target, scaling_spec
from taskpool_operator.probe.depth import PoolDepth, ProbeError
from taskpool_operator.probe.hub import ProbeHub

logger = logging.getLogger(__name__)
ERRORS_LABEL = "scaling"
metrics.reconcile_errors.labels(ERRORS_LABEL)  # the series exists (at 0) from start-up

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
    orphans: orphan_recovery.OrphanRound | None = None
    busy: frozenset[str] = frozenset()
    """Live worker pods (not being deleted) whose processes run a task."""

    @property
    def running(self) -> int:
        """RUNNING tasks on live pods: orphaned rows need no slot."""
        if self.depth is None:
            return 0
        return self.depth.running - (self.orphans.orphaned if self.orphans else 0)


async def _read_depth(pool: Pool, hub: ProbeHub, secret: _Secret) -> tuple[PoolDepth | None, cond.Condition]:
    """The pool's queue depth, at most half a poll interval old, and the DatabaseReachable condition."""
    try:
        dsn = await secret.get(pool)
        hub.register(pool.key, dsn, probe_target(pool), notify=pool.scaling.notify)
    except kube.SecretProblem as exc:
        await hub.unregister(pool.key)
        return None, cond.database_reachable(f"{exc} (spec.database)", reason=exc.reason)
    except ProbeError as exc:  # a DSN that cannot be parsed
        secret.dsn = None
        return None, cond.database_reachable(str(exc), reason=cond.PROBE_ERROR_REASONS[exc.reason])
    reading = await hub.fresh(pool.key, pool.scaling.poll_interval_s / 2)
    if isinstance(reading, PoolDepth):
        return reading, cond.database_reachable(None)
    if isinstance(reading, ProbeError):
        secret.dsn = None  # a rotated Secret fixes a wrong DSN: read it again next time
        return None, cond.database_reachable(str(reading), reason=cond.PROBE_ERROR_REASONS[reading.reason])
    return None, cond.database_reachable("no reading yet", reason=cond.Reason.PROBE_PENDING)


async def _measure(
    body: kopf.Body,
    pool: Pool,
    hub: ProbeHub,
    *,
    secret: _Secret,
    pods: Collection[WorkerPod],
    mem: memory.PoolMemory,
) -> _Measurement:
    """The queue, its orphaned tasks (recovered when due) and the busy pods."""
    depth, database = await _read_depth(pool, hub, secret)
    if depth is None:
        return _Measurement(None, database)
    metrics.record_queues(
        pool.namespace,
        pool.name,
        ready={q.queue: q.ready for q in depth.queues},
        running={q.queue: q.running for q in depth.queues},
        oldest_age_s={q.queue: q.oldest_ready_age_seconds for q in depth.queues},
    )
    orphans = await orphan_recovery.handle(body, pool, hub, depth=depth, pods=pods, mem=mem)
    live = {pod.name for pod in pods if not pod.deleting}
    busy = workers.busy_pods((w.worker_id for w in depth.running_by_worker), live)
    return _Measurement(depth, database, orphans, frozenset(busy))


@dataclasses.dataclass(frozen=True)
class _Target:
    replicas: int
    message: str
    """Why, for the ScaledUp/ScaledDown Event and the log."""


def _replicas_field(pool: Pool) -> str:
    """Where a pool with scaling disabled takes its replicas from (Pool.fixed_replicas)."""
    return "spec.replicas" if pool.manual_replicas is not None else "minReplicas"


def _target(
    pool: Pool,
    measured: _Measurement,
    mem: memory.PoolMemory,
    current: int,
    deployment: WorkerDeployment | None,
) -> _Target | None:
    """The replicas the Deployment should run: the policy's decision, or the user's count when scaling is
    disabled (busy pods are no floor then). None while the Deployment is not yet written for the pool's
    spec."""
    if mem.applied_generation is None or deployment is None:
        return None
    if not pool.scaling.enabled:
        replicas = pool.fixed_replicas
        return _Target(replicas, f"{_replicas_field(pool)} is {replicas} (scaling disabled)")
    observation = policy.Observation(
        ready=None if measured.depth is None else measured.depth.ready,
        running=measured.running,
        current_replicas=current,
        now=time.time(),
        busy_pods=len(measured.busy),
    )
    decision = policy.decide(scaling_spec(pool), observation, mem.policy_state)
    mem.policy_state = decision.state
    return _Target(decision.replicas, decision.message)


async def tick(
    body: kopf.Body,
    hub: ProbeHub,
    secret: _Secret,
    pods: Collection[WorkerPod],
    deployment: WorkerDeployment | None,
) -> float:
    """One round for one pool: measure -> decide -> act -> report; returns the seconds until the next."""
    mem = memory.of((body["metadata"]["namespace"], body["metadata"]["name"]))
    try:
        pool = Pool.from_body(body)
    except InvalidPool as exc:
        await _report_invalid(body, mem, exc)
        return INVALID_SPEC_RETRY_S

    metrics.init_pool_counters(pool.namespace, pool.name)
    measured = await _measure(body, pool, hub, secret=secret, pods=pods, mem=mem)
    if measured.depth is not None:  # without a reading, the last one's busy pods still get the high cost
        mem.busy_pods = measured.busy
    if measured.database.reason in cond.SECRET_REASONS:
        mem.secret_missing_since = mem.secret_missing_since or time.monotonic()
    else:
        mem.secret_missing_since = None
    current = mem.desired if mem.desired is not None else deployment.spec_replicas if deployment else 0
    target = _target(pool, measured, mem, current, deployment)
    if target is not None and target.replicas != current:
        await _scale(body, pool, mem, pods=pods, current=current, target=target)
    desired = target.replicas if target else current if pool.scaling.enabled else pool.fixed_replicas
    await _report(body, pool, mem, measured=measured, desired=desired, deployment=deployment, pods=pods)
    return pool.scaling.poll_interval_s


async def _mark_deletion_costs(namespace: str, pods: Collection[WorkerPod], busy: Collection[str]) -> None:
    """Before a scale-down: idle pods get the lowest deletion cost, busy pods the highest, so the ReplicaSet
    removes idle workers first and a worker in the middle of a task last."""
    patches = []
    for pod in pods:
        if pod.deleting:
            continue
        patch = objects.build_pod_deletion_cost_patch(pod.name in busy)
        if pod.deletion_cost != objects.pod_deletion_cost(patch):
            patches.append(asyncio.to_thread(kube.patch_pod, namespace, pod.name, patch))
    await asyncio.gather(*patches)


def _write_replicas(mem: memory.PoolMemory, namespace: str, name: str, replicas: int) -> None:
    """Sets the Deployment's replicas and records them with the generation the write left, under
    PoolMemory.writing (blocking: run in a thread)."""
    with mem.writing:
        generation = kube.scale_deployment(namespace, name, replicas)
        mem.desired = replicas
        mem.deployment_generation = max(mem.deployment_generation, generation)


async def _scale(
    body: kopf.Body,
    pool: Pool,
    mem: memory.PoolMemory,
    *,
    pods: Collection[WorkerPod],
    current: int,
    target: _Target,
) -> None:
    """Scales the Deployment to the target. A scale-down sets the deletion costs first (idle pods go before
    busy ones) and warns when busy pods must go, whether the policy or the user's spec.replicas asks it."""
    if target.replicas < current:
        busy = mem.busy_pods & {pod.name for pod in pods if not pod.deleting}
        # Set before the scale-down: the ReplicaSet reads the costs when it picks the pods to delete.
        await _mark_deletion_costs(pool.namespace, pods, busy)
        if target.replicas < len(busy):
            kopf.warn(
                body,
                reason=cond.EventReason.BUSY_PODS_DRAINING,
                message=_draining(pool, len(busy), target.replicas),
            )
    name = objects.deployment_name(pool.name)
    try:
        await asyncio.to_thread(_write_replicas, mem, pool.namespace, name, target.replicas)
    except Exception as exc:
        rejection = kube.rejection_message(exc)
        if rejection is None:
            raise
        mem.scale_error = cond.Problem(
            cond.Reason.DEPLOYMENT_REJECTED,
            f"the API server refused to scale Deployment {name!r}: {rejection}",
        )
        return
    mem.scale_error = None
    mem.last_scale_time = _now_iso()
    direction = "up" if target.replicas > current else "down"
    metrics.scale_events.labels(pool.namespace, pool.name, direction).inc()
    reason = cond.EventReason.SCALED_UP if direction == "up" else cond.EventReason.SCALED_DOWN
    kopf.info(body, reason=reason, message=target.message)
    logger.info("%s/%s: %s", pool.namespace, pool.name, target.message)


def _draining(pool: Pool, busy: int, replicas: int) -> str:
    """Why busy pods go: a maxReplicas below the busy pods (the policy's rule 7), or with scaling disabled
    the user's count below them."""
    if pool.scaling.enabled:
        limit = f"maxReplicas {pool.scaling.max_replicas}"
    else:
        limit = f"{_replicas_field(pool)} {pool.fixed_replicas}"
    return (
        f"{limit} is below the {busy} pods running tasks: scaling to "
        f"{replicas}, so {busy - replicas} busy pod(s) drain (their running tasks get worker.shutdownTimeout "
        f"{pool.worker['shutdownTimeout']} to finish, then are stored FAILED)"
    )


async def _report_invalid(body: kopf.Body, mem: memory.PoolMemory, exc: InvalidPool) -> None:
    generation = int(body["metadata"].get("generation", 0))
    before = mem.last_status.get("conditions", [])
    conditions = cond.merge(before, cond.invalid_spec(str(exc)), generation, _now_iso())
    _report_transitions(body, before, conditions)
    # Observed (and found invalid): kstatus then reads Stalled instead of waiting for the generation.
    await _write_status(body, mem, {"conditions": conditions, "observedGeneration": generation})


async def _report(
    body: kopf.Body,
    pool: Pool,
    mem: memory.PoolMemory,
    *,
    measured: _Measurement,
    desired: int,
    deployment: WorkerDeployment | None,
    pods: Collection[WorkerPod],
) -> None:
    """Conditions (with an Event per DatabaseReachable transition and when the pool stalls), metrics and the
    pool's status."""
    depth = measured.depth
    reachable = measured.database.status == cond.Status.TRUE
    ready_replicas = deployment.ready_replicas if deployment else 0
    progress = cond.Progress(
        database=measured.database,
        desired_replicas=desired,
        ready_replicas=ready_replicas,
        generation_applied=_generation_applied(pool, mem) and deployment is not None,
        rolling_out=deployment is not None and deployment.rolling_out,
        secret_missing_for_s=None
        if mem.secret_missing_since is None
        else time.monotonic() - mem.secret_missing_since,
        write_rejected=next(iter(mem.write_refusals.values()), None) or mem.scale_error,
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
    previous = mem.last_status.get("conditions", [])
    conditions = cond.merge(previous, updates, pool.generation, _now_iso())
    _report_transitions(body, previous, conditions)
    metrics.record_conditions(pool.namespace, pool.name, conditions)
    metrics.record_replicas(
        pool.namespace,
        pool.name,
        desired=desired,
        current=deployment.replicas if deployment else 0,
        ready=ready_replicas,
        minimum=pool.scaling.min_replicas,
        maximum=pool.scaling.max_replicas,
    )
    status = objects.build_pool_status(
        pool,
        replicas=deployment.replicas if deployment else 0,
        ready_replicas=ready_replicas,
        desired_replicas=desired,
        conditions=conditions,
        # The generation acted on: written to the Deployment, or found impossible to act on (Stalled).
        observed_generation=pool.generation if stalled else mem.applied_generation,
        ready_tasks=None if depth is None else depth.ready,
        running_tasks=None if depth is None else depth.running,
        oldest_ready_age_s=None if depth is None else depth.oldest_ready_age_seconds,
        orphaned_tasks=None if measured.orphans is None else measured.orphans.left,
        orphans_recovered=mem.orphans_recovered,
        last_scale_time=mem.last_scale_time,
    )
    await _write_status(body, mem, status)


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
    worker_pods: kopf.Index[PoolKey, WorkerPod] = kwargs["worker_pods"]
    worker_deployments: kopf.Index[PoolKey, WorkerDeployment] = kwargs["worker_deployments"]
    key: PoolKey = (body["metadata"]["namespace"], body["metadata"]["name"])
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
                logger.exception("%s/%s: scaling round failed", *key)
            await _pause(stopped, hub.woken(key), interval)
        if stopped.reason is not None and kopf.DaemonStoppingReason.RESOURCE_DELETED in stopped.reason:
            _announce_drain(body, mem, list(worker_pods.get(key, ())))
    finally:
        metrics.forget_pool(*key)
        memory.forget(key)
        # Shielded: a daemon cancelled here still closes a database connection no pool uses any more.
        await asyncio.shield(hub.unregister(key))


async def _pause(stopped: kopf.DaemonStopped, woken: asyncio.Event | None, seconds: float) -> None:
    """Waits out the poll interval; a pool woken by NOTIFY (its reading already fresh) goes on at once."""
    if woken is None:
        await stopped.wait(seconds)
        return
    waits = [asyncio.ensure_future(stopped.wait(seconds)), asyncio.ensure_future(woken.wait())]
    _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for wait in pending:
        wait.cancel()
    woken.clear()


def _announce_drain(body: kopf.Body, mem: memory.PoolMemory, pods: Collection[WorkerPod]) -> None:
    """A deleted pool takes its Deployment and every pod with it, busy or not: say so once."""
    busy = mem.busy_pods & {pod.name for pod in pods if not pod.deleting}
    if busy:
        kopf.warn(
            body,
            reason=cond.EventReason.BUSY_PODS_DRAINING,
            message=(
                f"the pool was deleted while {len(busy)} worker pod(s) ran tasks: they drain (their running "
                "tasks get worker.shutdownTimeout to finish, then are stored FAILED)"
            ),
        )
