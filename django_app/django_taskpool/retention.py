"""Result retention: deletes finished task rows (and old fires) older than the pool's retention periods.

Each batch is one short transaction of its own: it selects at most `batch_size` rows of one queue and one
status through `taskpool_finished_idx` (migration 0003), oldest first, `FOR UPDATE SKIP LOCKED`, and deletes
them. Workers never lock finished rows (they claim READY rows and update their own RUNNING ones), and a
DELETE holds the same table lock as their UPDATEs, so nothing a worker needs is ever held. `lock_timeout`
keeps a batch from queueing behind someone else's strong lock (a migration), which would queue workers
behind the batch in turn.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Sequence

from django.db import connections, transaction
from django.db.models import Model
from django_tasks_db.models import DBTaskResult

from django_taskpool.models import ScheduleFire

FINISHED_STATUSES = ("SUCCESSFUL", "FAILED")
LOCK_TIMEOUT = "2s"

_QUEUES_WITH_FINISHED_ROWS = """
WITH RECURSIVE queues AS (
    (SELECT queue_name FROM {table} WHERE backend_name = %(backend)s AND status IN ('SUCCESSFUL', 'FAILED')
     ORDER BY queue_name LIMIT 1)
    UNION ALL
    SELECT (SELECT t.queue_name FROM {table} AS t
            WHERE t.backend_name = %(backend)s AND t.status IN ('SUCCESSFUL', 'FAILED')
              AND t.queue_name > queues.queue_name
            ORDER BY t.queue_name LIMIT 1)
    FROM queues WHERE queues.queue_name IS NOT NULL
)
SELECT queue_name FROM queues WHERE queue_name IS NOT NULL
"""

_PRUNE_BATCH = """
DELETE FROM {table} WHERE id IN (
    SELECT id FROM {table}
    WHERE backend_name = %(backend)s AND queue_name = %(queue)s AND status = %(status)s
      AND finished_at < %(cutoff)s
    ORDER BY finished_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
"""

_OLDEST_FINISHED = """
SELECT EXTRACT(EPOCH FROM now() - min(finished_at)) FROM {table}
WHERE backend_name = %(backend)s AND queue_name = %(queue)s AND status = %(status)s
"""

# Fires older than the cutoff, except each schedule's newest (a scheduler resumes from it after a restart).
_PRUNE_FIRES = """
DELETE FROM {table} WHERE id IN (
    SELECT f.id FROM {table} AS f
    WHERE f.fire_time < %(cutoff)s
      AND f.fire_time < (SELECT max(g.fire_time) FROM {table} AS g WHERE g.schedule = f.schedule)
    LIMIT %(limit)s
)
"""


@dataclasses.dataclass(frozen=True)
class RetentionPolicy:
    """How long finished rows of the pool's queues are kept; None keeps them forever."""

    backend: str
    queues: tuple[str, ...]
    exclude_queues: tuple[str, ...]
    successful: datetime.timedelta | None
    failed: datetime.timedelta | None
    batch_size: int = 1000

    @property
    def enabled(self) -> bool:
        return self.successful is not None or self.failed is not None

    def kept_for(self, status: str) -> datetime.timedelta | None:
        return self.successful if status == "SUCCESSFUL" else self.failed


def _table(alias: str, model: type[Model]) -> str:
    return connections[alias].ops.quote_name(model._meta.db_table)


def queues_to_prune(policy: RetentionPolicy, alias: str) -> list[str]:
    """The pool's queues: its list, or for "*" every queue holding finished rows (one index probe per
    queue) minus the excluded ones."""
    if policy.queues != ("*",):
        return list(policy.queues)
    with connections[alias].cursor() as cursor:
        cursor.execute(
            _QUEUES_WITH_FINISHED_ROWS.format(table=_table(alias, DBTaskResult)), {"backend": policy.backend}
        )
        found = [row[0] for row in cursor.fetchall()]
    return [queue for queue in found if queue not in policy.exclude_queues]


def prune_batch(policy: RetentionPolicy, alias: str, queue: str, status: str, now: datetime.datetime) -> int:
    """Deletes up to batch_size finished rows of one queue and status older than its retention period, in a
    transaction of its own; the number deleted."""
    kept_for = policy.kept_for(status)
    if kept_for is None:
        return 0
    with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
        cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        cursor.execute(
            _PRUNE_BATCH.format(table=_table(alias, DBTaskResult)),
            {
                "backend": policy.backend,
                "queue": queue,
                "status": status,
                "cutoff": now - kept_for,
                "limit": policy.batch_size,
            },
        )
        return int(cursor.rowcount)


def prune_fires(policy: RetentionPolicy, alias: str, now: datetime.datetime) -> int:
    """Deletes one batch of fires older than the longest retention period (never a schedule's newest)."""
    periods = [period for period in (policy.successful, policy.failed) if period is not None]
    if not periods:
        return 0
    with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
        cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        cursor.execute(
            _PRUNE_FIRES.format(table=_table(alias, ScheduleFire)),
            {"cutoff": now - max(periods), "limit": policy.batch_size},
        )
        return int(cursor.rowcount)


def oldest_finished_age(policy: RetentionPolicy, alias: str, queues: Sequence[str]) -> dict[str, float]:
    """Age in seconds of the oldest finished row of the pool's queues, by status (0 when none); each
    figure is the first entry of the finished index for one queue."""
    ages = dict.fromkeys(FINISHED_STATUSES, 0.0)
    with connections[alias].cursor() as cursor:
        for queue in queues:
            for status in FINISHED_STATUSES:
                cursor.execute(
                    _OLDEST_FINISHED.format(table=_table(alias, DBTaskResult)),
                    {"backend": policy.backend, "queue": queue, "status": status},
                )
                row = cursor.fetchone()
                if row is not None and row[0] is not None:
                    ages[status] = max(ages[status], float(row[0]))
    return ages
