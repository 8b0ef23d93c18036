"""Overhead of the worker runtime: plain `db_worker` vs `taskpool_worker` (metrics on), same no-op tasks.

Both run django-tasks-db's own loop in one process on one database; runs alternate (ABBA order) so drift of
the machine hits both alike. Each run enqueues the same batch of no-op tasks, runs the worker with --batch
until the queue is empty, and measures tasks per second from the task table (first start to last finish,
so process start-up is not counted). The ratio is the median of the ratios of side-by-side pairs, since the
load of a shared machine moves between pairs more than between the two runs of one pair. The CPU time per
task (of the worker's processes, minus a run on an empty queue, i.e. start-up) is reported too: unlike wall
time it barely moves with the machine's load. Commits do not wait for the disk (common.relax_durability):
the figures are the runtime's own cost per task. Target: ratio (taskpool / plain) >= 0.97.

    QUICK=1 python -m benchmarks.worker_overhead   (fewer tasks and trials)
Writes benchmarks/results/worker_overhead.json.
"""

from __future__ import annotations

from benchmarks.common import (
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

TASKS = 300 if QUICK else 2000
TRIALS = 2 if QUICK else 8
TARGET_RATIO = 0.97

VARIANTS = {
    "plain": ("db_worker", "--batch", "--no-reload", "--no-startup-delay"),
    "taskpool": ("taskpool_worker", "--batch", "--no-reload", "--no-startup-delay", "--metrics-port=0"),
}


def measure(database_url: str, dsn: str, command: tuple[str, ...]) -> tuple[float, float]:
    """(tasks per second, CPU seconds of the worker's processes) for one batch."""
    clear_tasks(dsn)
    run_manage(database_url, "enqueue_burst", "--task=noop", f"--count={TASKS}")
    cpu_s = run_manage(database_url, *command)
    count, rate = processing_rate(dsn)
    if count != TASKS:
        raise RuntimeError(f"{command[0]} processed {count} of {TASKS} tasks")
    return rate, cpu_s


def main() -> None:
    rates: dict[str, list[float]] = {name: [] for name in VARIANTS}
    cpu_ms_per_task: dict[str, list[float]] = {name: [] for name in VARIANTS}
    with migrated_database() as db:
        relax_durability(db.dsn)
        measure(db.url, db.dsn, VARIANTS["plain"])  # warm-up: caches, table and index pages
        startup_cpu_s = {}
        for name, command in VARIANTS.items():
            clear_tasks(db.dsn)
            startup_cpu_s[name] = median([run_manage(db.url, *command) for _ in range(3)])
        for trial in range(TRIALS):
            order = list(VARIANTS) if trial % 2 == 0 else list(reversed(VARIANTS))
            for name in order:
                rate, cpu_s = measure(db.url, db.dsn, VARIANTS[name])
                rates[name].append(rate)
                cpu_ms_per_task[name].append(1000 * (cpu_s - startup_cpu_s[name]) / TASKS)
                print(
                    f"trial {trial + 1}/{TRIALS} {name}: {rate:.1f} tasks/s,"
                    f" {cpu_ms_per_task[name][-1]:.3f} ms CPU per task",
                    flush=True,
                )
    plain, taskpool = median(rates["plain"]), median(rates["taskpool"])
    plain_cpu, taskpool_cpu = median(cpu_ms_per_task["plain"]), median(cpu_ms_per_task["taskpool"])
    write_result(
        "worker_overhead",
        {
            "plain_tasks_per_s": round(plain, 2),
            "taskpool_tasks_per_s": round(taskpool, 2),
            "ratio": round(paired_ratio(rates["taskpool"], rates["plain"]), 4),
            "target_ratio": TARGET_RATIO,
            "plain_cpu_ms_per_task": round(plain_cpu, 4),
            "taskpool_cpu_ms_per_task": round(taskpool_cpu, 4),
            "cpu_ratio": round(plain_cpu / taskpool_cpu, 4),
            "startup_cpu_s": {name: round(value, 3) for name, value in startup_cpu_s.items()},
            "tasks_per_run": TASKS,
            "trials": TRIALS,
            "runs": {name: [round(rate, 2) for rate in values] for name, values in rates.items()},
        },
    )


if __name__ == "__main__":
    main()
