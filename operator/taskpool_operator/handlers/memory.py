"""What the operator remembers about each pool between handler calls (in memory; rebuilt after a restart)."""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

from taskpool_operator.conditions import Problem
from taskpool_operator.policy import PolicyState
from taskpool_operator.pool import PoolKey


@dataclasses.dataclass
class PoolMemory:
    desired: int | None = None
    """Replicas the operator last gave the Deployment (the scaler's and the reconciler's shared truth)."""
    deployment_generation: int = 0
    """The Deployment's generation after the operator's own last write; a higher one means someone else
    edited it."""
    writing: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False, compare=False)
    """Held by a write of one of the pool's Deployments from before its request goes out until the generation
    it left is recorded (deployment_generation, scheduler_generation). The watch event of a write can be
    handled before its reply: a handler reads those generations under this lock (`writes.own_generation`), so
    it never takes the operator's own write for someone else's."""
    applied_generation: int | None = None
    """The pool generation whose spec the Deployment carries (status.observedGeneration)."""
    write_refusals: dict[str, Problem] = dataclasses.field(default_factory=dict)
    """Why the last write of each of the pool's Deployments (workers, scheduler; by name) was refused (cleared
    by the next write of it that succeeds)."""
    scale_error: Problem | None = None
    """Why the last change of the Deployment's replicas was refused (cleared by the next that succeeds)."""
    secret_missing_since: float | None = None
    """When (time.monotonic()) the pool's Secret or key was first seen missing (since the last read that
    worked)."""
    policy_state: PolicyState = dataclasses.field(default_factory=PolicyState)
    last_scale_time: str | None = None
    last_status: dict[str, Any] = dataclasses.field(default_factory=dict)
    orphans: frozenset[str] = frozenset()
    """Worker ids of orphaned tasks already reported (an Event goes out when new ones appear)."""
    orphan_missing_since: dict[str, float] = dataclasses.field(default_factory=dict)
    """Worker ids owning RUNNING rows whose pod is missing, with when (time.monotonic()) it was first seen
    missing (orphans.observe)."""
    busy_pods: frozenset[str] = frozenset()
    """Live worker pods that ran a task at the last reading (for the Event when the pool is deleted)."""
    orphans_recovered: int | None = None
    """Orphaned tasks failed or requeued so far (status.orphansRecovered; None until read from the status)."""
    scheduler_generation: int | None = None
    """The scheduler Deployment's generation after the operator's own last write (None: the operator runs
    no scheduler for the pool)."""


_pools: dict[PoolKey, PoolMemory] = {}


def of(key: PoolKey) -> PoolMemory:
    return _pools.setdefault(key, PoolMemory())


def get(key: PoolKey) -> PoolMemory | None:
    return _pools.get(key)


def forget(key: PoolKey) -> None:
    _pools.pop(key, None)
