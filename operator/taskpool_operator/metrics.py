"""The operator's Prometheus metrics (docs/contracts.md), served on :8080/metrics.

Queue gauges come from the operator's probe, so dashboards show the backlog even when a pool has no workers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Callable, Iterable, Mapping
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
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

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


@dataclasses.dataclass
class _PoolSeries:
    """One pool's gauge values: plain numbers, turned into samples only when /metrics is scraped."""

    queues: dict[str, tuple[float, float, float]] = dataclasses.field(default_factory=dict)
    """queue -> (ready, running, oldest ready age)"""
    replicas: dict[str, float] = dataclasses.field(default_factory=dict)
    """gauge name -> value, for the pool's replica gauges and taskpool_pool_orphaned_tasks"""
    conditions: dict[str, str] = dataclasses.field(default_factory=dict)
    """condition type -> its status"""
    database_reachable: float | None = None


# The per-pool gauges: name -> help. A prometheus_client Gauge child per label set (an object, a lock)
# costs ~750 bytes; with ~40 series a pool that was 31 MB of the operator's memory at 1,000 pools.
_QUEUE_GAUGES = {
    "taskpool_queue_ready_tasks": "Tasks ready to run, capped by the probe.",
    "taskpool_queue_running_tasks": "Tasks being run.",
    "taskpool_queue_oldest_ready_age_seconds": "Age of the oldest ready task; 0 when the queue is empty.",
}
_POOL_GAUGES = {
    "taskpool_pool_orphaned_tasks": "RUNNING tasks whose worker pod no longer exists.",
    "taskpool_pool_desired_replicas": "Worker pods the operator wants.",
    "taskpool_pool_current_replicas": "Worker pods that exist (Deployment status.replicas).",
    "taskpool_pool_ready_replicas": "Worker pods that are ready.",
    "taskpool_pool_min_replicas": "The pool's minReplicas.",
    "taskpool_pool_max_replicas": "The pool's maxReplicas.",
    "taskpool_pool_scheduler_ready_replicas": (
        "Ready pods of the pool's scheduler Deployment; "
        "only pools with spec.scheduler.enabled have the series."
    ),
}
_SCHEDULER_READY = "taskpool_pool_scheduler_ready_replicas"
_DATABASE_REACHABLE = "taskpool_pool_database_reachable"
_CONDITION = "taskpool_pool_condition"
_STATUSES = tuple(cond.Status)
SCALE_DIRECTIONS = ("up", "down")


class _PoolGauges(Collector):
    """Every per-pool gauge of the operator (docs/contracts.md), exposed from `_PoolSeries` records."""

    def __init__(self) -> None:
        self._pools: dict[tuple[str, str], _PoolSeries] = {}

    def pool(self, namespace: str, pool: str) -> _PoolSeries:
        return self._pools.setdefault((namespace, pool), _PoolSeries())

    def forget(self, namespace: str, pool: str) -> None:
        self._pools.pop((namespace, pool), None)

    def describe(self) -> Iterable[Metric]:
        return self._families([])

    def collect(self) -> Iterable[Metric]:
        # The scrape runs in the metrics server's thread while the event loop writes: it reads a copy. Writers
        # only replace a record's dicts, never change them in place, and list()/dict() copy in one step.
        pools = [(key, _PoolSeries(**vars(series))) for key, series in list(self._pools.items())]
        return self._families(pools)

    @staticmethod
    def _families(pools: list[tuple[tuple[str, str], _PoolSeries]]) -> list[Metric]:
        queue_gauges = [GaugeMetricFamily(n, h, labels=_QUEUE) for n, h in _QUEUE_GAUGES.items()]
        pool_gauges = {n: GaugeMetricFamily(n, h, labels=_POOL) for n, h in _POOL_GAUGES.items()}
        reachable = GaugeMetricFamily(
            _DATABASE_REACHABLE, "1 when the pool's task table can be read.", labels=_POOL
        )
        condition = GaugeMetricFamily(
            _CONDITION,
            "1 for the current status of each of the pool's conditions.",
            labels=(*_POOL, "condition", "status"),
        )
        for key, series in pools:
            for queue, values in series.queues.items():
                for family, value in zip(queue_gauges, values, strict=True):
                    family.add_metric([*key, queue], value)
            for name, value in series.replicas.items():
                pool_gauges[name].add_metric(list(key), value)
            if series.database_reachable is not None:
                reachable.add_metric(list(key), series.database_reachable)
            for condition_type, current in series.conditions.items():
                for status in _STATUSES:
                    condition.add_metric([*key, condition_type, status], 1 if current == status else 0)
        return [*queue_gauges, *pool_gauges.values(), reachable, condition]


pool_gauges = _PoolGauges()
REGISTRY.register(pool_gauges)
orphaned_tasks_recovered = Counter(
    "taskpool_orphaned_tasks_recovered",
    "Orphaned tasks the operator marked FAILED (action fail) or made READY again (action requeue).",
    (*_POOL, "action"),
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
    pool_gauges.pool(namespace, pool).queues = {
        q: (float(ready.get(q, 0)), float(running.get(q, 0)), oldest_age_s.get(q, 0.0)) for q in queues
    }


def record_replicas(
    namespace: str, pool: str, *, desired: int, current: int, ready: int, minimum: int, maximum: int
) -> None:
    series = pool_gauges.pool(namespace, pool)
    series.replicas = {
        **series.replicas,
        "taskpool_pool_desired_replicas": desired,
        "taskpool_pool_current_replicas": current,
        "taskpool_pool_ready_replicas": ready,
        "taskpool_pool_min_replicas": minimum,
        "taskpool_pool_max_replicas": maximum,
    }


def record_orphaned(namespace: str, pool: str, orphaned: int) -> None:
    series = pool_gauges.pool(namespace, pool)
    series.replicas = {**series.replicas, "taskpool_pool_orphaned_tasks": orphaned}


def record_scheduler(namespace: str, pool: str, status: Mapping[str, Any] | None) -> None:
    """From status.scheduler: the scheduler's ready pods, or no series when the pool runs no scheduler."""
    series = pool_gauges.pool(namespace, pool)
    replicas = {k: v for k, v in series.replicas.items() if k != _SCHEDULER_READY}
    if status is not None:
        replicas[_SCHEDULER_READY] = status["readyReplicas"]
    series.replicas = replicas


def record_conditions(namespace: str, pool: str, conditions: list[dict[str, object]]) -> None:
    series = pool_gauges.pool(namespace, pool)
    series.conditions = {**series.conditions, **{str(c["type"]): str(c.get("status")) for c in conditions}}
    for condition in conditions:
        if condition["type"] == cond.ConditionType.DATABASE_REACHABLE:
            series.database_reachable = 1 if condition["status"] == cond.Status.TRUE else 0


def forget_pool(namespace: str, pool: str) -> None:
    """Drops every series of a deleted pool, so gauges of gone pools do not linger."""
    pool_gauges.forget(namespace, pool)
    for direction in SCALE_DIRECTIONS:
        _remove(scale_events, namespace, pool, direction)
    for action in RECOVERY_ACTIONS:
        _remove(orphaned_tasks_recovered, namespace, pool, action.lower())


def _remove(metric: Counter, *labels: str) -> None:
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
