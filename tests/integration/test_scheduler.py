"""`manage.py taskpool_scheduler` on a real PostgreSQL: every fire enqueued exactly once with two schedulers
at once, the missed-fire policy after a SIGKILL, clear start-up errors."""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from devdb.demo_project import MigratedDatabase, run_manage, wait_until
from devdb.scheduler import SchedulerRun, schedules_env
from taskpool_operator.probe.sql import TASK_TABLE

pytestmark = pytest.mark.integration

NOOP = "taskpool_demo.tasks.noop"
STEP = datetime.timedelta(seconds=2)


@pytest.fixture
def scheduler_runs(tmp_path: Path) -> Iterator[Callable[..., SchedulerRun]]:
    runs: list[SchedulerRun] = []

    def start(database_url: str, schedules: dict[str, Any], *args: str) -> SchedulerRun:
        run = SchedulerRun(
            database_url,
            *args,
            log_path=tmp_path / f"scheduler-{len(runs)}.log",
            env=schedules_env(schedules),
        )
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.close()


def fires(dsn: str, schedule: str) -> list[dict[str, Any]]:
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        return conn.execute(
            "SELECT fire_time, task_result_id, missed FROM taskpool_schedule_fire WHERE schedule = %s "
            "ORDER BY fire_time",
            [schedule],
        ).fetchall()


def task_ids(dsn: str, task_path: str = NOOP) -> list[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(f"SELECT id::text FROM {TASK_TABLE} WHERE task_path = %s", [task_path]).fetchall()
    return [row[0] for row in rows]


def assert_every_instant_once(rows: list[dict[str, Any]]) -> None:
    """Fire times are 2 s apart; each instant from the first to the last was either enqueued once or given
    up once (counted in `missed` of the decision that settled it)."""
    span = rows[-1]["fire_time"] - rows[0]["fire_time"]
    assert rows[0]["missed"] == 0  # fires before the first scheduler started were never owed
    enqueued = [row for row in rows if row["task_result_id"]]
    assert len(enqueued) + sum(row["missed"] for row in rows) == span // STEP + 1
    assert all(row["fire_time"].timestamp() % 2 == 0 for row in rows)


def test_two_schedulers_for_60_seconds_enqueue_every_fire_exactly_once(
    migrated_database: MigratedDatabase, scheduler_runs: Callable[..., SchedulerRun]
) -> None:
    schedules = {"every-2s": {"task": NOOP, "every": 2}}
    runs = [scheduler_runs(migrated_database.url, schedules, "--interval=0.1") for _ in range(2)]
    for run in runs:
        wait_until(run.serving, 60, "the scheduler's endpoints")
    time.sleep(60)
    assert [run.stop() for run in runs] == [0, 0]

    rows = fires(migrated_database.dsn, "every-2s")
    assert len(rows) >= 20, rows  # both ran for a minute: about 30 fires
    assert_every_instant_once(rows)
    enqueued = [row["task_result_id"] for row in rows if row["task_result_id"]]
    # Every fire has exactly one task and every task has its fire: none doubled, none lost.
    assert sorted(task_ids(migrated_database.dsn)) == sorted(enqueued)
    assert len(set(enqueued)) == len(enqueued)
    # What the schedulers say they enqueued adds up to the fires (each fire counted by one of them).
    fired_lines = [run.log().count("schedule every-2s fired") for run in runs]
    assert sum(fired_lines) == len(enqueued), fired_lines
    print(
        f"fires: {len(rows)}, enqueued per scheduler: {fired_lines}, missed: {sum(r['missed'] for r in rows)}"
    )


def test_sigkilled_scheduler_applies_the_missed_fire_policy_on_restart_and_doubles_nothing(
    migrated_database: MigratedDatabase, scheduler_runs: Callable[..., SchedulerRun]
) -> None:
    schedules = {
        "catch-up": {"task": NOOP, "every": 2, "missed": "latest"},
        "no-catch-up": {
            "task": "taskpool_demo.tasks.slow",
            "every": 2,
            "missed": "skip",
            "kwargs": {"duration": 0},
        },
    }
    first = scheduler_runs(migrated_database.url, schedules, "--interval=0.1")
    wait_until(
        lambda: all(len(fires(migrated_database.dsn, name)) >= 2 for name in schedules), 60, "two fires each"
    )
    first.kill()
    time.sleep(12)  # down for six fires or more (the restart takes a few seconds too)
    restarted = scheduler_runs(migrated_database.url, schedules, "--interval=0.1")
    restarted_at = datetime.datetime.now(datetime.UTC)
    wait_until(
        lambda: all(fires(migrated_database.dsn, name)[-1]["fire_time"] > restarted_at for name in schedules),
        60,
        "fires after the restart",
    )
    assert restarted.stop() == 0

    for name, task_path in (("catch-up", NOOP), ("no-catch-up", "taskpool_demo.tasks.slow")):
        rows = fires(migrated_database.dsn, name)
        assert_every_instant_once(rows)
        enqueued = [row["task_result_id"] for row in rows if row["task_result_id"]]
        assert sorted(task_ids(migrated_database.dsn, task_path)) == sorted(enqueued)
        settled = [row for row in rows if row["missed"]]
        assert len(settled) == 1, rows  # the downtime's fires, settled in one decision
        # All but the last one or two fires of the downtime were more than a period late.
        assert settled[0]["missed"] >= 3
        # latest: the latest missed fire runs once; skip: it is recorded without a task.
        assert bool(settled[0]["task_result_id"]) is (name == "catch-up")
    assert "schedule no-catch-up missed" in restarted.log()


@pytest.mark.parametrize(
    ("schedules", "message"),
    [
        ({"bad": {"task": NOOP, "cron": "0 25 * * *"}}, "TASKPOOL_SCHEDULES['bad']: invalid cron expression"),
        ({"gone": {"task": "taskpool_demo.tasks.missing", "every": 5}}, "cannot import task"),
        ({"odd": {"task": "taskpool_demo.settings.DEBUG", "every": 5}}, "is not a task"),
        ({"q": {"task": NOOP, "every": 5, "queue": "nowhere"}}, "nowhere"),
        ({"p": {"task": NOOP, "every": 5, "priority": 1000}}, "priority"),
    ],
)
def test_a_bad_schedule_stops_the_scheduler_at_start_with_a_clear_error(
    migrated_database: MigratedDatabase, schedules: dict[str, Any], message: str
) -> None:
    completed = run_manage(
        migrated_database.url, "taskpool_scheduler", check=False, **schedules_env(schedules)
    )
    assert completed.returncode != 0
    assert message in completed.stderr
    assert "Traceback" not in completed.stderr
    checked = run_manage(migrated_database.url, "check", check=False, **schedules_env(schedules))
    assert "django_taskpool.E001" in checked.stderr
