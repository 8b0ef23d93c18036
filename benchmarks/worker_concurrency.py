"""Throughput of `taskpool_worker --concurrency N` for N = 1, 2, 4 on one database (no-op tasks).

Each run enqueues the same batch, runs the supervised pool with --batch until the queue is empty and measures
tasks per second from the task table (first start to last finish). Ratios are against N = 1 in the same run.
No-op tasks measure the claim path, which is bound by the database and the machine's cores (2 in CI);
commits do not wait for the disk (common.relax_durability), so the figures are about processes and cores.

    QUICK=1 python -m benchmarks.worker_concurrency
Writes benchmarks/results/worker_concurrency.json.
"""

from __future__ import annotations

from benchmarks.common import (
    QUICK,
    clear_tasks,
    median,
    migrated_database,
    processing_rate,
    relax_durability,
    run_manage,
    write_result,
)

TASKS = 300 if QUICK else 2000
TRIALS = 1 if QUICK else 3
CONCURRENCY = (1, 2, 4)


def measure(database_url: str, dsn: str, concurrency: int) -> float:
    clear_tasks(dsn)
    run_manage(database_url, "enqueue_burst", "--task=noop", f"--count={TASKS}")
    run_manage(
        database_url,
        "taskpool_worker",
        "--batch",
        "--no-reload",
        "--no-startup-delay",
        "--metrics-port=0",
        f"--concurrency={concurrency}",
    )
    count, rate = processing_rate(dsn)
    if count != TASKS:
        raise RuntimeError(f"--concurrency {concurrency} processed {count} of {TASKS} tasks")
    return rate


def main() -> None:
    rates: dict[int, list[float]] = {n: [] for n in CONCURRENCY}
    with migrated_database() as db:
        relax_durability(db.dsn)
        for trial in range(TRIALS):
            order = CONCURRENCY if trial % 2 == 0 else tuple(reversed(CONCURRENCY))
            for n in order:
                rates[n].append(measure(db.url, db.dsn, n))
                print(f"trial {trial + 1}/{TRIALS} concurrency {n}: {rates[n][-1]:.1f} tasks/s", flush=True)
    base = median(rates[1])
    write_result(
        "worker_concurrency",
        {
            "tasks_per_s": {str(n): round(median(values), 2) for n, values in rates.items()},
            "ratio_to_concurrency_1": {
                str(n): round(median(values) / base, 3) for n, values in rates.items()
            },
            "tasks_per_run": TASKS,
            "trials": TRIALS,
            "runs": {str(n): [round(rate, 2) for rate in values] for n, values in rates.items()},
        },
    )


if __name__ == "__main__":
    main()
