"""Retention on a real PostgreSQL: `taskpool_scheduler --retain-*` deletes exactly the expired finished rows
of the pool's queues, in batches through `taskpool_finished_idx`, and reports what it did."""

from __future__ import annotations

import datetime
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

from devdb.demo_project import MigratedDatabase, enqueue, wait_until
from devdb.scheduler import SchedulerRun
from devdb.task_rows import insert_finished
from django_taskpool import retention_sql
from taskpool_operator.probe.sql import TASK_TABLE

pytestmark = pytest.mark.integration

HOUR = 3600.0


def counts(dsn: str) -> dict[tuple[str, str], int]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(f"SELECT queue_name, status, count(*) FROM {TASK_TABLE} GROUP BY 1, 2").fetchall()
    return {(queue, status): count for queue, status, count in rows}


@pytest.fixture
def aged_rows(migrated_database: MigratedDatabase) -> MigratedDatabase:
    """Per queue (default, emails, reports): 25 SUCCESSFUL and 25 FAILED rows 3 h old, 10 of each 30 min old;
    plus 5 READY tasks in default."""
    for queue in ("default", "emails", "reports"):
        for status in ("SUCCESSFUL", "FAILED"):
            insert_finished(
                migrated_database.dsn, 25, queue=queue, status=status, age_s=3 * HOUR, spread_s=60
            )
            insert_finished(migrated_database.dsn, 10, queue=queue, status=status, age_s=HOUR / 2)
    enqueue(migrated_database.url, "noop", count=5)
    return migrated_database


def run_scheduler(tmp_path: Path, database: MigratedDatabase, *args: str) -> SchedulerRun:
    return SchedulerRun(
        database.url,
        "--prune-batch=7",
        "--prune-interval=3600",
        *args,
        log_path=tmp_path / "scheduler.log",
        env={"TASKPOOL_DEMO_SCHEDULES": "{}"},
    )


def pruned(run: SchedulerRun) -> dict[str, float]:
    metrics = run.metrics()
    return {
        status: metrics[("taskpool_retention_rows_pruned_total", (("status", status),))]
        for status in ("successful", "failed")
    }


def test_expired_finished_rows_of_the_pool_queues_are_deleted_and_nothing_else(
    aged_rows: MigratedDatabase, tmp_path: Path
) -> None:
    run = run_scheduler(
        tmp_path,
        aged_rows,
        "--queue-name=default,emails",
        f"--retain-successful={HOUR:g}",
        f"--retain-failed={4 * HOUR:g}",
    )
    try:
        # Logged at the end of the round, once it has also measured the oldest rows left (the gauges below).
        done = "retention deleted 50 finished task row(s)"
        wait_until(lambda: run.serving() and done in run.log(), 60, "the prune round to end")
        assert pruned(run) == {"successful": 50.0, "failed": 0.0}
        metrics = run.metrics()
        oldest = {
            status: metrics[("taskpool_retention_oldest_finished_age_seconds", (("status", status),))]
            for status in ("successful", "failed")
        }
        assert HOUR / 2 <= oldest["successful"] < HOUR  # the 30-minute-old rows are the oldest left
        assert oldest["failed"] >= 3 * HOUR  # failed rows are kept for 4 h
    finally:
        assert run.stop() == 0
        run.close()
    assert counts(aged_rows.dsn) == {
        ("default", "SUCCESSFUL"): 10,
        ("default", "FAILED"): 35,
        ("default", "READY"): 5,
        ("emails", "SUCCESSFUL"): 10,
        ("emails", "FAILED"): 35,
        ("reports", "SUCCESSFUL"): 35,  # not the pool's queue
        ("reports", "FAILED"): 35,
    }


def test_all_queues_minus_the_excluded_ones(aged_rows: MigratedDatabase, tmp_path: Path) -> None:
    run = run_scheduler(
        tmp_path,
        aged_rows,
        "--queue-name=*",
        "--exclude-queues=emails",
        f"--retain-successful={HOUR:g}",
        f"--retain-failed={HOUR:g}",
    )
    try:
        wait_until(lambda: run.serving() and sum(pruned(run).values()) == 100, 60, "100 rows pruned")
    finally:
        assert run.stop() == 0
        run.close()
    left = counts(aged_rows.dsn)
    assert {key: left[key] for key in left if key[0] != "emails"} == {
        ("default", "SUCCESSFUL"): 10,
        ("default", "FAILED"): 10,
        ("default", "READY"): 5,
        ("reports", "SUCCESSFUL"): 10,
        ("reports", "FAILED"): 10,
    }
    assert left[("emails", "SUCCESSFUL")] == left[("emails", "FAILED")] == 35


def test_a_prune_batch_reads_only_the_rows_it_deletes(aged_rows: MigratedDatabase) -> None:
    """The batch's plan walks taskpool_finished_idx: rows read == rows deleted, however many are kept."""
    insert_finished(aged_rows.dsn, 20_000, queue="default", status="SUCCESSFUL", age_s=60)  # kept
    with psycopg.connect(aged_rows.dsn) as conn:
        conn.execute(f"ANALYZE {TASK_TABLE}")
        plan: Any = conn.execute(
            "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + retention_sql.PRUNE_BATCH.format(table=TASK_TABLE),
            {
                "backend": "default",
                "queue": "default",
                "status": "SUCCESSFUL",
                "limit": 7,
                "cutoff": datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1),
            },
        ).fetchone()[0]
        conn.rollback()
    text = str(plan)
    print(plan, file=sys.stderr)
    assert "taskpool_finished_idx" in text
    assert "Seq Scan" not in text
    assert plan[0]["Plan"]["Actual Rows"] == 0  # a DELETE returns nothing; its scan nodes below:
    assert max(_rows_read(plan[0]["Plan"])) == 7  # no node reads more rows than the batch deletes


def _rows_read(node: dict[str, Any]) -> list[int]:
    found = [int(node.get("Actual Rows", 0))]
    for child in node.get("Plans", ()):
        found += _rows_read(child)
    return found
