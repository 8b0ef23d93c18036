"""`taskpool_worker` on a real PostgreSQL: queues, results, metrics, health, concurrency and restarts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import psycopg.conninfo
import pytest
from prometheus_client.parser import text_string_to_metric_families
from psycopg import sql

from devdb.demo_project import MigratedDatabase, enqueue, run_manage, task_rows, wait_until
from tests.support.django_db import WorkerRun

pytestmark = pytest.mark.integration

StartWorker = Callable[..., WorkerRun]
POD = "demo-workers-7d9f8c6b5d-x2x4q"


def run_batch(db: MigratedDatabase, *args: str) -> subprocess.CompletedProcess[str]:
    """A worker run that processes what is ready and exits."""
    flags = ("--no-reload", "--batch", "--no-startup-delay", "--metrics-port=0")
    return run_manage(db.url, "taskpool_worker", *flags, *args, check=False, POD_NAME=POD)


def test_tasks_in_several_queues_are_stored_as_db_worker_stores_them(
    migrated_database: MigratedDatabase,
) -> None:
    db = migrated_database
    email = enqueue(db.url, "email")
    report = enqueue(db.url, "report", duration=0.05)
    failing = enqueue(db.url, "flaky", failure_rate=1.0)
    context = enqueue(db.url, "context")

    completed = run_batch(db, "--queue-name=*")

    assert completed.returncode == 0, completed.stderr
    rows = task_rows(db.dsn)
    assert {rows[i]["status"] for i in email + report + context} == {"SUCCESSFUL"}
    assert rows[email[0]]["return_value"] == 1  # one message sent
    assert rows[report[0]]["return_value"]["rows"] > 0
    assert rows[context[0]]["return_value"]["task_id"] == context[0]
    assert rows[context[0]]["return_value"]["worker_ids"] == [f"{POD}-0"]
    failed = rows[failing[0]]
    assert failed["status"] == "FAILED"
    assert failed["exception_class_path"] == "taskpool_demo.tasks.FlakyTaskError"
    assert "failed on purpose" in failed["traceback"]
    assert failed["return_value"] is None
    for row in rows.values():
        assert row["worker_ids"] == [f"{POD}-0"]
        assert row["started_at"] <= row["finished_at"]
    # One line per task, with its id, path, queue, outcome and duration.
    line = next(line for line in completed.stderr.splitlines() if failing[0] in line and "outcome=" in line)
    assert "path=taskpool_demo.tasks.flaky queue=default outcome=failed duration=" in line


def test_queue_selection_and_exclusion(migrated_database: MigratedDatabase) -> None:
    db = migrated_database
    email = enqueue(db.url, "email", count=2)
    report = enqueue(db.url, "report", duration=0.0)
    noop = enqueue(db.url, "noop")

    assert run_batch(db, "--queue-name=emails").returncode == 0
    rows = task_rows(db.dsn)
    assert [rows[i]["status"] for i in email] == ["SUCCESSFUL", "SUCCESSFUL"]
    assert rows[report[0]]["status"] == rows[noop[0]]["status"] == "READY"

    assert run_batch(db, "--queue-name=*", "--exclude-queues=reports").returncode == 0
    rows = task_rows(db.dsn)
    assert rows[noop[0]]["status"] == "SUCCESSFUL"
    assert rows[report[0]]["status"] == "READY"


def test_json_log_lines(migrated_database: MigratedDatabase) -> None:
    db = migrated_database
    ids = enqueue(db.url, "noop", count=2)
    completed = run_batch(db, "--log-format=json")
    assert completed.returncode == 0, completed.stderr
    records = [json.loads(line) for line in completed.stderr.splitlines() if line.startswith("{")]
    per_task = [record for record in records if record.get("task_id")]
    assert sorted(record["task_id"] for record in per_task) == sorted(ids)
    assert {record["outcome"] for record in per_task} == {"successful"}
    assert all(record["queue"] == "default" and record["duration_s"] >= 0 for record in per_task)
    assert all(record["worker_id"] == f"{POD}-0" for record in per_task)


def scrape(run: WorkerRun) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Samples of the worker's /metrics by sample name; the exposition must parse."""
    status, body = run.get("/metrics")
    assert status == 200, body
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def value(samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    return sum(v for sample_labels, v in samples.get(name, []) if labels.items() <= sample_labels.items())


def test_metrics_match_the_workload(migrated_database: MigratedDatabase, worker_runs: StartWorker) -> None:
    db = migrated_database
    ids = (
        enqueue(db.url, "noop", count=5)
        + enqueue(db.url, "email", count=3)
        + enqueue(db.url, "flaky", count=4, failure_rate=1.0)
        + enqueue(db.url, "report", count=2, duration=0.2)
    )
    run = worker_runs(db.url, "--queue-name=*", "--concurrency=2", env={"POD_NAME": POD})
    rows = wait_until(
        lambda: (
            (r := task_rows(db.dsn)) and all(r[i]["status"] in ("SUCCESSFUL", "FAILED") for i in ids) and r
        ),
        120,
        "every task to finish",
    )
    samples = scrape(run)

    expected = Counter((row["task_path"], row["queue_name"], row["status"].lower()) for row in rows.values())
    for (task, queue, outcome), count in expected.items():
        labels = {"task": task, "queue": queue, "backend": "default"}
        assert value(samples, "taskpool_worker_tasks_started_total", **labels) >= count
        assert value(samples, "taskpool_worker_tasks_finished_total", outcome=outcome, **labels) == count
        assert (
            value(samples, "taskpool_worker_task_duration_seconds_count", outcome=outcome, **labels) == count
        )
    assert value(samples, "taskpool_worker_tasks_started_total") == len(ids)
    assert value(samples, "taskpool_worker_tasks_finished_total") == len(ids)
    assert value(samples, "taskpool_worker_task_queue_wait_seconds_count") == len(ids)
    assert value(samples, "taskpool_worker_tasks_finished_total", outcome="failed") == 4
    # The run-time histogram adds up to what the task table says the tasks took.
    stored = sum((row["finished_at"] - row["started_at"]).total_seconds() for row in rows.values())
    assert value(samples, "taskpool_worker_task_duration_seconds_sum") == pytest.approx(stored, abs=1e-3)
    report_sum = value(
        samples, "taskpool_worker_task_duration_seconds_sum", task="taskpool_demo.tasks.build_report"
    )
    assert report_sum >= 0.4
    assert value(samples, "taskpool_worker_tasks_in_progress") == 0
    assert value(samples, "taskpool_worker_processes") == 2
    assert value(samples, "taskpool_worker_process_restarts_total") == 0
    polls = {labels["process"]: v for labels, v in samples["taskpool_worker_last_poll_timestamp_seconds"]}
    assert set(polls) == {"0", "1"}
    ((info_labels, info),) = samples["taskpool_worker_build_info"]
    assert info == 1
    assert set(info_labels) == {"version", "django_version", "django_tasks_db_version"}
    # Bounded labels: paths and queue names, never ids.
    label_values = {v for series in samples.values() for labels, _ in series for v in labels.values()}
    assert not label_values & set(ids)

    status, body = run.get("/readyz")
    assert (status, json.loads(body)["status"]) == (200, "ok")
    run.signal(signal.SIGTERM)
    assert run.wait() == 0


def running_rows(dsn: str) -> dict[str, dict[str, object]]:
    return {i: row for i, row in task_rows(dsn).items() if row["status"] == "RUNNING"}


def test_concurrency_claims_in_parallel_and_restarts_a_killed_process(
    migrated_database: MigratedDatabase, worker_runs: StartWorker
) -> None:
    db = migrated_database
    run = worker_runs(db.url, "--concurrency=3", "--interval=0.1", env={"POD_NAME": POD})
    run.wait_ready(processes=3)
    enqueue(db.url, "slow", count=6, duration=1.5)

    running = wait_until(lambda: len(r := running_rows(db.dsn)) == 3 and r, 60, "three tasks running at once")
    assert sorted(row["worker_ids"][-1] for row in running.values()) == [f"{POD}-{i}" for i in range(3)]

    def all_busy() -> dict[str, Any] | None:
        health = run.health()
        return health if all(p["busy"] for p in health["processes"]) else None

    health = wait_until(all_busy, 10, "three busy processes")
    assert health["http_status"] == 200
    assert [p["alive"] for p in health["processes"]] == [True, True, True]

    victim = health["processes"][1]
    victim_task = next(i for i, row in running.items() if row["worker_ids"][-1] == victim["worker_id"])
    os.kill(victim["pid"], signal.SIGKILL)

    # Reaped at once; its live gauges go with it, so in-progress never counts a dead process's task.
    samples = wait_until(
        lambda: value(s := scrape(run), "taskpool_worker_processes") == 2 and s, 10, "the kill to be noticed"
    )
    assert value(samples, "taskpool_worker_tasks_in_progress") <= 2

    def restarted() -> bool:
        samples = scrape(run)
        process = run.health()["processes"][1]
        return (
            value(samples, "taskpool_worker_process_restarts_total") == 1
            and value(samples, "taskpool_worker_processes") == 3
            and process["alive"]
            and process["pid"] != victim["pid"]
        )

    wait_until(restarted, 60, "the killed process to be restarted")
    # The supervisor resolved the killed process's task (tests/integration/test_worker_faults.py has more).
    assert task_rows(db.dsn)[victim_task]["status"] == "FAILED"
    assert task_rows(db.dsn)[victim_task]["exception_class_path"] == "django_taskpool.exceptions.WorkerLost"

    # The restarted process (a new worker id, new pid) claims work again; everything else finishes.
    restarted_id = f"{victim['worker_id']}.1"
    wait_until(lambda: run.log().count(f"worker_id={restarted_id} ") == 1, 60, "the restart to poll")
    enqueue(db.url, "slow", count=6, duration=0.3)  # enough work that every process gets some

    def done() -> bool:
        rows = task_rows(db.dsn)
        return all(row["status"] == "SUCCESSFUL" for i, row in rows.items() if i != victim_task)

    wait_until(done, 120, "the remaining tasks to finish")
    rows = task_rows(db.dsn)
    claimed_after_restart = {row["worker_ids"][-1] for i, row in rows.items() if i != victim_task}
    assert restarted_id in claimed_after_restart, run.log()
    assert "died with exit code -9" in run.log()
    run.signal(signal.SIGTERM)
    assert run.wait() == 0


def test_healthz_tolerates_long_tasks_and_fails_on_a_stuck_process(
    migrated_database: MigratedDatabase, worker_runs: StartWorker
) -> None:
    db = migrated_database
    run = worker_runs(db.url, "--concurrency=2", "--interval=0.1", "--heartbeat-timeout=2")
    run.wait_ready(processes=2)
    enqueue(db.url, "slow", duration=6)
    wait_until(lambda: running_rows(db.dsn), 60, "the long task to start")
    health = wait_until(
        lambda: (h := run.health()) and any(p["busy"] for p in h["processes"]) and h, 10, "busy"
    )
    busy = next(p for p in health["processes"] if p["busy"])
    idle = next(p for p in health["processes"] if not p["busy"])

    # Longer than --heartbeat-timeout in a task: still healthy.
    wait_until(lambda: run.health()["processes"][busy["index"]]["seconds_since_poll"] > 3, 10, "a long task")
    assert run.health()["http_status"] == 200

    # A process that stops polling while idle (here: frozen) fails the probe, and recovers with it.
    os.kill(idle["pid"], signal.SIGSTOP)
    try:
        failing = wait_until(lambda: (h := run.health())["http_status"] == 503 and h, 10, "/healthz to fail")
        assert [p["ok"] for p in failing["processes"]] == [
            p["index"] != idle["index"] for p in failing["processes"]
        ]
    finally:
        os.kill(idle["pid"], signal.SIGCONT)
    wait_until(lambda: run.health()["http_status"] == 200, 10, "/healthz to recover")


def test_given_multiprocess_dir_is_emptied_of_stale_files_and_cleaned(
    migrated_database: MigratedDatabase, tmp_path: Path
) -> None:
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    stale = metrics_dir / "counter_999999.db"  # left by a previous container in the same volume
    stale.write_bytes(b"\0" * 16)
    keep = metrics_dir / "notes.txt"
    keep.write_text("not ours")
    enqueue(migrated_database.url, "noop")
    run_manage(
        migrated_database.url,
        "taskpool_worker",
        "--batch",
        "--no-startup-delay",
        "--metrics-port=0",
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
    )
    assert sorted(path.name for path in metrics_dir.iterdir()) == ["notes.txt"]


def test_max_tasks_ends_a_process_without_restart(migrated_database: MigratedDatabase) -> None:
    db = migrated_database
    ids = enqueue(db.url, "noop", count=3)
    completed = run_manage(
        db.url, "taskpool_worker", "--max-tasks=2", "--no-startup-delay", "--metrics-port=0"
    )
    assert sorted(task_rows(db.dsn)[i]["status"] for i in ids) == ["READY", "SUCCESSFUL", "SUCCESSFUL"]
    assert "finished (exit code 0): not restarted" in completed.stderr


def test_database_outage_fails_readiness_and_workers_recover(
    migrated_database: MigratedDatabase, postgres_admin_dsn: str, worker_runs: StartWorker
) -> None:
    db = migrated_database
    name = str(psycopg.conninfo.conninfo_to_dict(db.dsn)["dbname"])
    run = worker_runs(db.url, "--interval=0.1")
    run.wait_ready()
    with psycopg.connect(postgres_admin_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(sql.Identifier(name)))
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", [name])
        try:
            _, body = wait_until(lambda: (r := run.get("/readyz"))[0] == 503 and r, 30, "/readyz to fail")
            assert "cannot reach database 'default'" in json.loads(body)["database"]
            wait_until(lambda: "before claiming again" in run.log(), 30, "the worker to notice")
        finally:
            admin.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(sql.Identifier(name)))
    wait_until(lambda: run.get("/readyz")[0] == 200, 30, "/readyz to recover")
    (task_id,) = enqueue(db.url, "noop")
    wait_until(lambda: task_rows(db.dsn)[task_id]["status"] == "SUCCESSFUL", 90, "work to resume")
    assert "Traceback" not in run.log()
    # The process waited for the database: it was neither restarted nor replaced.
    assert "database back after" in run.log()
    assert value(scrape(run), "taskpool_worker_process_restarts_total") == 0
    run.signal(signal.SIGTERM)
    assert run.wait() == 0
