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

from django_taskpool import retention_sql as sql
from django_taskpool.models import ScheduleFire

FINISHED_STATUSES = ("SUCCESSFUL", "FAILED")
LOCK_TIMEOUT = "2s"


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
            sql.QUEUES_WITH_FINISHED_ROWS.format(table=_table(alias, DBTaskResult)),
            {"backend": policy.backend},
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
            sql.PRUNE_BATCH.format(table=_table(alias, DBTaskResult)),
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
            sql.PRUNE_FIRES.format(table=_table(alias, ScheduleFire)),
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
                    sql.OLDEST_FINISHED.format(table=_table(alias, DBTaskResult)),
                    {"backend": policy.backend, "queue": queue, "status": status},
                )
                row = cursor.fetchone()
                if row is not None and row[0] is not None:
                    ages[status] = max(ages[status], float(row[0]))
    return ages
