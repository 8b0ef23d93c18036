"""Overhead of the worker runtime: plain `db_worker` vs `taskpool_worker` (metrics on), same no-op tasks.

Both run django-tasks-db's own loop in one process on one database; runs alternate (ABBA order) so drift of
the machine hits both alike. Each run enqueues the same batch of no-op tasks, runs the worker with --batch
until the queue is empty, and measures tasks per second from the task table (first start to last finish,
so process start-up is not counted). The ratio is the median of the ratios of side-by-side pairs, since the
load of a shared machine moves between pairs more than between the two runs of one pair. Commits do not
wait for the disk (see common.relax_durability): the figure is the runtime's CPU overhead per task.
Target: ratio (taskpool / plain) >= 0.97.

    QUICK=1 python benchmarks/worker_overhead.py   (fewer tasks and trials)
Writes benchmarks/results/worker_overhead.json.
"""

from __future__ import annotations

from common import (
    QUICK,
    clear_tasks,
    median,
    migrated_database,
    paired_ratio,
    processing_rate,
    relax_durability,
    run_manage,
    write_result,
)

TASKS = 300 if QUICK else 1000
TRIALS = 2 if QUICK else 8
TARGET_RATIO = 0.97

VARIANTS = {
    "plain": ("db_worker", "--batch", "--no-reload", "--no-startup-delay"),
    "taskpool": ("taskpool_worker", "--batch", "--no-reload", "--no-startup-delay", "--metrics-port=0"),
}


def measure(database_url: str, dsn: str, command: tuple[str, ...]) -> float:
    clear_tasks(dsn)
    run_manage(database_url, "enqueue_burst", "--task=noop", f"--count={TASKS}")
    run_manage(database_url, *command)
    count, rate = processing_rate(dsn)
    if count != TASKS:
        raise RuntimeError(f"{command[0]} processed {count} of {TASKS} tasks")
    return rate


def main() -> None:
    rates: dict[str, list[float]] = {name: [] for name in VARIANTS}
    with migrated_database() as db:
        relax_durability(db.dsn)
        measure(db.url, db.dsn, VARIANTS["plain"])  # warm-up: caches, table and index pages
        for trial in range(TRIALS):
            order = list(VARIANTS) if trial % 2 == 0 else list(reversed(VARIANTS))
            for name in order:
                rates[name].append(measure(db.url, db.dsn, VARIANTS[name]))
                print(f"trial {trial + 1}/{TRIALS} {name}: {rates[name][-1]:.1f} tasks/s", flush=True)
    plain, taskpool = median(rates["plain"]), median(rates["taskpool"])
    write_result(
        "worker_overhead",
        {
            "plain_tasks_per_s": round(plain, 2),
            "taskpool_tasks_per_s": round(taskpool, 2),
            "ratio": round(paired_ratio(rates["taskpool"], rates["plain"]), 4),
            "target_ratio": TARGET_RATIO,
            "tasks_per_run": TASKS,
            "trials": TRIALS,
            "runs": {name: [round(rate, 2) for rate in values] for name, values in rates.items()},
        },
    )


if __name__ == "__main__":
    main()
