"""The fault suite's accounting helper (devdb/task_accounting.py) on real task rows."""

from __future__ import annotations

import psycopg
import pytest

from devdb.demo_project import MigratedDatabase
from devdb.task_accounting import TASK_TABLE, WORKER_LOST, TrackedTasks

pytestmark = pytest.mark.integration


def _set(dsn: str, task_id: str, status: str, worker_ids: str, exception: str = "") -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            f"UPDATE {TASK_TABLE} SET status = %s, worker_ids = %s::jsonb, exception_class_path = %s"
            " WHERE id::text = %s",
            (status, worker_ids, exception, task_id),
        )


def test_every_tracked_task_is_accounted_for(migrated_database: MigratedDatabase) -> None:
    tracked = TrackedTasks(migrated_database)
    done, lost_worker, requeued, running, ready = tracked.enqueue("noop", count=5)
    tracked.enqueue("noop", count=1)  # stays READY too
    dsn = migrated_database.dsn
    _set(dsn, done, "SUCCESSFUL", '["pod-a-0"]')
    _set(dsn, lost_worker, "FAILED", '["pod-b-0"]', WORKER_LOST)
    _set(dsn, requeued, "SUCCESSFUL", '["pod-c-0", "pod-d-1"]')
    _set(dsn, running, "RUNNING", '["pod-e-0"]')
    assert not tracked.settled()

    accounting = tracked.account()
    assert accounting.figures() == {
        "enqueued": 6,
        "successful": 2,
        "failed_by_class": {WORKER_LOST: 1},
        "left_ready": 2,
        "left_running": 1,
        "run_twice": 1,
        "lost": 0,
    }
    problems = accounting.problems(expected_failures={WORKER_LOST}, requeue=False)
    assert len(problems) == 3, problems  # left READY, left RUNNING, run twice
    assert any(ready in p for p in problems)
    assert any(running in p for p in problems)
    assert accounting.problems(expected_failures=(), requeue=True)[-1].startswith("failures of unexpected")

    # A row that disappeared is a lost task.
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DELETE FROM {TASK_TABLE} WHERE id::text = %s", (ready,))
    assert tracked.account().missing == (ready,)
    with pytest.raises(AssertionError, match="1 task\\(s\\) lost"):
        tracked.account().check(expected_failures={WORKER_LOST}, requeue=True)
