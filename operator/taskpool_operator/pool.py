"""A typed, defaulted view of one TaskWorkerPool, read from its body."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from taskpool_operator import crd
from taskpool_operator.orphans import ORPHAN_ACTIONS, OrphanAction
from taskpool_operator.policy import ScalingSpec
from taskpool_operator.probe.depth import ProbeTarget, ready_cap

_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


PoolKey = tuple[str, str]
"""(namespace, name): how the operator keys a pool everywhere (its memory, its indexes, the probe hub)."""

# The worker needs a few seconds after its shutdown timeout to store interrupted tasks as FAILED.
GRACE_MARGIN_S = 5.0


class InvalidPool(ValueError):
    """The pool's spec cannot be acted on (the CRD's validation normally prevents this)."""


def parse_duration(text: str) -> float:
    """Seconds in a duration like "30s", "5m", "1h30m" or "250ms" (the CRD's pattern)."""
    position, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if not text or position != len(text):
        raise InvalidPool(f"{text!r} is not a duration like '30s', '5m' or '1h30m'")
    return total


def _orphan_action(text: str) -> OrphanAction:
    for action in ORPHAN_ACTIONS:
        if action == text:
            return action
    raise InvalidPool(f"orphans.action must be one of {', '.join(ORPHAN_ACTIONS)}, not {text!r}")


@dataclasses.dataclass(frozen=True)
class Scaling:
    enabled: bool
    min_replicas: int
    max_replicas: int
    tasks_per_replica: int
    poll_interval_s: float
    scale_down_stabilization_s: float
    scale_to_zero_after_s: float
    activation_ready_tasks: int
    max_scale_up_step: int | None
    max_scale_down_step: int | None
    notify: bool = False  # woken by NOTIFY as well as polling (the operator and the workers)


@dataclasses.dataclass(frozen=True)
class Orphans:
    action: OrphanAction
    grace_period_s: float


@dataclasses.dataclass(frozen=True)
class Retention:
    """How long finished rows are kept (spec.retention); None keeps them forever."""

    successful_s: float | None = None
    failed_s: float | None = None

    @property
    def enabled(self) -> bool:
        return self.successful_s is not None or self.failed_s is not None


def _optional_duration(text: str | None) -> float | None:
    return None if text is None else parse_duration(text)


@dataclasses.dataclass(frozen=True)
class Pool:
    name: str
    namespace: str
    uid: str
    generation: int
    backend: str
    queues: tuple[str, ...]
    exclude_queues: tuple[str, ...]
    manual_replicas: int | None
    secret_name: str
    secret_key: str
    scaling: Scaling
    orphans: Orphans
    worker: Mapping[str, Any]
    """The defaulted spec.worker, read by the object builders."""
    scheduler: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """The defaulted spec.scheduler, read by the object builders."""
    retention: Retention = Retention()

    @property
    def scheduler_enabled(self) -> bool:
        return bool(self.scheduler.get("enabled"))

    @property
    def key(self) -> PoolKey:
        return (self.namespace, self.name)

    @property
    def concurrency(self) -> int:
        return int(self.worker["concurrency"])

    @property
    def threads(self) -> int:
        return int(self.worker["threads"])

    @property
    def metrics_port(self) -> int:
        return int(self.worker["metricsPort"])

    @property
    def shutdown_timeout_s(self) -> float:
        return parse_duration(self.worker["shutdownTimeout"])

    @property
    def time_limit_s(self) -> float | None:
        """The pool's default hard time limit of a task (`--time-limit`); None when unset."""
        limit = self.worker.get("timeLimit")
        return parse_duration(limit) if limit else None

    @property
    def fixed_replicas(self) -> int:
        """Pods when scaling is disabled: spec.replicas, else minReplicas."""
        if self.manual_replicas is not None:
            return self.manual_replicas
        return self.scaling.min_replicas

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Pool:
        meta = body.get("metadata", {})
        spec = crd.with_defaults(dict(body.get("spec") or {}))
        try:
            scaling = spec["scaling"]
            worker = spec["worker"]
            database = spec["database"]
            orphans = spec["orphans"]
            pool = cls(
                name=meta["name"],
                namespace=meta["namespace"],
                uid=meta.get("uid", ""),
                generation=int(meta.get("generation", 0)),
                backend=spec["backend"],
                queues=tuple(spec["queues"]),
                exclude_queues=tuple(spec.get("excludeQueues", ())),
                manual_replicas=spec.get("replicas"),
                secret_name=database["secretName"],
                secret_key=database["key"],
                scaling=Scaling(
                    enabled=bool(scaling["enabled"]),
                    min_replicas=int(scaling["minReplicas"]),
                    max_replicas=int(scaling["maxReplicas"]),
                    tasks_per_replica=int(
                        scaling.get("tasksPerReplica") or int(worker["concurrency"]) * int(worker["threads"])
                    ),
                    poll_interval_s=parse_duration(scaling["pollInterval"]),
                    scale_down_stabilization_s=parse_duration(scaling["scaleDownStabilization"]),
                    scale_to_zero_after_s=parse_duration(scaling["scaleToZeroAfter"]),
                    activation_ready_tasks=int(scaling["activationReadyTasks"]),
                    max_scale_up_step=scaling.get("maxScaleUpStep"),
                    max_scale_down_step=scaling.get("maxScaleDownStep"),
                    notify=bool(scaling.get("notify", False)),
                ),
                orphans=Orphans(
                    action=_orphan_action(orphans["action"]),
                    grace_period_s=parse_duration(orphans["gracePeriod"]),
                ),
                worker=worker,
                scheduler=spec["scheduler"],
                retention=Retention(
                    successful_s=_optional_duration((spec.get("retention") or {}).get("successful")),
                    failed_s=_optional_duration((spec.get("retention") or {}).get("failed")),
                ),
            )
        except KeyError as exc:
            raise InvalidPool(f"spec is missing {exc.args[0]!r}") from None
        pool.validate()
        return pool

    def validate(self) -> None:
        """The cross-field rules of the CRD, checked again for objects stored before a rule existed. The
        scaling and queue rules are those of `ScalingSpec` and `ProbeTarget` (their only copy)."""
        try:
            scaling_spec(self)
            probe_target(self)
        except ValueError as exc:
            raise InvalidPool(str(exc)) from None
        if float(self.worker["terminationGracePeriodSeconds"]) < self.shutdown_timeout_s + GRACE_MARGIN_S:
            raise InvalidPool(
                "worker.terminationGracePeriodSeconds must exceed worker.shutdownTimeout by "
                f"{GRACE_MARGIN_S:g}s"
            )
        parse_duration(self.worker["interval"])
        if self.time_limit_s is not None and self.time_limit_s > self.shutdown_timeout_s:
            raise InvalidPool(
                "worker.timeLimit must not exceed worker.shutdownTimeout, so a stopping worker's task ends "
                "by itself or at its time limit before the shutdown deadline"
            )
        if self.retention.enabled and not self.scheduler_enabled:
            raise InvalidPool("retention needs scheduler.enabled (the scheduler deletes the rows)")


def scaling_spec(pool: Pool) -> ScalingSpec:
    """The policy's view of the pool's scaling settings."""
    scaling = pool.scaling
    return ScalingSpec(
        min_replicas=scaling.min_replicas,
        max_replicas=scaling.max_replicas,
        tasks_per_replica=scaling.tasks_per_replica,
        activation_ready_tasks=scaling.activation_ready_tasks,
        max_scale_up_step=scaling.max_scale_up_step,
        max_scale_down_step=scaling.max_scale_down_step,
        scale_down_stabilization_seconds=scaling.scale_down_stabilization_s,
        scale_to_zero_after_seconds=scaling.scale_to_zero_after_s,
    )


def probe_target(pool: Pool) -> ProbeTarget:
    """What the probe counts for the pool; the ready count is capped where more cannot change a decision."""
    return ProbeTarget(
        backend=pool.backend,
        queues=pool.queues,
        exclude_queues=pool.exclude_queues,
        cap=ready_cap(pool.scaling.max_replicas, pool.scaling.tasks_per_replica),
    )


def replicas_to_apply(pool: Pool, decided: int | None, live: int | None) -> int:
    """The replicas a (re-)applied Deployment carries: the operator's last decision, else what the Deployment
    runs now, raised at once to minReplicas (to Pool.fixed_replicas when scaling is disabled). A higher count
    is kept, above a lowered maxReplicas or a lowered spec.replicas alike: the scaling loop brings it down,
    setting the pods' deletion costs first (idle pods go before busy ones) and saying in a BusyPodsDraining
    Event when busy pods must go."""
    floor = pool.scaling.min_replicas if pool.scaling.enabled else pool.fixed_replicas
    current = decided if decided is not None else live
    return floor if current is None else max(floor, current)
