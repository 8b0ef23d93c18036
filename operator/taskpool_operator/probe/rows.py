"""From the pools' targets to the statement's parameters, and from its rows to each pool's `PoolDepth` (pure).

One statement (`sql.QUEUE_DEPTH`) serves every pool on a database: its parameters are the union of their
interests, and its rows are distributed back to each pool by its `ProbeTarget`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from taskpool_operator.probe import sql
from taskpool_operator.probe.depth import (
    MIGRATE_HINT,
    PoolDepth,
    ProbeError,
    ProbeTarget,
    QueueDepth,
    WorkerTasks,
)


@dataclass(frozen=True)
class Rows:
    """The raw result of one statement, keyed for distribution to pools."""

    ready: dict[tuple[str, str], tuple[int, float]] = field(default_factory=dict)
    running: dict[tuple[str, str, str | None], int] = field(default_factory=dict)


def parameters(targets: Iterable[ProbeTarget]) -> dict[str, list[str] | list[int]]:
    """The statement's parameters for the union of `targets` (a queue wanted twice is counted to the higher
    cap)."""
    listed: dict[tuple[str, str], int] = {}
    wild: dict[str, int] = {}
    for target in targets:
        if target.all_queues:
            wild[target.backend] = max(wild.get(target.backend, 0), target.cap)
        else:
            for queue in target.queues:
                pair = (target.backend, queue)
                listed[pair] = max(listed.get(pair, 0), target.cap)
    backends = sorted({backend for backend, _ in listed} | set(wild))
    return {
        "listed_backends": [backend for backend, _ in listed],
        "listed_queues": [queue for _, queue in listed],
        "listed_caps": list(listed.values()),
        "wild_backends": list(wild),
        "wild_caps": list(wild.values()),
        "backends": backends,
    }


def collect(records: Iterable[Sequence[Any]], where: str) -> Rows:
    """The statement's rows; raises `ProbeError("missing_index")` when the probe's indexes are absent."""
    rows = Rows()
    for kind, backend, queue, worker_id, tasks, oldest_age in records:
        if kind == "missing_index":
            raise ProbeError(
                "missing_index",
                f"the queue probe's indexes ({sql.READY_INDEX}, {sql.RUNNING_INDEX}) are missing on {where}: "
                f"{MIGRATE_HINT}",
            )
        if kind == "ready":
            rows.ready[backend, queue] = (int(tasks), max(0.0, float(oldest_age or 0.0)))
        else:
            rows.running[backend, queue, worker_id] = int(tasks)
    return rows


def pool_depth(target: ProbeTarget, rows: Rows, probed_at: float) -> PoolDepth:
    """One pool's share of the rows."""
    ready: dict[str, tuple[int, float]] = {}
    if not target.all_queues:
        ready.update(dict.fromkeys(target.queues, (0, 0.0)))
    for (backend, queue), counts in rows.ready.items():
        if target.selects(backend, queue):
            ready[queue] = counts
    running: dict[str, int] = {}
    by_worker: list[WorkerTasks] = []
    for (backend, queue, worker_id), tasks in sorted(rows.running.items(), key=_running_order):
        if target.selects(backend, queue):
            running[queue] = running.get(queue, 0) + tasks
            by_worker.append(WorkerTasks(backend, queue, worker_id, tasks))
    queues = tuple(
        QueueDepth(
            backend=target.backend,
            queue=queue,
            ready=min(ready.get(queue, (0, 0.0))[0], target.cap),
            running=running.get(queue, 0),
            oldest_ready_age_seconds=ready.get(queue, (0, 0.0))[1],
        )
        for queue in sorted(ready.keys() | running.keys())
    )
    return PoolDepth(
        queues=queues,
        running_by_worker=tuple(by_worker),
        ready=min(sum(q.ready for q in queues), target.cap),
        running=sum(q.running for q in queues),
        oldest_ready_age_seconds=max((q.oldest_ready_age_seconds for q in queues), default=0.0),
        cap=target.cap,
        probed_at=probed_at,
    )


def _running_order(item: tuple[tuple[str, str, str | None], int]) -> tuple[str, str, str]:
    (backend, queue, worker_id), _ = item
    return backend, queue, worker_id or ""
