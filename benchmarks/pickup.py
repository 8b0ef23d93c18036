"""Pickup latency: from a task's enqueue to its start on an idle worker, polling vs `--notify`, in one run.

Two `taskpool_worker` processes run side by side on one database with the same `--interval 1`: one polls the
`emails` queue, the other listens (`--notify`, the `0004_ready_notify_trigger` migration's NOTIFY) on the
`reports` queue. Each trial waits a random fraction of the interval (a random phase of the polling cycle),
then enqueues one no-op task on each queue (which one goes first alternates) and waits until both started.
Latency is `started_at - enqueued_at` of each row (both written by this machine's clock); it includes the
enqueuing transaction's commit. Goal: NOTIFY p95 <= 50 ms; polling's expected median is half the interval.

    QUICK=1 python -m benchmarks.pickup      (10 trials instead of 40)
Writes benchmarks/results/pickup.json.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from benchmarks.common import QUICK, latency_summary, migrated_database, write_result
from devdb import demo_project
from taskpool_operator.probe.sql import TASK_TABLE

TRIALS = 10 if QUICK else 40
INTERVAL_S = 1.0
GOAL_NOTIFY_P95_S = 0.05
QUEUES = {"polling": "emails", "notify": "reports"}

# Runs inside the demo project's `manage.py shell`: the trials, with Django's own enqueue.
TRIALS_SCRIPT = """
import json, random, time
from django_tasks_db.models import DBTaskResult
from taskpool_demo.tasks import slow
rng = random.Random(20261201)
queues = {queues!r}
for trial in range({trials}):
    time.sleep(rng.uniform(0, {interval}))
    ids = [slow.using(queue_name=queue).enqueue(0).id for queue in (queues if trial % 2 else queues[::-1])]
    deadline = time.monotonic() + 30
    while DBTaskResult.objects.filter(id__in=ids, status="READY").exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"trial {{trial}}: not started within 30 s")
        time.sleep(0.01)
print(json.dumps("done"))
"""


@contextmanager
def worker(database_url: str, queue: str, *flags: str) -> Iterator[None]:
    process = subprocess.Popen(
        demo_project.manage(
            "taskpool_worker",
            "--no-reload",
            "--no-startup-delay",
            "--metrics-port=0",
            f"--queue-name={queue}",
            f"--interval={INTERVAL_S:g}",
            *flags,
        ),
        env=demo_project.django_env(database_url),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        demo_project.stop_process(process)


def listening(dsn: str) -> bool:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND query LIKE 'LISTEN %%taskpool_ready.%%'"
        ).fetchone()
    return bool(row and row[0])


def latencies(dsn: str, queue: str) -> list[float]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            f"SELECT extract(epoch FROM started_at - enqueued_at) FROM {TASK_TABLE}"
            " WHERE queue_name = %s AND started_at IS NOT NULL ORDER BY enqueued_at",
            [queue],
        ).fetchall()
    return [float(row[0]) for row in rows]


def main() -> None:
    with migrated_database() as db:
        with worker(db.url, QUEUES["polling"]), worker(db.url, QUEUES["notify"], "--notify"):
            demo_project.wait_until(lambda: listening(db.dsn), 120, "the --notify worker's LISTEN")
            time.sleep(2 * INTERVAL_S)  # both loops idle
            script = TRIALS_SCRIPT.format(queues=list(QUEUES.values()), trials=TRIALS, interval=INTERVAL_S)
            demo_project.run_manage(db.url, "shell", "-c", script, timeout=60 * TRIALS)
        samples = {mode: latencies(db.dsn, queue) for mode, queue in QUEUES.items()}
    for mode, values in samples.items():
        if len(values) != TRIALS:
            raise RuntimeError(f"{mode}: {len(values)} of {TRIALS} tasks started")
    figures = {mode: latency_summary(values) for mode, values in samples.items()}
    write_result(
        "pickup",
        {
            "what": "seconds from enqueue to task start on an idle worker (--interval 1), same run",
            "trials": TRIALS,
            "interval_s": INTERVAL_S,
            "polling": figures["polling"],
            "notify": figures["notify"],
            "samples_s": {mode: [round(v, 4) for v in values] for mode, values in samples.items()},
            "goal_notify_p95_s": GOAL_NOTIFY_P95_S,
            "goal_met": figures["notify"]["p95_s"] <= GOAL_NOTIFY_P95_S,
            "polling_p95_over_notify_p95": round(figures["polling"]["p95_s"] / figures["notify"]["p95_s"], 1),
        },
    )


if __name__ == "__main__":
    main()
