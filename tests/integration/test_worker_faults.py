"""Dead worker processes and time limits, on a real PostgreSQL with real worker processes.

A child process SIGKILLed mid-task has its task resolved by its supervisor (FAILED `WorkerLost`, or READY and
then run again with `--on-worker-lost=requeue`) and restarts under a new worker id; a container restart
(supervisor and children SIGKILLed, started again with the same POD_NAME) resolves the earlier rows at
start-up; a task over its hard limit is killed and stored FAILED `TimeLimitExceeded` while the other
processes keep working; a task over its soft limit can catch it and succeed.

How fast a killed process's task is resolved is measured here and printed (run with -s), never asserted.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from devdb.demo_project import MigratedDatabase, enqueue, shell_json, task_rows, wait_until
from taskpool_operator.probe.sql import TASK_TABLE
from tests.integration.test_worker_runtime import scrape, value
from tests.support.django_db import WorkerRun

pytestmark = pytest.mark.integration

StartWorker = Callable[..., WorkerRun]
POD = "faults-workers-7d9f8c6b5d-k9k9k"
WORKER_LOST = "django_taskpool.exceptions.WorkerLost"
KILLS = 20


def running_rows(dsn: str) -> dict[str, dict[str, Any]]:
    return {i: row for i, row in task_rows(dsn).items() if row["status"] == "RUNNING"}


def pid_of(run: WorkerRun, worker: str) -> int | None:
    """The pid of the live process with this worker id, from /healthz."""
    for process in run.health().get("processes", []):
        if process["worker_id"] == worker and process["alive"]:
            return int(process["pid"])
    return None


@pytest.mark.parametrize("action", ["fail", "requeue"])
def test_child_killed_mid_task_twenty_times(
    migrated_database: MigratedDatabase, worker_runs: StartWorker, action: str
) -> None:
    db = migrated_database
    run = worker_runs(
        db.url, "--concurrency=4", "--interval=0.1", f"--on-worker-lost={action}", env={"POD_NAME": POD}
    )
    run.wait_ready(processes=4)
    ids = enqueue(db.url, "slow", count=KILLS, duration=2)
    killed: dict[str, str] = {}  # task id -> the worker id that was running it when killed
    resolved_after: list[float] = []

    while len(killed) < KILLS:
        # A task running for the first time, on a process that /healthz shows (pid to kill).
        def victim() -> tuple[str, str, int] | None:
            for task_id, row in running_rows(db.dsn).items():
                worker = row["worker_ids"][-1]
                if task_id not in killed and (pid := pid_of(run, worker)) is not None:
                    return task_id, worker, pid
            return None

        task_id, worker, pid = wait_until(victim, 120, f"a task to kill (killed {len(killed)} so far)")
        os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()
        killed[task_id] = worker

        def resolved(task_id: str = task_id, worker: str = worker) -> bool:
            row = task_rows(db.dsn)[task_id]
            return not (row["status"] == "RUNNING" and row["worker_ids"][-1] == worker)

        wait_until(resolved, 30, f"task {task_id} of the killed {worker} to be resolved", interval=0.01)
        resolved_after.append(time.monotonic() - killed_at)

    if action == "requeue":  # each killed task runs again, to completion
        wait_until(
            lambda: all(r["status"] == "SUCCESSFUL" for i, r in task_rows(db.dsn).items() if i in ids),
            300,
            "every requeued task to succeed",
        )
    rows = task_rows(db.dsn)
    assert not running_rows(db.dsn)
    for task_id, worker in killed.items():
        row = rows[task_id]
        if action == "fail":
            assert (row["status"], row["exception_class_path"]) == ("FAILED", WORKER_LOST)
            assert worker in row["traceback"]
            assert "killed by SIGKILL" in row["traceback"]
            assert row["worker_ids"] == [worker]
            assert row["return_value"] is None
            assert row["finished_at"] is not None
        else:
            assert row["status"] == "SUCCESSFUL"
            assert row["worker_ids"][0] == worker
            assert row["worker_ids"][-1] != worker
    # Every kill hit a different worker id: a restarted process never reuses its predecessor's.
    assert len(set(killed.values())) == KILLS
    assert all(worker.startswith(f"{POD}-") for worker in killed.values())
    samples = scrape(run)
    assert value(samples, "taskpool_worker_tasks_lost_total", action=action) == KILLS
    assert value(samples, "taskpool_worker_tasks_lost_total", task="taskpool_demo.tasks.slow") == KILLS
    print(
        f"\n[{action}] {KILLS} kills: resolved after min {min(resolved_after):.3f}s, median "
        f"{statistics.median(resolved_after):.3f}s, max {max(resolved_after):.3f}s"
    )


def test_container_restart_resolves_the_earlier_rows_at_start_up(
    migrated_database: MigratedDatabase, worker_runs: StartWorker
) -> None:
    db = migrated_database
    first = worker_runs(db.url, "--concurrency=2", "--interval=0.1", env={"POD_NAME": POD})
    first.wait_ready(processes=2)
    ids = enqueue(db.url, "slow", count=2, duration=120)
    wait_until(lambda: len(running_rows(db.dsn)) == 2, 60, "both tasks running")
    children = [p["pid"] for p in first.health()["processes"]]
    # The container is killed: every process in it at once, nothing gets to clean up.
    for pid in [first.process.pid, *children]:
        os.kill(pid, signal.SIGKILL)
    first.wait()
    assert {row["status"] for row in task_rows(db.dsn).values()} == {"RUNNING"}
    other_pod = enqueue(db.url, "slow", count=1, duration=120)[0]

    second = worker_runs(db.url, "--concurrency=2", "--interval=0.1", env={"POD_NAME": POD})
    second.wait_ready(processes=2)
    rows = task_rows(db.dsn)
    for task_id in ids:
        assert (rows[task_id]["status"], rows[task_id]["exception_class_path"]) == ("FAILED", WORKER_LOST)
        assert f"the container of pod {POD} restarted" in rows[task_id]["traceback"]
    # The new container works: it claimed the task enqueued in between.
    assert rows[other_pod]["status"] == "RUNNING"
    assert rows[other_pod]["worker_ids"][-1] in (f"{POD}-0", f"{POD}-1")


def test_start_up_leaves_other_pods_rows_alone(
    migrated_database: MigratedDatabase, worker_runs: StartWorker
) -> None:
    db = migrated_database
    other = worker_runs(db.url, "--interval=0.1", env={"POD_NAME": "other-workers-7d9f8c6b5d-aaaaa"})
    other.wait_ready()
    (task_id,) = enqueue(db.url, "slow", count=1, duration=120)
    wait_until(lambda: running_rows(db.dsn), 60, "the other pod's task running")
    this = worker_runs(db.url, env={"POD_NAME": POD})
    this.wait_ready()
    assert task_rows(db.dsn)[task_id]["status"] == "RUNNING"


def test_hard_time_limit_kills_the_task_and_frees_the_slot(
    migrated_database: MigratedDatabase, worker_runs: StartWorker
) -> None:
    db = migrated_database
    run = worker_runs(db.url, "--concurrency=2", "--interval=0.1", "--time-limit=2", env={"POD_NAME": POD})
    run.wait_ready(processes=2)
    (hung,) = enqueue(db.url, "slow", count=1, duration=600)
    hung_worker = wait_until(
        lambda: (row := running_rows(db.dsn).get(hung)) and row["worker_ids"][-1], 60, "the hung task running"
    )
    # The other process keeps working while the hung task runs into its limit.
    steady = enqueue(db.url, "slow", count=4, duration=0.5)
    row = wait_until(
        lambda: (r := task_rows(db.dsn)[hung])["status"] != "RUNNING" and r,
        60,
        "the hard limit to be enforced",
    )
    assert (row["status"], row["exception_class_path"]) == (
        "FAILED",
        "django_taskpool.exceptions.TimeLimitExceeded",
    )
    assert "ran past its hard time limit" in row["traceback"]
    assert row["return_value"] is None

    # The slot is free again: its process restarted under a new id and runs tasks.
    restarted = f"{hung_worker}.1"
    later = enqueue(db.url, "slow", count=6, duration=0.3)
    wait_until(
        lambda: all((r := task_rows(db.dsn))[i]["status"] == "SUCCESSFUL" for i in steady + later) and r,
        120,
        "the other tasks to finish",
    )
    rows = task_rows(db.dsn)
    workers = {rows[i]["worker_ids"][-1] for i in steady + later}
    assert restarted in workers, run.log()
    assert {rows[i]["worker_ids"][-1] for i in steady} - {hung_worker}, "the other process kept working"
    samples = scrape(run)
    assert value(samples, "taskpool_worker_time_limit_kills_total", task="taskpool_demo.tasks.slow") == 1
    # A time-limit kill is not a crash.
    assert value(samples, "taskpool_worker_process_restarts_total") == 0
    assert value(samples, "taskpool_worker_processes") == 2


def test_soft_time_limit_caught_by_the_task_is_a_success(
    migrated_database: MigratedDatabase, worker_runs: StartWorker
) -> None:
    db = migrated_database
    # `bounded` declares @task(time_limit=10, soft_time_limit=1) and catches SoftTimeLimitExceeded.
    (task_id,) = enqueue(db.url, "bounded", count=1, duration=60)
    (unlimited,) = enqueue(db.url, "slow", count=1, duration=1.5)
    run = worker_runs(db.url, "--interval=0.1", env={"POD_NAME": POD})
    run.wait_ready()
    wait_until(
        lambda: all(task_rows(db.dsn)[i]["status"] == "SUCCESSFUL" for i in (task_id, unlimited)),
        60,
        "both tasks to succeed",
    )
    rows = task_rows(db.dsn)
    assert rows[task_id]["return_value"]["stopped_early"] is True
    assert rows[unlimited]["return_value"] == 1.5  # a task without limits runs as before
    samples = scrape(run)
    assert value(samples, "taskpool_worker_soft_time_limits_total", task="taskpool_demo.tasks.bounded") == 1
    assert value(samples, "taskpool_worker_soft_time_limits_total", task="taskpool_demo.tasks.slow") == 0
    assert value(samples, "taskpool_worker_time_limit_kills_total") == 0


def test_soft_limit_from_the_setting_fails_a_task_that_does_not_catch_it(
    migrated_database: MigratedDatabase, worker_runs: StartWorker
) -> None:
    db = migrated_database
    (task_id,) = enqueue(db.url, "slow", count=1, duration=60)
    limits = json.dumps({"taskpool_demo.tasks.slow": {"soft_time_limit": 0.5, "time_limit": 30}})
    run = worker_runs(db.url, "--interval=0.1", env={"POD_NAME": POD, "TASKPOOL_DEMO_TIME_LIMITS": limits})
    run.wait_ready()
    row = wait_until(
        lambda: (r := task_rows(db.dsn)[task_id])["status"] != "RUNNING" and r["status"] != "READY" and r,
        60,
        "the task to end at its soft limit",
    )
    assert (row["status"], row["exception_class_path"]) == (
        "FAILED",
        "django_taskpool.exceptions.SoftTimeLimitExceeded",
    )
    assert "soft time limit of 0.5s" in row["traceback"]


def test_the_backend_checks_declared_limits_and_keeps_them(migrated_database: MigratedDatabase) -> None:
    script = """
import json
from django.tasks import task
from django.tasks.exceptions import InvalidTask
from taskpool_demo.tasks import bounded

def hang():
    pass

errors = []
for limits in ({"time_limit": 5, "soft_time_limit": 5}, {"time_limit": -1}, {"soft_time_limit": "1"}):
    try:
        task(**limits)(hang)
    except InvalidTask as exc:
        errors.append(str(exc))
moved = bounded.using(queue_name="emails", priority=5)
print(json.dumps({
    "errors": errors,
    "class": type(bounded).__name__,
    "limits": [moved.time_limit, moved.soft_time_limit, moved.queue_name],
}))
"""
    result = shell_json(migrated_database.url, script)
    assert len(result["errors"]) == 3
    assert "soft_time_limit (5s) must be below time_limit (5s)" in result["errors"][0]
    assert "time_limit must be a positive number of seconds" in result["errors"][1]
    assert "soft_time_limit must be a positive number of seconds" in result["errors"][2]
    assert result["class"] == "TaskpoolTask"
    assert result["limits"] == [10, 1, "emails"]  # using() keeps the options


def test_start_up_recovery_needs_a_name_known_to_be_unique(
    migrated_database: MigratedDatabase, worker_runs: StartWorker
) -> None:
    """With the hostname fallback two workers on one host would share ids: no start-up recovery then."""
    db = migrated_database
    (task_id,) = enqueue(db.url, "noop", count=1)
    host = socket.gethostname()
    with psycopg.connect(db.dsn, autocommit=True) as conn:  # a row an earlier run on this host left RUNNING
        conn.execute(
            f"UPDATE {TASK_TABLE} SET status = 'RUNNING', started_at = now(),"
            " worker_ids = %s::jsonb WHERE id = %s",
            (json.dumps([f"{host}-0"]), task_id),
        )
    hostname_only = worker_runs(db.url, "--batch")
    assert hostname_only.wait() == 0
    assert task_rows(db.dsn)[task_id]["status"] == "RUNNING"

    named = worker_runs(db.url, "--batch", f"--worker-id={host}")
    assert named.wait() == 0
    row = task_rows(db.dsn)[task_id]
    assert (row["status"], row["exception_class_path"]) == ("FAILED", WORKER_LOST)
