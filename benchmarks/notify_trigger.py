"""What the READY-notify trigger (`0004_ready_notify_trigger`) costs an enqueue, against the same inserts with
the trigger disabled, in one run.

Two workloads on one migrated database, with a session LISTENing on the channel (as the operator does):
single-row INSERTs in autocommit (one enqueue per transaction: one `pg_notify` each), and bulk INSERTs of
1,000 rows (one statement: one `pg_notify` per distinct queue, here 5). Each trial runs both modes in turn
(the order alternates: the machine is shared and loaded) and the figure is the median of the paired ratios.
Rows are written with SQL shaped like django-tasks-db's (a benchmark shortcut; enqueue's own cost is larger,
so the ratio here is an upper bound of what an enqueue pays). Goal: at most 50 us added per single enqueue.

    QUICK=1 python -m benchmarks.notify_trigger
Writes benchmarks/results/notify_trigger.json.
"""

from __future__ import annotations

import time

import psycopg

from benchmarks.common import QUICK, median, migrated_database, paired_ratio, relax_durability, write_result
from taskpool_operator.probe import sql

TRIALS = 3 if QUICK else 9
SINGLE_INSERTS = 200 if QUICK else 1000
BULK_ROWS = 1000
BULK_STATEMENTS = 5 if QUICK else 20
TRIGGERS = ("taskpool_ready_notify_insert", "taskpool_ready_notify_update")
GOAL_ADDED_US = 50.0  # per single-row enqueue: a few % of a Django enqueue (about 1 ms)

INSERT = f"""
INSERT INTO {sql.TASK_TABLE} (id, status, args_kwargs, priority, task_path, queue_name, backend_name,
    run_after, enqueued_at, exception_class_path, traceback, worker_ids)
SELECT gen_random_uuid(), 'READY', '{{}}', 0, 't', 'queue-' || (g %% 5), 'default',
       '{sql.RUN_AFTER_SENTINEL}'::timestamptz, now(), '', '', '[]'
FROM generate_series(1, %(rows)s) AS g
"""


def set_triggers(conn: psycopg.Connection[tuple[object, ...]], enabled: bool) -> None:
    action = "ENABLE" if enabled else "DISABLE"
    for name in TRIGGERS:
        conn.execute(f"ALTER TABLE {sql.TASK_TABLE} {action} TRIGGER {name}")


def timed(conn: psycopg.Connection[tuple[object, ...]], statements: int, rows: int) -> float:
    started = time.perf_counter()
    for _ in range(statements):
        conn.execute(INSERT, {"rows": rows})
    return time.perf_counter() - started


def main() -> None:
    seconds: dict[str, dict[str, list[float]]] = {
        workload: {"trigger": [], "no_trigger": []} for workload in ("single", "bulk")
    }
    with migrated_database() as db:
        relax_durability(db.dsn)
        with (
            psycopg.connect(db.dsn, autocommit=True) as conn,
            psycopg.connect(db.dsn, autocommit=True) as listener,
        ):
            listener.execute(f'LISTEN "{sql.READY_CHANNEL_PREFIX}default"')
            for trial in range(TRIALS):
                modes = ("trigger", "no_trigger") if trial % 2 == 0 else ("no_trigger", "trigger")
                for mode in modes:
                    set_triggers(conn, mode == "trigger")
                    seconds["single"][mode].append(timed(conn, SINGLE_INSERTS, 1))
                    seconds["bulk"][mode].append(timed(conn, BULK_STATEMENTS, BULK_ROWS))
                    for _ in listener.notifies(timeout=0.01):
                        pass  # keep the notification queue short
                    conn.execute(f"TRUNCATE {sql.TASK_TABLE}")
                print(f"trial {trial + 1}/{TRIALS} done", flush=True)
    per_insert_us = {
        mode: round(median(values) / SINGLE_INSERTS * 1e6, 1) for mode, values in seconds["single"].items()
    }
    per_bulk_ms = {
        mode: round(median(values) / BULK_STATEMENTS * 1e3, 2) for mode, values in seconds["bulk"].items()
    }
    added_us = round(per_insert_us["trigger"] - per_insert_us["no_trigger"], 1)
    single_ratio = paired_ratio(seconds["single"]["trigger"], seconds["single"]["no_trigger"])
    bulk_ratio = paired_ratio(seconds["bulk"]["trigger"], seconds["bulk"]["no_trigger"])
    write_result(
        "notify_trigger",
        {
            "what": "insert cost with the READY-notify trigger vs disabled, paired runs",
            "trials": TRIALS,
            "single_row_insert_us": per_insert_us,
            "bulk_1000_rows_insert_ms": per_bulk_ms,
            "single_ratio_trigger_over_none": round(single_ratio, 3),
            "bulk_ratio_trigger_over_none": round(bulk_ratio, 3),
            "ratio_spread": {
                workload: {
                    "min": round(min(t / n for t, n in zip(v["trigger"], v["no_trigger"], strict=True)), 3),
                    "max": round(max(t / n for t, n in zip(v["trigger"], v["no_trigger"], strict=True)), 3),
                }
                for workload, v in seconds.items()
            },
            "added_us_per_single_insert": added_us,
            "goal_added_us_per_single_insert": GOAL_ADDED_US,
            "goal_met": added_us <= GOAL_ADDED_US,
        },
    )


if __name__ == "__main__":
    main()
