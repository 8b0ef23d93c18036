"""The supervisor's writes to the task table: resolving the RUNNING rows of a worker process known to be dead.

A row is resolved when it is still RUNNING and the last entry of its `worker_ids` is the dead process's id:
both are re-checked by the UPDATE itself (under READ COMMITTED an UPDATE that waited for a concurrent writer
re-evaluates its WHERE clause on the row's new version), so a row finished or claimed again in between is left
alone. This is the same guarded UPDATE as the taskpool operator's orphan recovery, written here again because
the worker runtime never imports the operator. FAILED writes exactly the columns django-tasks-db's
`DBTaskResult.set_failed` writes; READY those of a freshly enqueued row (`worker_ids` keeps its history).

A task whose retry policy opts in (`retry_interrupted`, django_taskpool.retries) and has attempts left is
retried instead: READY with `run_after` = now + its backoff and the interruption as its last error, like a
retry the worker writes; rows locked, decided and updated in one transaction before the others are resolved.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from django.db import connections, transaction
from django_tasks_db.models import DBTaskResult

from django_taskpool.exceptions import class_path

TABLE: Final = DBTaskResult._meta.db_table
# The supervisor's loop waits for these statements: a stuck database must not stall it for long.
STATEMENT_TIMEOUT: Final = "5s"

_RETURNING: Final = "RETURNING t.id::text, t.task_path, t.queue_name, t.backend_name"
_RUNNING_OF: Final = (
    "WHERE t.status = 'RUNNING' AND t.backend_name = %(backend)s"
    " AND t.worker_ids ->> -1 = ANY(%(worker_ids)s)"
)
FAIL: Final = f"""
UPDATE {TABLE} AS t
SET status = 'FAILED', finished_at = now(), return_value = NULL,
    exception_class_path = %(exception_class_path)s, traceback = %(traceback)s
{_RUNNING_OF}
{_RETURNING}"""  # noqa: S608 - only module constants are interpolated
REQUEUE: Final = f"""
UPDATE {TABLE} AS t
SET status = 'READY', started_at = NULL
{_RUNNING_OF}
{_RETURNING}"""  # noqa: S608
LOCK_RUNNING: Final = f"""
SELECT t.id::text, t.task_path, jsonb_array_length(t.worker_ids) FROM {TABLE} AS t
{_RUNNING_OF}
FOR UPDATE"""  # noqa: S608
RETRY: Final = f"""
UPDATE {TABLE} AS t
SET status = 'READY', run_after = now() + make_interval(secs => %(delay)s), finished_at = NULL,
    return_value = NULL, exception_class_path = %(exception_class_path)s, traceback = %(traceback)s
WHERE t.id = %(id)s::uuid
{_RETURNING}"""  # noqa: S608
RUNNING_WORKER_IDS: Final = f"""
SELECT DISTINCT t.worker_ids ->> -1 FROM {TABLE} AS t
WHERE t.status = 'RUNNING' AND t.backend_name = %(backend)s AND t.worker_ids ->> -1 IS NOT NULL
"""  # noqa: S608


class LostAction(enum.StrEnum):
    """What happens to the task of a worker process that died (`--on-worker-lost`)."""

    FAIL = "fail"  # FAILED with django_taskpool.exceptions.WorkerLost
    REQUEUE = "requeue"  # READY again, for idempotent tasks


@dataclass(frozen=True)
class ResolvedTask:
    id: str
    task_path: str
    queue_name: str
    backend_name: str


def fail(
    alias: str, backend: str, worker_ids: list[str], exception: type[BaseException], traceback: str
) -> list[ResolvedTask]:
    """Marks the RUNNING rows last claimed by `worker_ids` FAILED with `exception`; returns them."""
    return _execute(
        alias,
        FAIL,
        {
            "backend": backend,
            "worker_ids": worker_ids,
            "exception_class_path": class_path(exception),
            "traceback": traceback,
        },
    )


def retry(
    alias: str,
    backend: str,
    worker_ids: list[str],
    *,
    exception: type[BaseException],
    traceback: str,
    delay_of: Callable[[str, int], float | None],
) -> list[ResolvedTask]:
    """Retries the RUNNING rows last claimed by `worker_ids` for which `delay_of(task path, attempts)` gives
    a backoff (None: leave the row to `fail` or `requeue`); returns them."""
    retried = []
    with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
        cursor.execute(f"SET LOCAL statement_timeout = '{STATEMENT_TIMEOUT}'")
        cursor.execute(LOCK_RUNNING, {"backend": backend, "worker_ids": worker_ids})
        for task_id, task_path, attempts in cursor.fetchall():
            delay = delay_of(str(task_path), int(attempts))
            if delay is None:
                continue
            params = {
                "id": task_id,
                "delay": delay,
                "exception_class_path": class_path(exception),
                "traceback": traceback,
            }
            cursor.execute(RETRY, params)
            retried += [ResolvedTask(*map(str, row)) for row in cursor.fetchall()]
    return retried


def requeue(alias: str, backend: str, worker_ids: list[str]) -> list[ResolvedTask]:
    """Makes the RUNNING rows last claimed by `worker_ids` READY again; returns them."""
    return _execute(alias, REQUEUE, {"backend": backend, "worker_ids": worker_ids})


def running_worker_ids(alias: str, backend: str) -> set[str]:
    """The last worker ids of every RUNNING row of the backend (few: one per busy process of the pool)."""
    with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
        cursor.execute(f"SET LOCAL statement_timeout = '{STATEMENT_TIMEOUT}'")
        cursor.execute(RUNNING_WORKER_IDS, {"backend": backend})
        return {str(worker_id) for (worker_id,) in cursor.fetchall()}


def _execute(alias: str, statement: str, params: dict[str, str | list[str]]) -> list[ResolvedTask]:
    with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
        cursor.execute(f"SET LOCAL statement_timeout = '{STATEMENT_TIMEOUT}'")
        cursor.execute(statement, params)
        return [ResolvedTask(*map(str, row)) for row in cursor.fetchall()]
