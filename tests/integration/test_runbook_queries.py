"""The SQL in docs/runbooks.md runs on the real schema (django-tasks-db's task table, django_taskpool's fires
table) and finds the rows it is meant to find; its hand-written orphan recovery writes what the operator's
does."""

from __future__ import annotations

import datetime
import json
import re
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from devdb.demo_project import MigratedDatabase
from taskpool_operator.orphans import WORKER_LOST
from taskpool_operator.probe.sql import FAIL_ORPHANS, REQUEUE_ORPHANS, TASK_TABLE

pytestmark = pytest.mark.integration

RUNBOOKS = Path(__file__).resolve().parents[2] / "docs/runbooks.md"
TASK_PATH = "taskpool_demo.tasks.noop"
SCHEDULE = "nightly"


def runbook_statements() -> list[str]:
    """The ```sql blocks and the inline `SELECT ...` / `UPDATE ...` of the runbooks, whitespace collapsed."""
    text = RUNBOOKS.read_text()
    blocks = [textwrap.dedent(b) for b in re.findall(r"```sql\n(.*?)\n\s*```", text, flags=re.DOTALL)]
    inline = re.findall(r"`((?:SELECT|UPDATE) [^`]+)`", text)
    return [" ".join(s.split()).rstrip(";") for s in [*blocks, *inline]]


STATEMENTS = runbook_statements()
SELECTS = [s for s in STATEMENTS if s.startswith("SELECT")]
FAIL_BY_HAND = [s for s in STATEMENTS if s.startswith("UPDATE") and "status = 'FAILED'" in s]
REQUEUE_BY_HAND = [s for s in STATEMENTS if s.startswith("UPDATE") and "status = 'READY'" in s]


def test_the_runbooks_have_the_queries_these_tests_run() -> None:
    assert len(SELECTS) == 6, SELECTS
    assert len(FAIL_BY_HAND) == 1, STATEMENTS
    assert len(REQUEUE_BY_HAND) == 1, STATEMENTS


def insert_task(conn: psycopg.Connection[Any], status: str, worker_ids: list[str], **columns: Any) -> str:
    """A row as django-tasks-db 0.13 writes it (every NOT NULL column), in queue `default`; returns its id."""
    row: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "status": status,
        "args_kwargs": json.dumps({"args": [], "kwargs": {}}),
        "priority": 0,
        "task_path": TASK_PATH,
        "worker_ids": json.dumps(worker_ids),
        "queue_name": "default",
        "backend_name": "default",
        "run_after": "9999-01-01 00:00+00",
        "exception_class_path": "",
        "traceback": "",
        **columns,
    }
    names = ", ".join(row)
    values = ", ".join(f"%({name})s" for name in row)
    conn.execute(f"INSERT INTO {TASK_TABLE} ({names}, enqueued_at) VALUES ({values}, now())", row)
    return str(row["id"])


def just_now() -> datetime.datetime:
    """Read at insert time, not import time: the runbooks look back 15 minutes and a full run takes longer."""
    return datetime.datetime.now(datetime.UTC)


def insert_running(conn: psycopg.Connection[Any], worker_id: str) -> str:
    return insert_task(conn, "RUNNING", [worker_id], started_at=just_now())


@pytest.fixture
def conn(migrated_database: MigratedDatabase) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(migrated_database.dsn, autocommit=True, row_factory=dict_row) as connection:
        yield connection


def fill(statement: str, task_id: str = "") -> str:
    """The runbook's placeholders replaced by what the alert (or the reader) would put there."""
    return (
        statement.replace("'<task>'", f"'{TASK_PATH}'")
        .replace("'<name>'", f"'{SCHEDULE}'")
        .replace("'...'", f"'{task_id}'")
    )


@pytest.mark.parametrize("statement", SELECTS, ids=range(len(SELECTS)))
def test_a_runbook_query_finds_the_rows_it_looks_for(conn: psycopg.Connection[Any], statement: str) -> None:
    insert_task(conn, "READY", [])
    insert_running(conn, "worker-a")
    insert_task(
        conn,
        "FAILED",
        ["worker-a", "worker-b"],
        started_at=just_now(),
        finished_at=just_now(),
        exception_class_path="django_taskpool.exceptions.TimeLimitExceeded",
        traceback="killed after 30s",
    )
    conn.execute(
        "INSERT INTO taskpool_schedule_fire (schedule, fire_time, missed) VALUES (%s, now(), 0)", (SCHEDULE,)
    )
    assert conn.execute(fill(statement)).fetchall(), statement


def recovered(conn: psycopg.Connection[Any], task_id: str) -> dict[str, Any]:
    """What a recovery decides about a row (its traceback and finish instant are the writer's own)."""
    return conn.execute(
        "SELECT status, return_value, exception_class_path, finished_at IS NOT NULL AS finished, "
        f"started_at IS NULL AS not_started, worker_ids FROM {TASK_TABLE} WHERE id = %s",
        (task_id,),
    ).fetchone()


def by_operator(conn: psycopg.Connection[Any], statement: str, worker_id: str) -> None:
    params = {
        "backend": "default",
        "queues": ["default"],
        "worker_ids": [worker_id],
        "tracebacks": ["lost"],
        "exception_class_path": WORKER_LOST,
    }
    assert len(conn.execute(statement, params).fetchall()) == 1


@pytest.mark.parametrize(
    ("by_hand", "operators"),
    [(FAIL_BY_HAND[0], FAIL_ORPHANS), (REQUEUE_BY_HAND[0], REQUEUE_ORPHANS)],
    ids=["fail", "requeue"],
)
def test_an_orphan_recovered_by_hand_looks_as_the_operator_leaves_one(
    conn: psycopg.Connection[Any], by_hand: str, operators: str
) -> None:
    manual, automatic = insert_running(conn, "worker-a"), insert_running(conn, "worker-b")
    assert conn.execute(fill(by_hand, manual)).rowcount == 1
    by_operator(conn, operators, "worker-b")
    assert recovered(conn, manual) | {"worker_ids": None} == recovered(conn, automatic) | {"worker_ids": None}
    assert recovered(conn, manual)["worker_ids"] == ["worker-a"]
