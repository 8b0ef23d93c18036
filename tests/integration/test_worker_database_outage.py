"""A database outage while tasks run, on a real PostgreSQL server that is stopped and started again.

The worker keeps a finished task's result in memory and stores it once the database is back (even past the
task's hard time limit: the task is over, only its result is still being written), and its idle loops
wait for the database instead of exiting: no process restarts, every task runs once and succeeds. A stop
(SIGTERM) meanwhile keeps the result waiting until the shutdown cut-off, then leaves the row RUNNING.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import psycopg
import pytest
from psycopg.types.json import Jsonb

from devdb import postgres
from devdb.demo_project import MigratedDatabase, enqueue, task_rows, wait_until
from tests.integration.test_worker_runtime import scrape, value
from tests.support.django_db import WorkerRun

pytestmark = pytest.mark.integration

StartWorker = Callable[..., WorkerRun]
POD = "outage-workers-7d9f8c6b5d-k9k9k"
TASK_S = 3.0
# Longer than the rest of the tasks and than their hard time limit: they finish, and pass the limit,
# while the database is down.
OUTAGE_S = TASK_S + 5.0
TIME_LIMIT_S = 5


@pytest.mark.parametrize("parallelism", ["--concurrency=2", "--threads=2"])
def test_database_outage_loses_no_task_and_restarts_no_process(
    migrated_database: MigratedDatabase, postgres_admin_dsn: str, worker_runs: StartWorker, parallelism: str
) -> None:
    db = migrated_database
    run = worker_runs(
        db.url, parallelism, "--interval=0.1", f"--time-limit={TIME_LIMIT_S}", env={"POD_NAME": POD}
    )
    run.wait_ready(processes=2)  # two loops: processes, or threads of one process
    caught = enqueue(db.url, "slow", count=2, duration=TASK_S)
    wait_until(
        lambda: all(row["status"] == "RUNNING" for row in task_rows(db.dsn).values()),
        60,
        "both tasks running",
    )
    workers = {task_rows(db.dsn)[i]["worker_ids"][-1] for i in caught}

    with postgres.stopped_server(postgres_admin_dsn):
        time.sleep(OUTAGE_S)  # the outage itself, not a check of speed
        run.check_running()

    after = enqueue(db.url, "slow", count=4, duration=0.2)

    def finished() -> dict[str, dict[str, object]] | None:
        rows = task_rows(db.dsn)
        return rows if all(r["status"] in ("SUCCESSFUL", "FAILED") for r in rows.values()) else None

    rows = wait_until(finished, 120, "every task finished after the outage")
    log = run.log()
    for task_id in caught + after:
        row = rows[task_id]
        assert (row["status"], row["exception_class_path"]) == ("SUCCESSFUL", ""), (row, log)
        assert len(row["worker_ids"]) == 1, row  # ran once
    assert rows[caught[0]]["return_value"] == TASK_S
    # The tasks caught by the outage finished where they started; their results were kept, not lost.
    assert {rows[i]["worker_ids"][-1] for i in caught} == workers
    assert log.count("keeping the result of task") == 2, log
    assert "lost the database" not in log
    samples = scrape(run)
    assert value(samples, "taskpool_worker_process_restarts_total") == 0
    assert value(samples, "taskpool_worker_tasks_lost_total") == 0
    assert value(samples, "taskpool_worker_time_limit_kills_total") == 0
    # The claims after the outage came from the same worker ids: no process was replaced.
    assert {rows[i]["worker_ids"][-1] for i in after} <= {f"{POD}-0", f"{POD}-1", f"{POD}-0_0", f"{POD}-0_1"}


def test_a_claim_committed_as_the_database_went_away_runs_once_it_is_back(
    migrated_database: MigratedDatabase, postgres_admin_dsn: str, worker_runs: StartWorker
) -> None:
    db = migrated_database
    run = worker_runs(db.url, "--interval=0.1", env={"POD_NAME": POD})
    run.wait_ready()
    # What a claim whose COMMIT reached the server but whose reply the outage cut off leaves: a row RUNNING
    # under the worker's id, which the worker never started. (Queued where the worker does not claim, so
    # that only this row can be it.)
    (task_id,) = enqueue(db.url, "slow", count=1, duration=0.2, queue="emails")
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        conn.execute(
            "UPDATE django_tasks_database_dbtaskresult SET status = 'RUNNING', started_at = now(),"
            " worker_ids = %s WHERE id = %s",
            (Jsonb([f"{POD}-0"]), task_id),
        )

    with postgres.stopped_server(postgres_admin_dsn):
        time.sleep(2)  # the idle loop polls every 0.1 s: it meets the outage while claiming

    row = wait_until(
        lambda: (r := task_rows(db.dsn)[task_id])["status"] != "RUNNING" and r, 60, "the cut-off claim run"
    )
    assert (row["status"], row["return_value"], row["worker_ids"]) == ("SUCCESSFUL", 0.2, [f"{POD}-0"])
    assert "claimed as the database went away: running it now" in run.log()


def test_sigterm_during_an_outage_keeps_storing_the_result_and_a_database_back_in_time_gets_it(
    migrated_database: MigratedDatabase, postgres_admin_dsn: str, worker_runs: StartWorker
) -> None:
    """The pod is deleted while a finished task's result waits for the database: the wait goes on until the
    shutdown cut-off, and the database back before it gets the result (exit 0)."""
    db = migrated_database
    # A cut-off far beyond the server's restart: the result is stored, however loaded the machine.
    run = worker_runs(db.url, "--interval=0.1", "--shutdown-timeout=300", env={"POD_NAME": POD})
    run.wait_ready()
    (task_id,) = enqueue(db.url, "slow", count=1, duration=TASK_S)
    wait_until(lambda: task_rows(db.dsn)[task_id]["status"] == "RUNNING", 60, "the task running")
    with postgres.stopped_server(postgres_admin_dsn):
        wait_until(lambda: "keeping the result of task" in run.log(), 60, "the task to finish meanwhile")
        run.signal(signal.SIGTERM)
        wait_until(lambda: "finishing the current task, then exiting" in run.log(), 60, "the worker's stop")
        run.check_running()
    assert run.wait() == 0, run.log()
    row = task_rows(db.dsn)[task_id]
    assert (row["status"], row["return_value"], row["worker_ids"]) == ("SUCCESSFUL", TASK_S, [f"{POD}-0"])
    assert f"stored the result of task id={task_id}" in run.log()


@pytest.mark.parametrize("parallelism", ["--concurrency=1", "--threads=2"])
def test_a_result_still_waiting_for_the_database_at_the_shutdown_cut_off_leaves_the_row_running(
    migrated_database: MigratedDatabase, postgres_admin_dsn: str, worker_runs: StartWorker, parallelism: str
) -> None:
    """At the cut-off the worker gives the write up: the row stays RUNNING under its worker id (not FAILED
    with a SystemExit the task never raised) for the operator's orphan recovery, and one line says so."""
    db = migrated_database
    run = worker_runs(db.url, parallelism, "--interval=0.1", "--shutdown-timeout=2", env={"POD_NAME": POD})
    run.wait_ready(processes=1 if parallelism == "--concurrency=1" else 2)
    (task_id,) = enqueue(db.url, "slow", count=1, duration=1)
    running = wait_until(
        lambda: (r := task_rows(db.dsn)[task_id])["status"] == "RUNNING" and r, 60, "the task running"
    )
    with postgres.stopped_server(postgres_admin_dsn):
        # SIGTERM once the task is over: the cut-off then meets the result's write, not the task.
        wait_until(lambda: "keeping the result of task" in run.log(), 60, "the task to finish meanwhile")
        run.signal(signal.SIGTERM)
        assert run.wait() == 1, run.log()
    log = run.log()
    row = task_rows(db.dsn)[task_id]
    assert (row["status"], row["worker_ids"], row["exception_class_path"]) == (
        "RUNNING",
        running["worker_ids"],
        "",
    )
    line = (
        f"the result of task id={task_id} is not stored and its row stays RUNNING under worker id "
        f"{running['worker_ids'][-1]}"
    )
    assert log.count(line) == 1, log
    # A dead process's row: its supervisor tried to resolve it, then said who will.
    assert "worker process 0 stopped (exit code 1)" in log
    assert "cannot resolve the tasks of dead worker id(s)" in log
    assert "or the operator's orphan recovery once the pod is gone" in log
    assert "Traceback" not in log
    assert "did not exit: killing it" not in log  # it gave up at the cut-off, no SIGKILL needed


@pytest.mark.parametrize("parallelism", ["--concurrency=2", "--threads=2"])
def test_sigterm_while_idle_loops_wait_for_the_database_exits_0(
    migrated_database: MigratedDatabase, postgres_admin_dsn: str, worker_runs: StartWorker, parallelism: str
) -> None:
    run = worker_runs(migrated_database.url, parallelism, "--interval=0.1")
    run.wait_ready(processes=2)
    with postgres.stopped_server(postgres_admin_dsn):
        wait_until(lambda: "before claiming again" in run.log(), 60, "the loops to wait for the database")
        run.signal(signal.SIGTERM)
        assert run.wait() == 0, run.log()
    assert "did not exit: killing it" not in run.log()
