"""Cost of the operator's queue probe vs a naive `count(*)` as the backlog grows.

One migrated database holds 1 M finished tasks (what a busy table retains for two weeks); the ready backlog
of queue `default` grows 10 k -> 100 k -> 1 M (rows loaded with generate_series, not the ORM). At each size,
in the same run and on the same database:

- capped: one `ProbeHub.tick()` for a pool of 10 pods x 4 tasks (ready counted up to 41), the exact statement
  the operator runs, including its RUNNING counts per worker and the oldest ready age;
- naive: the count a KEDA postgresql trigger would run for that queue (the same readiness predicate).

Both run on warmed connections with prepared statements, as in steady state; figures are medians in
milliseconds. Targets: capped cost flat across backlogs, speedup (naive / capped) >= 50 at the largest
backlog.

    QUICK=1 python -m benchmarks.probe   (100 k finished rows, backlogs 10 k and 100 k)
Writes benchmarks/results/probe.json.
"""

from __future__ import annotations

import asyncio
import time

import psycopg

from benchmarks.common import QUICK, median, migrated_database, write_result
from taskpool_operator.probe import sql
from taskpool_operator.probe.depth import PoolDepth, ProbeTarget, ready_cap
from taskpool_operator.probe.hub import ProbeHub

FINISHED = 100_000 if QUICK else 1_000_000
BACKLOGS = [10_000, 100_000] if QUICK else [10_000, 100_000, 1_000_000]
RUNS = 15 if QUICK else 31
WARMUP = 6  # psycopg prepares a statement on its 5th execution
TARGET = ProbeTarget(backend="default", queues=("default",), cap=ready_cap(10, 4))
WILDCARD = ProbeTarget(backend="default", queues=("*",), cap=ready_cap(10, 4))

NAIVE_COUNT = f"""
SELECT count(*) FROM {sql.TASK_TABLE}
WHERE status = 'READY' AND backend_name = 'default' AND queue_name = 'default'
  AND (run_after = '{sql.RUN_AFTER_SENTINEL}'::timestamptz OR run_after <= now())
"""

# Ready rows: most without run_after, some scheduled in the past (due) and some in the future (not due).
INSERT_READY = f"""
INSERT INTO {sql.TASK_TABLE} (id, status, args_kwargs, priority, task_path, queue_name, backend_name,
    run_after, enqueued_at, exception_class_path, traceback, worker_ids)
SELECT gen_random_uuid(), 'READY', '{{}}', (g %% 21) - 10, 'taskpool_demo.tasks.noop', 'default', 'default',
       CASE WHEN g %% 10 = 0 THEN now() - interval '1 minute'
            WHEN g %% 10 = 1 THEN now() + interval '1 day'
            ELSE '{sql.RUN_AFTER_SENTINEL}'::timestamptz END,
       now() - make_interval(secs => g / 1000.0), '', '', '[]'
FROM generate_series(1, %(rows)s) AS g
"""

INSERT_FINISHED = f"""
INSERT INTO {sql.TASK_TABLE} (id, status, args_kwargs, priority, task_path, queue_name, backend_name,
    run_after, enqueued_at, started_at, finished_at, return_value, exception_class_path, traceback,
    worker_ids)
SELECT gen_random_uuid(), CASE WHEN g %% 50 = 0 THEN 'FAILED' ELSE 'SUCCESSFUL' END, '{{}}', 0,
       'taskpool_demo.tasks.noop', CASE WHEN g %% 3 = 0 THEN 'emails' ELSE 'default' END, 'default',
       '{sql.RUN_AFTER_SENTINEL}'::timestamptz, now() - interval '1 day', now() - interval '1 day',
       now() - interval '1 day', 'null', '', '', '["worker-0"]'
FROM generate_series(1, %(rows)s) AS g
"""


def load(dsn: str, statement: str, rows: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(statement, {"rows": rows})
        # Autovacuum would get here on a live table; the index-only scans need the visibility map.
        conn.execute(f"VACUUM ANALYZE {sql.TASK_TABLE}")


async def probe_samples(dsn: str, target: ProbeTarget) -> tuple[list[float], PoolDepth]:
    """Milliseconds of RUNS `ProbeHub.tick()`s after the warm-up, and the last reading."""
    async with ProbeHub() as hub:
        hub.register("bench", dsn, target)
        for _ in range(WARMUP):  # connection, then psycopg prepares the statement (steady state)
            await hub.tick(dsn)
        samples = []
        for _ in range(RUNS):
            started = time.perf_counter()
            await hub.tick(dsn)
            samples.append((time.perf_counter() - started) * 1000)
        reading = hub.latest("bench")
    assert isinstance(reading, PoolDepth), reading
    return samples, reading


async def naive_samples(dsn: str) -> tuple[list[float], int]:
    """Milliseconds of NAIVE_COUNT runs after the warm-up, and the count."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        for _ in range(WARMUP):
            await conn.execute(NAIVE_COUNT)
        samples = []
        count = 0
        for _ in range(max(5, RUNS // 3)):
            started = time.perf_counter()
            row = await (await conn.execute(NAIVE_COUNT)).fetchone()
            samples.append((time.perf_counter() - started) * 1000)
            assert row is not None
            count = int(row[0])
    return samples, count


async def time_probe(dsn: str, target: ProbeTarget) -> tuple[float, PoolDepth]:
    samples, reading = await probe_samples(dsn, target)
    return median(samples), reading


async def time_naive(dsn: str) -> tuple[float, int]:
    samples, count = await naive_samples(dsn)
    return median(samples), count


def main() -> None:
    capped_ms: list[float] = []
    wildcard_ms: list[float] = []
    naive_ms: list[float] = []
    with migrated_database() as db:
        print(f"loading {FINISHED} finished tasks")
        load(db.dsn, INSERT_FINISHED, FINISHED)
        loaded = 0
        for backlog in BACKLOGS:
            print(f"loading ready tasks up to {backlog}")
            load(db.dsn, INSERT_READY, backlog - loaded)
            loaded = backlog
            capped, reading = asyncio.run(time_probe(db.dsn, TARGET))
            wildcard, _ = asyncio.run(time_probe(db.dsn, WILDCARD))
            naive, count = asyncio.run(time_naive(db.dsn))
            assert reading.ready == TARGET.cap, reading
            assert count > TARGET.cap
            print(
                f"  ready={count}: capped {capped:.2f} ms, wildcard {wildcard:.2f} ms, naive {naive:.2f} ms"
            )
            capped_ms.append(round(capped, 3))
            wildcard_ms.append(round(wildcard, 3))
            naive_ms.append(round(naive, 3))
    write_result(
        "probe",
        {
            "backlogs": BACKLOGS,
            "finished_rows": FINISHED,
            "cap": TARGET.cap,
            "capped_ms": capped_ms,
            "capped_wildcard_ms": wildcard_ms,
            "naive_ms": naive_ms,
            "speedup_at_max": round(naive_ms[-1] / capped_ms[-1], 1),
            "capped_growth": round(capped_ms[-1] / capped_ms[0], 2),
            "target_speedup_at_max": 50,
        },
    )


if __name__ == "__main__":
    main()
