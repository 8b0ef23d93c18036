"""The operator's Prometheus metrics (docs/contracts.md), served on :8080/metrics.

Queue gauges come from the operator's probe, so dashboards show the backlog even when a pool has no workers.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Mapping
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    gc_collector,
    platform_collector,
    process_collector,
    start_http_server,
)

from taskpool_operator import __version__
from taskpool_operator import conditions as cond
from taskpool_operator.orphans import RECOVERY_ACTIONS
from taskpool_operator.probe.depth import ERROR_REASONS, ProbeError

REGISTRY = CollectorRegistry(auto_describe=True)
process_collector.ProcessCollector(registry=REGISTRY)
platform_collector.PlatformCollector(registry=REGISTRY)
gc_collector.GCCollector(registry=REGISTRY)

_POOL = ("namespace", "pool")
_QUEUE = ("namespace", "pool", "queue")

queue_ready_tasks = Gauge(
    "taskpool_queue_ready_tasks", "Tasks ready to run, capped by the probe.", _QUEUE, registry=REGISTRY
)
queue_running_tasks = Gauge("taskpool_queue_running_tasks", "Tasks being run.", _QUEUE, registry=REGISTRY)
queue_oldest_ready_age = Gauge(
    "taskpool_queue_oldest_ready_age_seconds",
    "Age of the oldest ready task; 0 when the queue is empty.",
    _QUEUE,
    registry=REGISTRY,
)
pool_orphaned_tasks = Gauge(
    "taskpool_pool_orphaned_tasks",
    "RUNNING tasks whose worker pod no longer exists.",
    _POOL,
    registry=REGISTRY,
)
orphaned_tasks_recovered = Counter(
    "taskpool_orphaned_tasks_recovered",
    "Orphaned tasks the operator marked FAILED (action fail) or made READY again (action requeue).",
    (*_POOL, "action"),
    registry=REGISTRY,
)
pool_desired_replicas = Gauge(
    "taskpool_pool_desired_replicas", "Worker pods the operator wants.", _POOL, registry=REGISTRY
)
pool_current_replicas = Gauge(
    "taskpool_pool_current_replicas",
    "Worker pods that exist (Deployment status.replicas).",
    _POOL,
    registry=REGISTRY,
)
pool_ready_replicas = Gauge(
    "taskpool_pool_ready_replicas", "Worker pods that are ready.", _POOL, registry=REGISTRY
)
pool_min_replicas = Gauge("taskpool_pool_min_replicas", "The pool's minReplicas.", _POOL, registry=REGISTRY)
pool_max_replicas = Gauge("taskpool_pool_max_replicas", "The pool's maxReplicas.", _POOL, registry=REGISTRY)
pool_scheduler_ready_replicas = Gauge(
    "taskpool_pool_scheduler_ready_replicas",
    "Ready pods of the pool's scheduler Deployment; only pools with spec.scheduler.enabled have the series.",
    _POOL,
    registry=REGISTRY,
)
pool_database_reachable = Gauge(
    "taskpool_pool_database_reachable", "1 when the pool's task table can be read.", _POOL, registry=REGISTRY
)
pool_condition = Gauge(
    "taskpool_pool_condition",
    "1 for the current status of each of the pool's conditions.",
    (*_POOL, "condition", "status"),
    registry=REGISTRY,
)
scale_events = Counter(
    "taskpool_scale_events", "Changes of a pool's replicas.", (*_POOL, "direction"), registry=REGISTRY
)
probe_duration = Histogram(
    "taskpool_probe_duration_seconds",
    "Duration of one probe of a database's task table.",
    registry=REGISTRY,
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
probe_errors = Counter("taskpool_probe_errors", "Failed probes by reason.", ("reason",), registry=REGISTRY)
# Counters with known labels start at 0, so rate() and the dashboards see them before the first failure.
for _reason in ERROR_REASONS:
    probe_errors.labels(_reason)
reconcile_errors = Counter(
    "taskpool_reconcile_errors", "Handler failures by handler.", ("handler",), registry=REGISTRY
)
operator_build_info = Gauge(
    "taskpool_operator_build_info",
    "Always 1; the version label says which build runs.",
    ("version",),
    registry=REGISTRY,
)
operator_build_info.labels(version=__version__).set(1)

_STATUSES = tuple(cond.Status)
SCALE_DIRECTIONS = ("up", "down")
_queues_seen: dict[tuple[str, str], set[str]] = {}


def serve(port: int, address: str = "0.0.0.0") -> None:  # noqa: S104 - scraped from other pods
    start_http_server(port, addr=address, registry=REGISTRY)


def init_pool_counters(namespace: str, pool: str) -> None:
    """Creates the pool's scale counters at 0 (if they are not there yet), so that increase() and rate() see
    its first scale."""
    for direction in SCALE_DIRECTIONS:
        scale_events.labels(namespace, pool, direction)


def record_queues(
    namespace: str,
    pool: str,
    ready: Mapping[str, int],
    running: Mapping[str, int],
    oldest_age_s: Mapping[str, float],
) -> None:
    """Sets the per-queue gauges of one pool; queues that went away lose their series."""
    queues = set(ready) | set(running) | set(oldest_age_s)
    for queue in _queues_seen.get((namespace, pool), set()) - queues:
        _remove_queue(namespace, pool, queue)
    _queues_seen[(namespace, pool)] = queues
    for queue in queues:
        queue_ready_tasks.labels(namespace, pool, queue).set(ready.get(queue, 0))
        queue_running_tasks.labels(namespace, pool, queue).set(running.get(queue, 0))
        queue_oldest_ready_age.labels(namespace, pool, queue).set(oldest_age_s.get(queue, 0.0))


def record_replicas(
    namespace: str, pool: str, *, desired: int, current: int, ready: int, minimum: int, maximum: int
) -> None:
    pool_desired_replicas.labels(namespace, pool).set(desired)
    pool_current_replicas.labels(namespace, pool).set(current)
    pool_ready_replicas.labels(namespace, pool).set(ready)
    pool_min_replicas.labels(namespace, pool).set(minimum)
    pool_max_replicas.labels(namespace, pool).set(maximum)


def record_scheduler(namespace: str, pool: str, status: Mapping[str, Any] | None) -> None:
    """From status.scheduler: the scheduler's ready pods, or no series when the pool runs no scheduler."""
    if status is None:
        _remove(pool_scheduler_ready_replicas, namespace, pool)
    else:
        pool_scheduler_ready_replicas.labels(namespace, pool).set(status["readyReplicas"])


def record_conditions(namespace: str, pool: str, conditions: list[dict[str, object]]) -> None:
    for condition in conditions:
        for status in _STATUSES:
            value = 1 if condition.get("status") == status else 0
            pool_condition.labels(namespace, pool, str(condition["type"]), status).set(value)
        if condition["type"] == cond.ConditionType.DATABASE_REACHABLE:
            pool_database_reachable.labels(namespace, pool).set(
                1 if condition["status"] == cond.Status.TRUE else 0
            )


def forget_pool(namespace: str, pool: str) -> None:
    """Drops every series of a deleted pool, so gauges of gone pools do not linger."""
    for queue in _queues_seen.pop((namespace, pool), set()):
        _remove_queue(namespace, pool, queue)
    for gauge in (
        pool_orphaned_tasks,
        pool_desired_replicas,
        pool_current_replicas,
        pool_ready_replicas,
        pool_min_replicas,
        pool_max_replicas,
        pool_database_reachable,
        pool_scheduler_ready_replicas,
    ):
        _remove(gauge, namespace, pool)
    for condition_type in cond.TYPES:
        for status in _STATUSES:
            _remove(pool_condition, namespace, pool, condition_type, status)
    for direction in SCALE_DIRECTIONS:
        _remove(scale_events, namespace, pool, direction)
    for action in RECOVERY_ACTIONS:
        _remove(orphaned_tasks_recovered, namespace, pool, action.lower())


def _remove_queue(namespace: str, pool: str, queue: str) -> None:
    for gauge in (queue_ready_tasks, queue_running_tasks, queue_oldest_ready_age):
        _remove(gauge, namespace, pool, queue)


def _remove(metric: Gauge | Counter, *labels: str) -> None:
    with contextlib.suppress(KeyError):  # the series was never set
        metric.remove(*labels)


def observe_probe(duration_s: float, error: ProbeError | None) -> None:
    """The probe hub's observer: every query's duration, and failures by reason."""
    probe_duration.observe(duration_s)
    if error is not None:
        probe_errors.labels(error.reason).inc()


def counting_errors[**P, R](handler: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Wraps a blocking handler: each exception it raises counts in taskpool_reconcile_errors_total."""

    reconcile_errors.labels(handler)  # the series exists (at 0) from start-up

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def counted(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return fn(*args, **kwargs)
            except Exception:
                reconcile_errors.labels(handler).inc()
                raise

        return counted

    return decorate
