"""Retention: 1 M finished rows pruned by `taskpool_scheduler` while a worker runs no-op tasks.

Each trial writes 1 M finished rows (900 k SUCCESSFUL, 100 k FAILED, two days old) plus 100 k recent ones that
retention keeps, into the queue the worker serves. Then, in alternating order (ABAB... so machine drift hits
both alike), the worker processes the same batch of no-op tasks once alone and once while the scheduler
deletes the 1 M expired rows (its defaults: batches of 1000, deleting 10 % of the time). Figures:
- worker throughput during the prune relative to alone (median of the per-trial ratios; goal >= 0.9);
- prune rows per second (rows deleted / time from the first to the last batch);
- EXPLAIN (ANALYZE, BUFFERS) of one prune batch at 1 M rows, with `taskpool_finished_idx` and without it
  (dropped inside a rolled-back transaction): what one batch reads and costs.
Commits do not wait for the disk (common.relax_durability), as in the other worker benchmarks.

    QUICK=1 python -m benchmarks.retention   (100 k rows, one trial)
Writes benchmarks/results/retention.json.
"""

from __future__ import annotations

import datetime
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

from benchmarks.common import QUICK, median, migrated_database, relax_durability, run_manage, write_result
from devdb.demo_project import wait_until
from devdb.scheduler import SchedulerRun
from devdb.task_rows import insert_finished
from django_taskpool import retention_sql
from taskpool_operator.probe.sql import TASK_TABLE

EXPIRED = 100_000 if QUICK else 1_000_000
FAILED_SHARE = 0.1
KEPT = 10_000 if QUICK else 100_000
TASKS = 500 if QUICK else 3000
TRIALS = 1 if QUICK else 3
GOAL_RATIO = 0.9
RETAIN_S = 86_400
PRUNE_BATCH = 1000  # taskpool_scheduler --prune-batch default


def fill(dsn: str) -> None:
    failed = int(EXPIRED * FAILED_SHARE)
    insert_finished(
        dsn, EXPIRED - failed, queue="default", status="SUCCESSFUL", age_s=2 * RETAIN_S, spread_s=3600
    )
    insert_finished(dsn, failed, queue="default", status="FAILED", age_s=2 * RETAIN_S, spread_s=3600)
    insert_finished(dsn, KEPT, queue="default", status="SUCCESSFUL", age_s=60, spread_s=600)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"VACUUM ANALYZE {TASK_TABLE}")


def explain_batch(dsn: str, *, with_index: bool) -> dict[str, Any]:
    """One prune batch under EXPLAIN ANALYZE, rolled back (the rows stay)."""
    with psycopg.connect(dsn) as conn:
        if not with_index:
            conn.execute("DROP INDEX taskpool_finished_idx")
        row = conn.execute(
            "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + retention_sql.PRUNE_BATCH.format(table=TASK_TABLE),
            {
                "backend": "default",
                "queue": "default",
                "status": "SUCCESSFUL",
                "cutoff": datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=RETAIN_S),
                "limit": PRUNE_BATCH,
            },
        ).fetchone()
        conn.rollback()
    assert row is not None
    (plan,) = row[0]
    nodes: list[str] = []

    def walk(node: dict[str, Any]) -> None:
        nodes.append(" ".join(filter(None, (node["Node Type"], node.get("Index Name")))))
        for child in node.get("Plans", ()):
            walk(child)

    walk(plan["Plan"])
    return {
        "execution_ms": round(plan["Execution Time"], 3),
        "shared_buffers_hit": plan["Plan"].get("Shared Hit Blocks", 0),
        "shared_buffers_read": plan["Plan"].get("Shared Read Blocks", 0),
        "nodes": nodes,
    }


def worker_rate(database_url: str, dsn: str) -> float:
    """Tasks per second of one worker process over a batch of no-op tasks (first start to last finish)."""
    started = datetime.datetime.now(datetime.UTC)
    run_manage(database_url, "enqueue_burst", "--task=noop", f"--count={TASKS}")
    run_manage(
        database_url, "taskpool_worker", "--batch", "--no-reload", "--no-startup-delay", "--metrics-port=0"
    )
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            f"SELECT count(*), extract(epoch FROM max(finished_at) - min(started_at)) FROM {TASK_TABLE}"
            " WHERE started_at >= %s",
            [started],
        ).fetchone()
    assert row is not None
    count, span = int(row[0]), float(row[1])
    if count != TASKS:
        raise RuntimeError(f"the worker processed {count} of {TASKS} tasks")
    return count / span


def pruned(run: SchedulerRun) -> float:
    metrics = run.metrics()
    return sum(
        value for (name, _), value in metrics.items() if name == "taskpool_retention_rows_pruned_total"
    )


def rate_during_prune(database_url: str, dsn: str, log: Path) -> tuple[float, float, bool]:
    """(worker tasks/s while the prune runs, prune rows/s, whether the prune outlasted the worker run)."""
    run = SchedulerRun(
        database_url,
        "--queue-name=default",
        f"--retain-successful={RETAIN_S}",
        f"--retain-failed={RETAIN_S}",
        "--prune-interval=3600",
        log_path=log,
        env={"TASKPOOL_DEMO_SCHEDULES": "{}"},
    )
    try:
        wait_until(lambda: run.serving() and pruned(run) > 0, 120, "the prune to start", interval=0.02)
        prune_started = time.monotonic()
        rate = worker_rate(database_url, dsn)
        covered = pruned(run) < EXPIRED
        wait_until(lambda: pruned(run) >= EXPIRED, 1800, "the prune to finish", interval=0.1)
        prune_s = time.monotonic() - prune_started
    finally:
        run.close()
    return rate, EXPIRED / prune_s, covered


def main() -> None:
    alone: list[float] = []
    during: list[float] = []
    prune_rates: list[float] = []
    covered: list[bool] = []
    plans: dict[str, Any] = {}
    with migrated_database() as db, tempfile.TemporaryDirectory(prefix="bench-retention-") as logs:
        relax_durability(db.dsn)
        worker_rate(db.url, db.dsn)  # warm-up
        for trial in range(TRIALS):
            fill(db.dsn)
            if trial == 0:
                plans = {
                    "with_taskpool_finished_idx": explain_batch(db.dsn, with_index=True),
                    "without_index": explain_batch(db.dsn, with_index=False),
                }
                print(json.dumps(plans, indent=2), flush=True)
            order = ("alone", "during") if trial % 2 == 0 else ("during", "alone")
            for variant in order:
                if variant == "alone":
                    alone.append(worker_rate(db.url, db.dsn))
                else:
                    rate, prune_rate, outlasted = rate_during_prune(
                        db.url, db.dsn, Path(logs) / f"scheduler-{trial}.log"
                    )
                    during.append(rate)
                    prune_rates.append(prune_rate)
                    covered.append(outlasted)
            print(
                f"trial {trial + 1}/{TRIALS}: alone {alone[-1]:.1f} tasks/s,"
                f" during prune {during[-1]:.1f} tasks/s, prune {prune_rates[-1]:.0f} rows/s,"
                f" prune outlasted the worker run: {covered[-1]}",
                flush=True,
            )
    ratios = [d / a for d, a in zip(during, alone, strict=True)]
    ratio = median(ratios)
    write_result(
        "retention",
        {
            "expired_rows": EXPIRED,
            "kept_rows": KEPT,
            "tasks_per_run": TASKS,
            "trials": TRIALS,
            "prune_batch": PRUNE_BATCH,
            "worker_tasks_per_s_alone": {"min": min(alone), "median": median(alone), "max": max(alone)},
            "worker_tasks_per_s_during_prune": {
                "min": min(during),
                "median": median(during),
                "max": max(during),
            },
            "throughput_ratio": {"min": min(ratios), "median": round(ratio, 4), "max": max(ratios)},
            "goal_ratio": GOAL_RATIO,
            "goal_met": ratio >= GOAL_RATIO,
            "prune_rows_per_s": {
                "min": round(min(prune_rates)),
                "median": round(median(prune_rates)),
                "max": round(max(prune_rates)),
            },
            "prune_outlasted_worker_run": covered,
            "explain_one_batch_at_1m_rows" if not QUICK else "explain_one_batch": plans,
        },
    )


if __name__ == "__main__":
    main()
