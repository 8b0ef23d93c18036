"""Stopping `taskpool_worker`: SIGTERM lets the running task finish; the deadline stores it as FAILED."""

from __future__ import annotations

import signal
from collections.abc import Callable

import pytest

from devdb.demo_project import MigratedDatabase, enqueue, task_rows, wait_until
from tests.support.django_db import WorkerRun

pytestmark = pytest.mark.integration

StartWorker = Callable[..., WorkerRun]
REPETITIONS = 20


def wait_for_running_task(run: WorkerRun, dsn: str) -> str:
    def running() -> str | None:
        run.check_running()
        ids = [i for i, row in task_rows(dsn).items() if row["status"] == "RUNNING"]
        return ids[0] if len(ids) == 1 else None

    return str(wait_until(running, 60, "a task to start"))


def test_sigterm_mid_task_lets_it_finish_and_exits_0(
    migrated_database: MigratedDatabase, worker_runs: StartWorker
) -> None:
    """Repeated: every run claims one task, is told to stop while it runs, finishes it and exits 0."""
    db = migrated_database
    ids = enqueue(db.url, "slow", count=REPETITIONS, duration=0.4)
    for repetition in range(REPETITIONS):
        run = worker_runs(db.url, "--interval=0.05")
        task_id = wait_for_running_task(run, db.dsn)
        run.signal(signal.SIGTERM)
        assert run.wait() == 0, run.log()
        rows = task_rows(db.dsn)
        assert rows[task_id]["status"] == "SUCCESSFUL", (repetition, rows[task_id])
        assert not [i for i, row in rows.items() if row["status"] == "RUNNING"]
        # It stopped claiming: one task per run, the others wait for the next worker.
        assert sum(row["status"] == "SUCCESSFUL" for row in rows.values()) == repetition + 1
    assert {row["status"] for row in task_rows(db.dsn).values()} == {"SUCCESSFUL"}
    assert len(ids) == REPETITIONS


def test_sigint_is_a_graceful_stop_too(migrated_database: MigratedDatabase, worker_runs: StartWorker) -> None:
    db = migrated_database
    enqueue(db.url, "slow", duration=0.5)
    run = worker_runs(db.url, "--interval=0.05", "--concurrency=2")
    task_id = wait_for_running_task(run, db.dsn)
    run.signal(signal.SIGINT)
    assert run.wait() == 0, run.log()
    assert task_rows(db.dsn)[task_id]["status"] == "SUCCESSFUL"


def test_idle_worker_exits_at_once(migrated_database: MigratedDatabase, worker_runs: StartWorker) -> None:
    run = worker_runs(migrated_database.url, "--interval=30", "--concurrency=2")
    run.wait_ready(processes=2)
    run.signal(signal.SIGTERM)
    # An idle process sleeping --interval=30 must not finish its sleep first.
    assert run.wait(timeout=15) == 0, run.log()


def test_task_cut_off_at_the_shutdown_timeout_is_stored_failed(
    migrated_database: MigratedDatabase, worker_runs: StartWorker
) -> None:
    """Decided behaviour: at --shutdown-timeout the process gets a second SIGTERM, django-tasks-db raises
    SystemExit inside the task and stores it FAILED; never left RUNNING. The worker exits 1."""
    db = migrated_database
    enqueue(db.url, "slow", duration=60)
    run = worker_runs(db.url, "--shutdown-timeout=1")
    task_id = wait_for_running_task(run, db.dsn)
    run.signal(signal.SIGTERM)
    assert run.wait(timeout=30) == 1, run.log()
    row = task_rows(db.dsn)[task_id]
    assert row["status"] == "FAILED"
    assert row["exception_class_path"] == "builtins.SystemExit"
    assert "shutdown timeout (1s) reached" in run.log()
    assert "Traceback" not in run.log().split("shutdown timeout")[0]


def test_second_signal_interrupts_at_once(
    migrated_database: MigratedDatabase, worker_runs: StartWorker
) -> None:
    db = migrated_database
    enqueue(db.url, "slow", duration=60)
    run = worker_runs(db.url, "--shutdown-timeout=600")
    task_id = wait_for_running_task(run, db.dsn)
    run.signal(signal.SIGTERM)
    wait_until(lambda: "received Terminated: workers finish" in run.log(), 10, "the first signal")
    run.signal(signal.SIGTERM)
    assert run.wait(timeout=30) == 1, run.log()
    assert task_rows(db.dsn)[task_id]["status"] == "FAILED"
