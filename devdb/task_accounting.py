"""Full accounting of tracked tasks for the fault suite (tests/e2e/test_faults.py, benchmarks/faults.py).

    tracked = TrackedTasks(database)
    tracked.enqueue("slow", count=20, duration=30)
    ...  # the fault
    seconds = tracked.wait_settled(timeout=600)     # every tracked task SUCCESSFUL or FAILED
    tracked.account().check(expected_failures={WORKER_LOST}, requeue=False)

A claim is one entry of a row's `worker_ids`: django-tasks-db appends the claiming worker's id in the same
UPDATE that sets the row RUNNING and `started_at`, so every claim reached a start. A row with more than one
claim was run twice (or more): only the orphan action Requeue may do that.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import psycopg

from devdb.demo_project import MigratedDatabase, enqueue
from taskpool_operator.probe.sql import TASK_TABLE

TERMINAL = frozenset({"SUCCESSFUL", "FAILED"})
# The exception class the operator's orphan action Fail stores (taskpool_operator.orphans.WORKER_LOST).
WORKER_LOST = "django_taskpool.exceptions.WorkerLost"


@dataclass(frozen=True)
class TaskOutcome:
    status: str
    exception_class: str | None
    claims: int


@dataclass(frozen=True)
class Accounting:
    """Where every tracked task ended up."""

    outcomes: dict[str, TaskOutcome]
    missing: tuple[str, ...]
    """Tracked ids without a row: lost."""

    @property
    def enqueued(self) -> int:
        return len(self.outcomes) + len(self.missing)

    def _count(self, status: str) -> int:
        return sum(1 for o in self.outcomes.values() if o.status == status)

    @property
    def successful(self) -> int:
        return self._count("SUCCESSFUL")

    @property
    def failed_by_class(self) -> dict[str, int]:
        failed = Counter(o.exception_class or "" for o in self.outcomes.values() if o.status == "FAILED")
        return dict(sorted(failed.items()))

    @property
    def left_ready(self) -> int:
        return self._count("READY")

    @property
    def left_running(self) -> int:
        return self._count("RUNNING")

    @property
    def run_twice(self) -> int:
        return sum(1 for o in self.outcomes.values() if o.claims > 1)

    def figures(self) -> dict[str, Any]:
        """The figures benchmarks/results/faults.json reports per scenario."""
        return {
            "enqueued": self.enqueued,
            "successful": self.successful,
            "failed_by_class": self.failed_by_class,
            "left_ready": self.left_ready,
            "left_running": self.left_running,
            "run_twice": self.run_twice,
            "lost": len(self.missing),
        }

    def problems(self, expected_failures: Collection[str] = (), requeue: bool = False) -> list[str]:
        """What breaks full accounting: lost rows, rows not terminal, failures of an unexpected class, and
        (unless the orphan action is Requeue) tasks run more than once."""
        found = []
        if self.missing:
            found.append(f"{len(self.missing)} task(s) lost (no row): {list(self.missing)[:5]}")
        for status in ("READY", "RUNNING"):
            stuck = [i for i, o in self.outcomes.items() if o.status == status]
            if stuck:
                found.append(f"{len(stuck)} task(s) left {status}: {stuck[:5]}")
        other = sorted({o.status for o in self.outcomes.values()} - TERMINAL - {"READY", "RUNNING"})
        if other:
            found.append(f"tasks in unexpected statuses {other}")
        unexpected = {k: v for k, v in self.failed_by_class.items() if k not in expected_failures}
        if unexpected:
            found.append(f"failures of unexpected classes: {unexpected}")
        if not requeue and self.run_twice:
            found.append(f"{self.run_twice} task(s) run more than once without the orphan action Requeue")
        return found

    def check(self, expected_failures: Collection[str] = (), requeue: bool = False) -> None:
        """AssertionError listing every accounting problem (see `problems`)."""
        found = self.problems(expected_failures, requeue)
        assert not found, f"task accounting failed ({self.figures()}):\n" + "\n".join(found)


@dataclass
class TrackedTasks:
    """Tasks enqueued through the demo project's `enqueue_burst`, remembered by id."""

    database: MigratedDatabase
    ids: list[str] = field(default_factory=list)

    def enqueue(self, task: str, count: int = 1, **options: object) -> list[str]:
        ids = enqueue(self.database.url, task, count=count, **options)
        self.ids.extend(ids)
        return ids

    def account(self) -> Accounting:
        with psycopg.connect(self.database.dsn, autocommit=True) as conn:
            rows = conn.execute(
                f"SELECT id::text, status, exception_class_path, worker_ids FROM {TASK_TABLE}"
                " WHERE id::text = ANY(%s)",
                (self.ids,),
            ).fetchall()
        outcomes = {
            row_id: TaskOutcome(status, exception or None, len(worker_ids or []))
            for row_id, status, exception, worker_ids in rows
        }
        return Accounting(outcomes, tuple(i for i in self.ids if i not in outcomes))

    def statuses(self) -> Counter[str]:
        return Counter(o.status for o in self.account().outcomes.values())

    def settled(self) -> bool:
        """Every tracked task has a terminal row."""
        accounting = self.account()
        return not accounting.missing and all(o.status in TERMINAL for o in accounting.outcomes.values())

    def wait_settled(self, timeout: float, since: float | None = None) -> float:
        """Waits until every tracked task is terminal; returns the seconds from `since` (time.monotonic(),
        default now). AssertionError with the counts by status after `timeout` seconds."""
        started = time.monotonic() if since is None else since
        deadline = time.monotonic() + timeout
        while not self.settled():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"tasks not settled after {timeout:g}s: {dict(self.statuses())} of {len(self.ids)}"
                )
            time.sleep(1)
        return time.monotonic() - started
