"""Wake-up on NOTIFY against a real PostgreSQL migrated by the demo project (the trigger of the
`django_taskpool` migration `0004_ready_notify_trigger`): the operator's probe hub and a
`taskpool_worker --notify` are woken by an enqueue, and polling still works when the trigger is absent.

No timing is asserted: the waits below would need hours without a wake-up (a 1 h poll interval), and the
latency figures live in `benchmarks/pickup.py`.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

import psycopg
import pytest

from devdb.demo_project import MigratedDatabase, enqueue, task_rows, wait_until
from taskpool_operator.probe import sql
from taskpool_operator.probe.depth import PoolDepth, ProbeTarget
from taskpool_operator.probe.hub import ProbeHub
from tests.support.django_db import WorkerRun

pytestmark = pytest.mark.integration

StartWorker = Callable[..., WorkerRun]
TRIGGERS = ("taskpool_ready_notify_insert", "taskpool_ready_notify_update")


def drop_trigger(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for name in TRIGGERS:
            conn.execute(f"DROP TRIGGER {name} ON {sql.TASK_TABLE}")


def listening_sessions(dsn: str) -> int:
    """Sessions of this database that issued LISTEN on a taskpool channel."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND query LIKE 'LISTEN \"taskpool_ready.%%'"
        ).fetchone()
    return int(row[0]) if row else 0


def test_an_enqueue_wakes_the_pools_of_its_queue_with_a_fresh_reading(
    migrated_database: MigratedDatabase,
) -> None:
    db = migrated_database

    async def scenario() -> None:
        async with ProbeHub(listen_retry_seconds=0.5) as hub:
            hub.register("default-pool", db.dsn, ProbeTarget(queues=("default",), cap=100), notify=True)
            hub.register("emails-pool", db.dsn, ProbeTarget(queues=("emails",), cap=100), notify=True)
            hub.register("polling-pool", db.dsn, ProbeTarget(queues=("default",), cap=100))
            listener = hub.listener(db.dsn)
            assert listener is not None
            await asyncio.wait_for(listener.listening.wait(), 60)
            assert hub.woken("polling-pool") is None

            await asyncio.to_thread(enqueue, db.url, "noop")
            woken = hub.woken("default-pool")
            assert woken is not None
            await asyncio.wait_for(woken.wait(), 60)

            reading = hub.latest("default-pool")
            assert isinstance(reading, PoolDepth)
            assert reading.ready == 1  # the wake-up's tick already measured the new tasks
            emails = hub.woken("emails-pool")
            assert emails is not None
            assert not emails.is_set()

    asyncio.run(scenario())


def test_a_requeued_task_wakes_the_pool(migrated_database: MigratedDatabase) -> None:
    db = migrated_database
    (task_id,) = enqueue(db.url, "noop")
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        conn.execute(f"UPDATE {sql.TASK_TABLE} SET status = 'RUNNING' WHERE id = %s", [task_id])

    async def scenario() -> None:
        async with ProbeHub() as hub:
            hub.register("pool", db.dsn, ProbeTarget(queues=("default",), cap=100), notify=True)
            listener = hub.listener(db.dsn)
            assert listener is not None
            await asyncio.wait_for(listener.listening.wait(), 60)
            with psycopg.connect(db.dsn, autocommit=True) as conn:
                conn.execute(f"UPDATE {sql.TASK_TABLE} SET status = 'READY' WHERE id = %s", [task_id])
            woken = hub.woken("pool")
            assert woken is not None
            await asyncio.wait_for(woken.wait(), 60)
            reading = hub.latest("pool")
            assert isinstance(reading, PoolDepth)
            assert reading.ready == 1

    asyncio.run(scenario())


def test_without_the_trigger_the_hub_still_measures_by_polling(
    migrated_database: MigratedDatabase,
) -> None:
    db = migrated_database
    drop_trigger(db.dsn)

    async def scenario() -> None:
        async with ProbeHub() as hub:
            hub.register("pool", db.dsn, ProbeTarget(queues=("default",), cap=100), notify=True)
            listener = hub.listener(db.dsn)
            assert listener is not None
            await asyncio.wait_for(listener.listening.wait(), 60)
            await asyncio.to_thread(enqueue, db.url, "noop", count=2)
            reading = await hub.fresh("pool", 0)
            assert isinstance(reading, PoolDepth)
            assert reading.ready == 2
            woken = hub.woken("pool")
            assert woken is not None
            assert not woken.is_set()

    asyncio.run(scenario())


def test_the_listener_reconnects_after_its_connection_is_killed(
    migrated_database: MigratedDatabase,
) -> None:
    db = migrated_database

    async def scenario() -> None:
        async with ProbeHub(listen_retry_seconds=0.2) as hub:
            hub.register("pool", db.dsn, ProbeTarget(queues=("default",), cap=100), notify=True)
            listener = hub.listener(db.dsn)
            assert listener is not None
            await asyncio.wait_for(listener.listening.wait(), 60)
            with psycopg.connect(db.dsn, autocommit=True) as conn:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name = 'taskpool-operator-listen'"
                )
            await asyncio.to_thread(
                wait_until, lambda: not listener.listening.is_set(), 60, "the listener to notice"
            )
            await asyncio.wait_for(listener.listening.wait(), 60)
            await asyncio.to_thread(enqueue, db.url, "noop")
            woken = hub.woken("pool")
            assert woken is not None
            await asyncio.wait_for(woken.wait(), 60)

    asyncio.run(scenario())


def test_notify_ends_an_idle_workers_sleep(
    migrated_database: MigratedDatabase, worker_runs: StartWorker
) -> None:
    db = migrated_database
    run = worker_runs(db.url, "--notify", "--interval=3600")  # polling alone would not look for an hour
    run.wait_ready()
    wait_until(lambda: listening_sessions(db.dsn) == 1, 60, "the worker's LISTEN")
    (task_id,) = enqueue(db.url, "noop")
    wait_until(lambda: task_rows(db.dsn)[task_id]["status"] == "SUCCESSFUL", 120, "the task to run")
    (second,) = enqueue(db.url, "noop")  # the worker listens again after a task
    wait_until(lambda: task_rows(db.dsn)[second]["status"] == "SUCCESSFUL", 120, "the second task")
    run.check_running()


def test_a_notify_worker_polls_when_the_trigger_is_absent(
    migrated_database: MigratedDatabase, worker_runs: StartWorker
) -> None:
    db = migrated_database
    drop_trigger(db.dsn)
    run = worker_runs(db.url, "--notify", "--interval=0.2")
    run.wait_ready()
    (task_id,) = enqueue(db.url, "noop")
    wait_until(lambda: task_rows(db.dsn)[task_id]["status"] == "SUCCESSFUL", 120, "the task to run")
    run.check_running()


def test_a_worker_that_loses_its_listen_connection_polls_and_listens_again(
    migrated_database: MigratedDatabase, worker_runs: StartWorker
) -> None:
    db = migrated_database
    run = worker_runs(db.url, "--notify", "--interval=0.5")
    run.wait_ready()
    wait_until(lambda: listening_sessions(db.dsn) == 1, 60, "the worker's LISTEN")
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND query LIKE 'LISTEN %'"
        )
    (task_id,) = enqueue(db.url, "noop")
    wait_until(lambda: task_rows(db.dsn)[task_id]["status"] == "SUCCESSFUL", 120, "the task to run")
    wait_until(lambda: listening_sessions(db.dsn) == 1, 60, "the worker's LISTEN again")
    assert "lost the LISTEN connection" in run.log()
    run.check_running()


def test_sigterm_ends_a_notify_workers_idle_wait_cleanly(
    migrated_database: MigratedDatabase, worker_runs: StartWorker
) -> None:
    db = migrated_database
    run = worker_runs(db.url, "--notify", "--interval=3600", "--shutdown-timeout=600")
    run.wait_ready()
    wait_until(lambda: listening_sessions(db.dsn) == 1, 60, "the worker's LISTEN")
    run.signal(signal.SIGTERM)
    assert run.wait(300) == 0  # neither the hour's wait nor the shutdown timeout: the idle wait ends at once
    assert "interrupting" not in run.log()
