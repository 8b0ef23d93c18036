"""Retries on the same row, and `--threads`, on a real PostgreSQL with real worker processes.

A task that fails twice and then succeeds under `max_attempts=3` is one row, SUCCESSFUL after 3 attempts, each
claimed no earlier than the `run_after` its failure wrote, and never seen FAILED on the way; with
`max_attempts=2` it ends FAILED after 2. A time-limit kill retries only if the task opts in. A worker stopped
while a task waits out its backoff leaves it READY with that `run_after`, which the operator's probe counts as
not yet ready until it passes. With `--threads 8` one process runs 8 sleeping tasks at once and a SIGTERM lets
all of them finish.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from devdb.demo_project import MigratedDatabase, enqueue, shell_json, task_rows, wait_until
from taskpool_operator import cli
from taskpool_operator.probe.depth import ProbeTarget
from taskpool_operator.probe.sql import TASK_TABLE
from tests.integration.test_worker_runtime import scrape, value
from tests.support.django_db import WorkerRun

pytestmark = pytest.mark.integration

StartWorker = Callable[..., WorkerRun]
POD = "retries-workers-7d9f8c6b5d-r3t2y"


def watch_row(dsn: str, task_id: str, done: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    """Every distinct state (status, attempts, run_after, started_at) the row passes through until `done`."""
    seen: list[dict[str, Any]] = []

    def poll() -> bool:
        row = task_rows(dsn)[task_id]
        state = {key: row[key] for key in ("status", "run_after", "started_at", "exception_class_path")}
        state["attempts"] = len(row["worker_ids"])
        if not seen or seen[-1] != state:
            seen.append(state)
        return done(row)

    wait_until(poll, 60, f"task {task_id} to finish", interval=0.02)
    return seen


def test_a_task_failing_twice_succeeds_on_its_third_attempt_in_the_same_row(
    migrated_database: MigratedDatabase, worker_runs: StartWorker
) -> None:
    db = migrated_database
    # `fails_first` declares @task(max_attempts=3, retry_backoff=1.0, retry_on=(NotYetError,)).
    (task_id,) = enqueue(db.url, "fails_first", failures=2)
    run = worker_runs(db.url, "--interval=0.05", env={"POD_NAME": POD})
    run.wait_ready()
    states = watch_row(db.dsn, task_id, lambda row: row["status"] in {"SUCCESSFUL", "FAILED"})

    rows = task_rows(db.dsn)
    assert list(rows) == [task_id]
    row = rows[task_id]
    assert row["status"] == "SUCCESSFUL"
    assert len(row["worker_ids"]) == 3
    assert row["return_value"]["attempt"] == 3  # TaskContext.attempt
    assert "FAILED" not in {state["status"] for state in states}
    # Each retry: READY with the attempt's error and a run_after, then claimed no earlier than that.
    retries = [s for s in states if s["status"] == "READY" and s["attempts"] in (1, 2)]
    assert [s["attempts"] for s in retries] == [1, 2]
    assert all(s["exception_class_path"] == "taskpool_demo.tasks.NotYetError" for s in retries)
    for retry in retries:
        claim = next(s for s in states if s["attempts"] == retry["attempts"] + 1)
        assert claim["started_at"] >= retry["run_after"]

    # Queue wait of each attempt: from enqueue for the first, from the retry's run_after for the others.
    starts = [retries[0]["started_at"], retries[1]["started_at"], row["started_at"]]
    ready_at = [row["enqueued_at"], retries[0]["run_after"], retries[1]["run_after"]]
    waits = sum((start - ready).total_seconds() for start, ready in zip(starts, ready_at, strict=True))

    samples = scrape(run)
    path = "taskpool_demo.tasks.fails_first"
    assert value(samples, "taskpool_worker_task_queue_wait_seconds_sum", task=path) == pytest.approx(
        waits, abs=0.01
    )
    assert value(samples, "taskpool_worker_task_retries_total", task=path, outcome="retried") == 2
    assert value(samples, "taskpool_worker_task_retries_total", task=path, outcome="exhausted") == 0
    assert value(samples, "taskpool_worker_tasks_finished_total", task=path, outcome="retried") == 2
    assert value(samples, "taskpool_worker_tasks_finished_total", task=path, outcome="successful") == 1


def test_a_task_out_of_attempts_is_failed_with_its_last_error(
    migrated_database: MigratedDatabase, worker_runs: StartWorker
) -> None:
    db = migrated_database
    (task_id,) = enqueue(db.url, "flaky", failure_rate=1.0)
    policy = json.dumps({"taskpool_demo.tasks.flaky": {"max_attempts": 2, "retry_backoff": 0.2}})
    run = worker_runs(db.url, "--interval=0.05", env={"POD_NAME": POD, "TASKPOOL_DEMO_RETRIES": policy})
    run.wait_ready()
    states = watch_row(db.dsn, task_id, lambda row: row["status"] == "FAILED")

    row = task_rows(db.dsn)[task_id]
    assert len(row["worker_ids"]) == 2
    assert row["exception_class_path"] == "taskpool_demo.tasks.FlakyTaskError"
    assert [s["status"] for s in states if s["status"] == "FAILED"] == ["FAILED"]  # only at the end
    samples = scrape(run)
    path = "taskpool_demo.tasks.flaky"
    assert value(samples, "taskpool_worker_task_retries_total", task=path, outcome="retried") == 1
    assert value(samples, "taskpool_worker_task_retries_total", task=path, outcome="exhausted") == 1
    assert value(samples, "taskpool_worker_tasks_finished_total", task=path, outcome="failed") == 1


def test_a_task_without_a_policy_fails_once_as_before(
    migrated_database: MigratedDatabase, worker_runs: StartWorker
) -> None:
    db = migrated_database
    (task_id,) = enqueue(db.url, "flaky", failure_rate=1.0)
    run = worker_runs(db.url, "--interval=0.05", env={"POD_NAME": POD})
    run.wait_ready()
    row = wait_until(lambda: (r := task_rows(db.dsn)[task_id])["status"] == "FAILED" and r, 60, "failure")
    assert len(row["worker_ids"]) == 1
    samples = scrape(run)
    assert value(samples, "taskpool_worker_task_retries_total") == 0


@pytest.mark.parametrize("opt_in", [False, True])
def test_a_time_limit_kill_retries_only_when_the_task_opts_in(
    migrated_database: MigratedDatabase, worker_runs: StartWorker, opt_in: bool
) -> None:
    db = migrated_database
    (task_id,) = enqueue(db.url, "slow", duration=60)
    path = "taskpool_demo.tasks.slow"
    env = {
        "POD_NAME": POD,
        "TASKPOOL_DEMO_TIME_LIMITS": json.dumps({path: {"time_limit": 1}}),
        "TASKPOOL_DEMO_RETRIES": json.dumps(
            {path: {"max_attempts": 2, "retry_backoff": 0.2, "retry_interrupted": opt_in}}
        ),
    }
    run = worker_runs(db.url, "--interval=0.05", env=env)
    run.wait_ready()
    states = watch_row(db.dsn, task_id, lambda row: row["status"] == "FAILED")

    row = task_rows(db.dsn)[task_id]
    assert row["exception_class_path"] == "django_taskpool.exceptions.TimeLimitExceeded"
    assert len(row["worker_ids"]) == (2 if opt_in else 1)
    # The restarted process claimed the retry under its new id.
    assert row["worker_ids"][-1] == (f"{POD}-0.1" if opt_in else f"{POD}-0")
    assert (("READY", 1) in {(s["status"], s["attempts"]) for s in states}) == opt_in
    samples = scrape(run)
    assert value(samples, "taskpool_worker_task_retries_total", task=path, outcome="retried") == int(opt_in)
    assert value(samples, "taskpool_worker_task_retries_total", task=path, outcome="exhausted") == int(opt_in)


def test_sigterm_during_a_backoff_wait_leaves_the_row_ready_with_its_run_after(
    migrated_database: MigratedDatabase, worker_runs: StartWorker
) -> None:
    db = migrated_database
    (task_id,) = enqueue(db.url, "flaky", failure_rate=1.0)
    policy = json.dumps({"taskpool_demo.tasks.flaky": {"max_attempts": 3, "retry_backoff": 600}})
    run = worker_runs(db.url, "--interval=0.05", env={"POD_NAME": POD, "TASKPOOL_DEMO_RETRIES": policy})
    run.wait_ready()
    waiting = wait_until(
        lambda: (r := task_rows(db.dsn)[task_id])["status"] == "READY" and r["worker_ids"] and r,
        60,
        "the first attempt to fail and wait for its retry",
    )
    run.signal(signal.SIGTERM)
    assert run.wait() == 0
    row = task_rows(db.dsn)[task_id]
    assert row["status"] == "READY"
    assert row["run_after"] == waiting["run_after"]
    assert row["run_after"] > row["started_at"]
    assert len(row["worker_ids"]) == 1

    # The operator's probe counts the scheduled retry as not yet ready (its run_after is in the future)...
    target = {"pool": ProbeTarget(queues=("default",))}
    depth = asyncio.run(cli.probe_once(db.dsn, target))["pool"]
    assert (depth.ready, depth.running, depth.oldest_ready_age_seconds) == (0, 0, 0.0)
    # ...and once its backoff has passed, as ready since its run_after (not since it was first enqueued).
    with psycopg.connect(db.dsn) as conn:
        conn.execute(
            f"UPDATE {TASK_TABLE} SET run_after = now() - interval '10 seconds',"
            " enqueued_at = now() - interval '1 hour' WHERE id = %s",
            (task_id,),
        )
    depth = asyncio.run(cli.probe_once(db.dsn, target))["pool"]
    assert depth.ready == 1
    assert 10 <= depth.oldest_ready_age_seconds < 3600


def test_eight_threads_run_eight_io_bound_tasks_at_once_and_finish_them_on_sigterm(
    migrated_database: MigratedDatabase, worker_runs: StartWorker
) -> None:
    db = migrated_database
    ids = enqueue(db.url, "slow", count=8, duration=4)
    run = worker_runs(db.url, "--interval=0.05", "--threads=8", env={"POD_NAME": POD})
    run.wait_ready(processes=8)  # /healthz lists every loop: 8 threads of one process
    health = run.health()
    assert len({entry["pid"] for entry in health["processes"]}) == 1

    running = wait_until(
        lambda: (
            len(r := [row for row in task_rows(db.dsn).values() if row["status"] == "RUNNING"]) == 8 and r
        ),
        60,
        "8 tasks running at once",
    )
    assert {row["worker_ids"][-1] for row in running} == {f"{POD}-0_{thread}" for thread in range(8)}
    samples = scrape(run)
    polled = {labels["process"] for labels, _ in samples["taskpool_worker_last_poll_timestamp_seconds"]}
    assert polled == {f"0_{thread}" for thread in range(8)}  # one series per thread
    assert value(samples, "taskpool_worker_tasks_in_progress") == 8

    run.signal(signal.SIGTERM)
    assert run.wait() == 0
    rows = task_rows(db.dsn)
    assert {rows[i]["status"] for i in ids} == {"SUCCESSFUL"}


def test_a_killed_process_with_threads_has_every_threads_task_resolved_and_restarts_under_new_ids(
    migrated_database: MigratedDatabase, worker_runs: StartWorker
) -> None:
    db = migrated_database
    ids = enqueue(db.url, "slow", count=4, duration=60)
    run = worker_runs(db.url, "--interval=0.05", "--threads=4", env={"POD_NAME": POD})
    run.wait_ready(processes=4)
    wait_until(
        lambda: {row["status"] for row in task_rows(db.dsn).values()} == {"RUNNING"}, 60, "4 running tasks"
    )
    (pid,) = {entry["pid"] for entry in run.health()["processes"]}
    os.kill(pid, signal.SIGKILL)

    def all_failed() -> dict[str, dict[str, Any]] | None:
        rows = task_rows(db.dsn)
        return rows if all(row["status"] == "FAILED" for row in rows.values()) else None

    rows = wait_until(all_failed, 60, "every thread's task to be resolved")
    assert set(rows) == set(ids)
    assert {row["exception_class_path"] for row in rows.values()} == {"django_taskpool.exceptions.WorkerLost"}
    restarted = {f"{POD}-0.1_{thread}" for thread in range(4)}
    wait_until(
        lambda: {e["worker_id"] for e in run.health()["processes"] if e["alive"]} == restarted,
        60,
        "the restarted process's threads",
    )


def test_threads_cut_off_at_the_shutdown_timeout_leave_nothing_running(
    migrated_database: MigratedDatabase, worker_runs: StartWorker
) -> None:
    """A thread blocked in a call (here a 60 s sleep) cannot be interrupted: 5 s after the cut-off the
    supervisor kills the process and resolves its tasks as a dead process's (`--on-worker-lost`)."""
    db = migrated_database
    ids = enqueue(db.url, "slow", count=2, duration=60)
    run = worker_runs(db.url, "--interval=0.05", "--threads=2", "--shutdown-timeout=1", env={"POD_NAME": POD})
    run.wait_ready(processes=2)
    wait_until(
        lambda: {row["status"] for row in task_rows(db.dsn).values()} == {"RUNNING"}, 60, "2 running tasks"
    )
    run.signal(signal.SIGTERM)
    assert run.wait() == 1  # tasks were cut off
    rows = task_rows(db.dsn)
    assert {rows[i]["status"] for i in ids} == {"FAILED"}
    assert {rows[i]["exception_class_path"] for i in ids} == {"django_taskpool.exceptions.WorkerLost"}


def test_a_hard_time_limit_in_one_thread_costs_its_process_and_the_sibling_task_is_lost(
    migrated_database: MigratedDatabase, worker_runs: StartWorker
) -> None:
    db = migrated_database
    (limited,) = enqueue(db.url, "slow", duration=60)
    (sibling,) = enqueue(db.url, "report", duration=60)
    limits = json.dumps({"taskpool_demo.tasks.slow": {"time_limit": 1}})
    run = worker_runs(
        db.url,
        "--interval=0.05",
        "--threads=2",
        "--queue-name=*",
        env={"POD_NAME": POD, "TASKPOOL_DEMO_TIME_LIMITS": limits},
    )
    run.wait_ready(processes=2)

    def both_failed() -> dict[str, dict[str, Any]] | None:
        rows = task_rows(db.dsn)
        return rows if {rows[limited]["status"], rows[sibling]["status"]} == {"FAILED"} else None

    rows = wait_until(both_failed, 60, "both tasks to be resolved")
    assert rows[limited]["exception_class_path"] == "django_taskpool.exceptions.TimeLimitExceeded"
    assert rows[sibling]["exception_class_path"] == "django_taskpool.exceptions.WorkerLost"
    assert "sibling thread's task ran past its hard time limit" in rows[sibling]["traceback"]
    samples = scrape(run)
    assert value(samples, "taskpool_worker_time_limit_kills_total", task="taskpool_demo.tasks.slow") == 1
    assert value(samples, "taskpool_worker_tasks_lost_total", task="taskpool_demo.tasks.build_report") == 1


def test_the_backend_checks_declared_retry_options_and_keeps_them(
    migrated_database: MigratedDatabase,
) -> None:
    script = """
import json
from django.tasks import task
from django.tasks.exceptions import InvalidTask
from taskpool_demo.tasks import fails_first

def call():
    pass

errors = []
for options in ({"max_attempts": 0}, {"retry_on": ValueError}, {"retry_backoff": -1}):
    try:
        task(**options)(call)
    except InvalidTask as exc:
        errors.append(str(exc))
moved = fails_first.using(priority=5)
print(json.dumps({"errors": errors, "options": [moved.max_attempts, moved.retry_backoff]}))
"""
    result = shell_json(migrated_database.url, script)
    assert "max_attempts must be a whole number" in result["errors"][0]
    assert "retry_on must be a non-empty tuple of exception classes" in result["errors"][1]
    assert "retry_backoff must be a number of seconds" in result["errors"][2]
    assert len(result["errors"]) == 3
    assert result["options"] == [3, 1.0]  # using() keeps the options
