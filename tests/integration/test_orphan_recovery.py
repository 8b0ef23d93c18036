"""Orphan recovery's SQL on a real PostgreSQL migrated by the demo project, checked through Django's own view.

Tasks are enqueued with Django's task API (`enqueue_burst`) and "claimed" the way django-tasks-db's
`DBTaskResult.claim` does (status RUNNING, started_at, the worker id appended); the operator's probe hub then
fails or requeues the rows of a lost worker, and a Django subprocess reads them back
(`DBTaskResult.task_result`, `objects.ready()`), as an application would.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psycopg
import pytest

from devdb import demo_project
from taskpool_operator import orphans
from taskpool_operator.probe import sql
from taskpool_operator.probe.depth import OrphanedRows, OrphanRecovery, ProbeError, ProbeTarget
from taskpool_operator.probe.hub import ProbeHub

pytestmark = pytest.mark.integration

GONE = "shop-workers-7d9f8c6b5d-zzzzz-0"
LIVE = "shop-workers-7d9f8c6b5d-aaaaa-0"
KEY = "shop/shop"


def claim(dsn: str, task_id: str, worker_id: str, backend: str | None = None) -> None:
    """What `DBTaskResult.claim(worker_id)` writes (plus a backend change, to build a row of another one)."""
    with psycopg.connect(dsn) as conn:
        conn.execute(
            f"UPDATE {sql.TASK_TABLE} SET status = 'RUNNING', started_at = now(),"
            " worker_ids = worker_ids || to_jsonb(%s::text), backend_name = coalesce(%s, backend_name)"
            " WHERE id = %s",
            (worker_id, backend, task_id),
        )


def finish(dsn: str, task_id: str) -> None:
    """What `DBTaskResult.set_successful` writes."""
    with psycopg.connect(dsn) as conn:
        conn.execute(
            f"UPDATE {sql.TASK_TABLE} SET status = 'SUCCESSFUL', finished_at = now(), return_value = 'null',"
            " exception_class_path = '', traceback = '' WHERE id = %s",
            (task_id,),
        )


def recovery(action: str, *rows: tuple[str, str]) -> OrphanRecovery:
    return OrphanRecovery(
        action,  # type: ignore[arg-type]
        "default",
        tuple(OrphanedRows(queue, worker, f"lost {worker}") for queue, worker in rows),
        orphans.WORKER_LOST,
    )


async def recover(dsn: str, batch: OrphanRecovery) -> dict[str, str]:
    async with ProbeHub() as hub:
        hub.register(KEY, dsn, ProbeTarget(queues=("default",)))
        return await hub.recover_orphans(KEY, batch)


ORM_SCRIPT = """
import json
from django_tasks_db.models import DBTaskResult

ready = {str(pk) for pk in DBTaskResult.objects.ready().values_list("id", flat=True)}
view = {}
for row in DBTaskResult.objects.filter(backend_name="default"):
    result = row.task_result
    view[str(row.id)] = {
        "status": result.status.name,
        "ready": str(row.id) in ready,
        "started_at": result.started_at and result.started_at.isoformat(),
        "finished_at": result.finished_at and result.finished_at.isoformat(),
        "worker_ids": result.worker_ids,
        "errors": [
            {
                "path": e.exception_class_path,
                "class": e.exception_class.__module__ + "." + e.exception_class.__qualname__,
                "traceback": e.traceback,
            }
            for e in result.errors
        ],
        "return_value": row.return_value,
    }
print(json.dumps(view))
"""


def orm_view(database: demo_project.MigratedDatabase) -> dict[str, Any]:
    """Every task of the default backend as Django's TaskResult shows it, from a Django subprocess (the
    operator never imports Django)."""
    result: dict[str, Any] = demo_project.shell_json(database.url, ORM_SCRIPT)
    return result


def test_fail_marks_only_the_lost_workers_running_rows_failed(
    migrated_database: demo_project.MigratedDatabase,
) -> None:
    db = migrated_database
    lost, finished, live, other_backend, reclaimed, waiting = demo_project.enqueue(db.url, "noop", count=6)
    claim(db.dsn, lost, GONE)
    claim(db.dsn, finished, GONE)
    finish(db.dsn, finished)  # the worker finished it after the operator's reading
    claim(db.dsn, live, LIVE)
    claim(db.dsn, other_backend, GONE, backend="other")
    claim(db.dsn, reclaimed, GONE)
    claim(db.dsn, reclaimed, LIVE)  # claimed again since: its last worker id is another one
    before = demo_project.task_rows(db.dsn)

    changed = asyncio.run(recover(db.dsn, recovery("Fail", ("default", GONE))))

    assert changed == {lost: GONE}
    after = demo_project.task_rows(db.dsn)
    for untouched in (finished, live, other_backend, reclaimed, waiting):
        assert after[untouched] == before[untouched]
    view = orm_view(db)
    failed = view[lost]
    assert failed["status"] == "FAILED"
    assert failed["finished_at"] is not None
    assert failed["worker_ids"] == [GONE]
    assert failed["return_value"] is None
    (error,) = failed["errors"]
    assert error["path"] == "django_taskpool.exceptions.WorkerLost"
    assert error["class"] == "django_taskpool.exceptions.WorkerLost"  # Django resolves the class
    assert error["traceback"] == f"lost {GONE}"
    assert (view[finished]["status"], view[finished]["errors"]) == ("SUCCESSFUL", [])
    assert view[live]["status"] == "RUNNING"

    # Once recovered, nothing is left to recover.
    assert asyncio.run(recover(db.dsn, recovery("Fail", ("default", GONE)))) == {}


def test_requeued_rows_are_ready_again_and_a_real_worker_runs_them(
    migrated_database: demo_project.MigratedDatabase,
) -> None:
    db = migrated_database
    first, second = demo_project.enqueue(db.url, "noop", count=2)
    (email,) = demo_project.enqueue(db.url, "email", queue="emails")
    for task_id in (first, second, email):
        claim(db.dsn, task_id, GONE)

    changed = asyncio.run(recover(db.dsn, recovery("Requeue", ("default", GONE), ("emails", GONE))))

    assert changed == {first: GONE, second: GONE, email: GONE}
    view = orm_view(db)
    for task_id in (first, second, email):
        assert view[task_id]["status"] == "READY"
        assert view[task_id]["ready"] is True  # DBTaskResult.objects.ready() sees it again
        assert view[task_id]["started_at"] is None
        assert view[task_id]["worker_ids"] == [GONE]  # the history stays
        assert view[task_id]["errors"] == []

    worker_flags = ("--no-reload", "--batch", "--no-startup-delay", "--metrics-port=0", "--queue-name=*")
    demo_project.run_manage(
        db.url, "taskpool_worker", *worker_flags, POD_NAME="shop-workers-7d9f8c6b5d-bbbbb"
    )
    view = orm_view(db)
    for task_id in (first, second, email):
        assert view[task_id]["status"] == "SUCCESSFUL"
        assert view[task_id]["worker_ids"] == [GONE, "shop-workers-7d9f8c6b5d-bbbbb-0"]


def test_a_row_the_worker_finishes_during_the_recovery_is_left_finished(
    migrated_database: demo_project.MigratedDatabase,
) -> None:
    """The worker's own result write holds the row's lock when the recovery's UPDATE reaches it: the UPDATE
    waits, re-checks `status = 'RUNNING'` against the committed row, and skips it."""
    db = migrated_database
    racing, lost = demo_project.enqueue(db.url, "noop", count=2)
    claim(db.dsn, racing, GONE)
    claim(db.dsn, lost, GONE)

    async def race() -> dict[str, str]:
        async with ProbeHub() as hub:
            hub.register(KEY, db.dsn, ProbeTarget(queues=("default",)))
            with psycopg.connect(db.dsn) as worker:  # a transaction holding the row lock
                worker.execute(
                    f"UPDATE {sql.TASK_TABLE} SET status = 'SUCCESSFUL', finished_at = now() WHERE id = %s",
                    (racing,),
                )
                pending = asyncio.create_task(hub.recover_orphans(KEY, recovery("Fail", ("default", GONE))))
                await asyncio.sleep(0.5)
                assert not pending.done()  # blocked on the row lock
                worker.commit()
            return await pending

    assert asyncio.run(race()) == {lost: GONE}
    rows = demo_project.task_rows(db.dsn)
    assert rows[racing]["status"] == "SUCCESSFUL"
    assert rows[racing]["exception_class_path"] == ""
    assert rows[lost]["status"] == "FAILED"


def test_the_recovery_finds_running_rows_through_the_partial_index(
    migrated_database: demo_project.MigratedDatabase,
) -> None:
    db = migrated_database
    with psycopg.connect(db.dsn) as conn:
        # A realistic table: many finished rows kept (prune_db_task_results keeps 14 days), a few running.
        conn.execute(
            f"INSERT INTO {sql.TASK_TABLE} (id, status, enqueued_at, started_at, finished_at, args_kwargs,"
            " priority, task_path, worker_ids, queue_name, backend_name, run_after, return_value,"
            " exception_class_path, traceback)"
            " SELECT gen_random_uuid(), CASE WHEN i % 5000 = 0 THEN 'RUNNING' ELSE 'SUCCESSFUL' END, now(),"
            " now(), now(), '{\"args\": [], \"kwargs\": {}}', 0, 'taskpool_demo.tasks.noop',"
            " jsonb_build_array('shop-workers-7d9f8c6b5d-' || (i % 7) || 'xxxx-0'), 'default', 'default',"
            " '9999-01-01 00:00:00+00', 'null', '', '' FROM generate_series(1, 50000) AS i"
        )
        conn.execute(f"ANALYZE {sql.TASK_TABLE}")
        params = {
            "backend": "default",
            "queues": ["default"],
            "worker_ids": [GONE],
            "tracebacks": ["lost"],
            "exception_class_path": orphans.WORKER_LOST,
        }
        cursor = psycopg.ClientCursor(conn)
        for statement in (sql.FAIL_ORPHANS, sql.REQUEUE_ORPHANS):
            plan = "\n".join(str(row[0]) for row in cursor.execute("EXPLAIN " + statement, params))
            assert sql.RUNNING_INDEX in plan, plan
            assert f"Seq Scan on {sql.TASK_TABLE}" not in plan, plan
        conn.rollback()


def test_the_probe_connection_stays_read_only_after_a_recovery(
    migrated_database: demo_project.MigratedDatabase,
) -> None:
    db = migrated_database
    (task_id,) = demo_project.enqueue(db.url, "noop")
    claim(db.dsn, task_id, GONE)

    async def recover_then_probe() -> tuple[dict[str, str], Any]:
        async with ProbeHub() as hub:
            hub.register(KEY, db.dsn, ProbeTarget(queues=("default",)))
            changed = await hub.recover_orphans(KEY, recovery("Requeue", ("default", GONE)))
            await hub.tick(db.dsn)
            return changed, hub.latest(KEY)

    changed, reading = asyncio.run(recover_then_probe())
    assert changed == {task_id: GONE}
    assert reading is not None
    assert not isinstance(reading, ProbeError)
    assert (reading.ready, reading.running) == (1, 0)


def test_recovery_errors_are_classified_without_the_password(
    migrated_database: demo_project.MigratedDatabase, postgres_admin_dsn: str
) -> None:
    """A database user that may read but not write the task table (a read-only DSN): a `query` error."""
    db = migrated_database
    user = f"reader_{int(time.time() * 1000) % 10**9}"
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {user} LOGIN PASSWORD 'Sup3r-s3cret'")
        conn.execute(f"GRANT SELECT ON {sql.TASK_TABLE} TO {user}")
    params = psycopg.conninfo.conninfo_to_dict(db.dsn)
    params.update(user=user, password="Sup3r-s3cret")
    reader = psycopg.conninfo.make_conninfo(**{k: v for k, v in params.items() if v is not None})
    (task_id,) = demo_project.enqueue(db.url, "noop")
    claim(db.dsn, task_id, GONE)
    try:
        with pytest.raises(ProbeError) as raised:
            asyncio.run(recover(reader, recovery("Fail", ("default", GONE))))
        assert raised.value.reason == "query"
        assert "permission denied" in raised.value.message
        assert "Sup3r-s3cret" not in raised.value.message
        assert demo_project.task_rows(db.dsn)[task_id]["status"] == "RUNNING"
    finally:
        with psycopg.connect(db.dsn, autocommit=True) as conn:
            conn.execute(f"REVOKE ALL ON {sql.TASK_TABLE} FROM {user}")
            conn.execute(f"DROP ROLE {user}")
