"""I/O-bound tasks on the same number of slots: processes (`--concurrency 8`) vs threads (`--threads 8`).

Each trial enqueues the same batch of `slow` tasks (a sleep: an API call, an upload), runs `taskpool_worker
--batch` with 8 slots one way, then the other (alternating which goes first), and measures
- throughput: tasks per second from the task table (first start to last finish; start-up not counted);
- memory per slot: the peak, over the run, of the summed RSS (and PSS, which splits shared pages fairly) of
  the supervisor and its worker processes, sampled from /proc every 0.1 s, divided by the 8 slots.
Ratios are threads / processes, the median of the trials' paired ratios (each pair saw the same load).
Goal: threads give >= 0.9x the throughput at <= 1/3 the memory (RSS) per slot.

    QUICK=1 python -m benchmarks.threads
Writes benchmarks/results/threads.json.
"""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

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
from devdb import demo_project

SLOTS = 8
TASK_S = 0.2 if QUICK else 0.5
TASKS = SLOTS * (10 if QUICK else 30)
TRIALS = 1 if QUICK else 3
VARIANTS = {
    "processes": (f"--concurrency={SLOTS}", "--threads=1"),
    "threads": ("--concurrency=1", f"--threads={SLOTS}"),
}
SAMPLE_S = 0.1


def _tree(root: int) -> list[int]:
    """`root` and its descendants, from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue  # exited meanwhile
            parents[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])
    tree, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, parent in parents.items() if parent in frontier]
        tree += frontier
    return tree


def _memory_kb(pids: list[int]) -> tuple[int, int]:
    """Summed (RSS, PSS) in kB of the processes still alive."""
    rss = pss = 0
    for pid in pids:
        try:
            lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
        except OSError:
            continue
        fields = {line.split(":")[0]: int(line.split()[1]) for line in lines[1:] if line.endswith("kB")}
        rss += fields.get("Rss", 0)
        pss += fields.get("Pss", 0)
    return rss, pss


def measure(database_url: str, dsn: str, flags: tuple[str, ...]) -> tuple[float, float, float]:
    """(tasks per second, peak RSS kB per slot, peak PSS kB per slot) of one run."""
    clear_tasks(dsn)
    run_manage(database_url, "enqueue_burst", "--task=slow", f"--count={TASKS}", f"--duration={TASK_S}")
    process = subprocess.Popen(
        demo_project.manage(
            "taskpool_worker", "--batch", "--no-reload", "--no-startup-delay", "--metrics-port=0", *flags
        ),
        env=demo_project.django_env(database_url),
        cwd=demo_project.DJANGO_DIR,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    peak = [0, 0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(SAMPLE_S):
            rss, pss = _memory_kb(_tree(process.pid))
            peak[0], peak[1] = max(peak[0], rss), max(peak[1], pss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, stderr = process.communicate(timeout=1800)
    done.set()
    sampler.join()
    if process.returncode != 0:
        raise RuntimeError(f"taskpool_worker {' '.join(flags)} failed:\n{stderr[-4000:]}")
    count, rate = processing_rate(dsn)
    if count != TASKS:
        raise RuntimeError(f"{' '.join(flags)} processed {count} of {TASKS} tasks")
    return rate, peak[0] / SLOTS, peak[1] / SLOTS


def main() -> None:
    runs: dict[str, dict[str, list[float]]] = {
        name: {"tasks_per_s": [], "rss_kb_per_slot": [], "pss_kb_per_slot": []} for name in VARIANTS
    }
    with migrated_database() as db:
        relax_durability(db.dsn)
        for trial in range(TRIALS):
            order = list(VARIANTS) if trial % 2 == 0 else list(reversed(VARIANTS))
            for name in order:
                rate, rss, pss = measure(db.url, db.dsn, VARIANTS[name])
                for key, figure in zip(runs[name], (rate, rss, pss), strict=True):
                    runs[name][key].append(figure)
                print(
                    f"trial {trial + 1}/{TRIALS} {name}: {rate:.1f} tasks/s, "
                    f"{rss / 1024:.1f} MiB RSS/slot, {pss / 1024:.1f} MiB PSS/slot",
                    flush=True,
                )
    threads, processes = runs["threads"], runs["processes"]
    throughput_ratio = paired_ratio(threads["tasks_per_s"], processes["tasks_per_s"])
    rss_ratio = paired_ratio(threads["rss_kb_per_slot"], processes["rss_kb_per_slot"])
    pss_ratio = paired_ratio(threads["pss_kb_per_slot"], processes["pss_kb_per_slot"])

    def spread(values: list[float], scale: float = 1.0) -> dict[str, float]:
        figures = {"min": min(values), "median": median(values), "max": max(values)}
        return {key: round(figure / scale, 2) for key, figure in figures.items()}

    write_result(
        "threads",
        {
            "slots": SLOTS,
            "task_seconds": TASK_S,
            "tasks_per_run": TASKS,
            "trials": TRIALS,
            "variants": {name: " ".join(flags) for name, flags in VARIANTS.items()},
            "tasks_per_s": {name: spread(figures["tasks_per_s"]) for name, figures in runs.items()},
            "rss_mib_per_slot": {name: spread(runs[name]["rss_kb_per_slot"], 1024) for name in runs},
            "pss_mib_per_slot": {name: spread(runs[name]["pss_kb_per_slot"], 1024) for name in runs},
            "throughput_ratio_threads_to_processes": round(throughput_ratio, 3),
            "rss_per_slot_ratio_threads_to_processes": round(rss_ratio, 3),
            "pss_per_slot_ratio_threads_to_processes": round(pss_ratio, 3),
            "ideal_tasks_per_s": round(SLOTS / TASK_S, 2),
            "goal": "throughput ratio >= 0.9 and RSS per slot ratio <= 1/3",
            "goal_met": throughput_ratio >= 0.9 and rss_ratio <= 1 / 3,
            "cpu_count": os.cpu_count(),
        },
    )


if __name__ == "__main__":
    main()
