"""Shared benchmark helpers: QUICK mode, a migrated PostgreSQL database, timing and result files.

Benchmarks run as modules from the repository root (`python -m benchmarks.<name>`, as `make bench-<name>`
does) and use devdb (embedded PostgreSQL, the demo project's manage.py) like the tests do.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import platform
import resource
import signal
import statistics
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import psycopg
import psycopg.conninfo
import psycopg.sql

from devdb import demo_project
from taskpool_operator.probe.sql import TASK_TABLE

ROOT = Path(__file__).resolve().parents[1]

QUICK = os.environ.get("QUICK") == "1"
RESULTS = ROOT / "benchmarks" / "results"


def _exit_on_sigterm(signum: int, frame: object) -> None:
    # SystemExit unwinds the context managers: the worker subprocesses and the embedded server are stopped.
    sys.exit(128 + signum)


signal.signal(signal.SIGTERM, _exit_on_sigterm)


def write_result(name: str, figures: dict[str, Any]) -> Path:
    """Writes benchmarks/results/<name>.json: the figures plus when, where and how long the run was."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    document = {
        **figures,
        "quick": QUICK,
        "measured_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "system": platform.platform(),
        },
    }
    path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    print(f"wrote {path.relative_to(ROOT)}:\n{json.dumps(figures, indent=2, sort_keys=True)}")
    return path


# Held while a local cluster runs, so only one runs at a time on the machine (the e2e tests and the other
# cluster benchmarks take it with `flock` around the whole command).
CLUSTER_LOCK = Path("/tmp/taskpool-e2e.lock")


@contextlib.contextmanager
def cluster_lock() -> Iterator[None]:
    """Waits for the machine's cluster lock and holds it for the block: for a benchmark whose cluster part is
    only a phase of it (not wrapped in `flock` as a whole: that would deadlock)."""
    with CLUSTER_LOCK.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def migrated_database() -> contextlib.AbstractContextManager[demo_project.MigratedDatabase]:
    """A fresh database with the demo project migrated (DATABASE_URL's server, else an embedded one)."""
    return demo_project.standalone_migrated_database("taskpool_bench")


def relax_durability(dsn: str) -> None:
    """`synchronous_commit = off` for the benchmark database: commits stop waiting for the disk, whose
    latency on a shared machine swings by a factor of three and would drown what the benchmarks compare
    (the workers' own CPU cost). Crash safety does not matter for a throwaway database."""
    dbname = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            psycopg.sql.SQL("ALTER DATABASE {} SET synchronous_commit = off").format(
                psycopg.sql.Identifier(str(dbname))
            )
        )


def clear_tasks(dsn: str) -> None:
    """Empties the task table so every run starts from the same state."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {TASK_TABLE}")
        conn.execute(f"VACUUM ANALYZE {TASK_TABLE}")


def run_manage(database_url: str, *args: str, timeout: float = 1800, **env: str) -> float:
    """Runs `manage.py ARGS` of the demo project to completion (`env`: extra variables); fails loudly with its
    output. Returns the CPU seconds (user + system) it used, its own worker processes included (a supervisor
    waits for them)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    demo_project.run_manage(database_url, *args, timeout=timeout, check=True, **env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def processing_rate(dsn: str) -> tuple[int, float]:
    """(finished tasks, tasks per second) from the task table: finished count over the span from the first
    start to the last finish. Process start-up is not counted, only the work."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*), extract(epoch FROM max(finished_at) - min(started_at))"
            f" FROM {TASK_TABLE} WHERE status IN ('SUCCESSFUL', 'FAILED')"
        ).fetchone()
    assert row is not None
    count, span = int(row[0]), float(row[1] or 0.0)
    if count == 0 or span <= 0:
        raise RuntimeError("no task was processed")
    return count, count / span


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def spread(values: Sequence[float], digits: int = 3) -> dict[str, float]:
    """Min, median and max of repeated measurements, rounded."""
    return {
        "min": round(min(values), digits),
        "median": round(median(values), digits),
        "max": round(max(values), digits),
    }


def latency_summary(samples: Sequence[float]) -> dict[str, float]:
    """Min, median, 95th percentile and max of latencies in seconds, rounded to 0.1 ms."""
    quantiles = statistics.quantiles(samples, n=100, method="inclusive")
    return {
        "min_s": round(min(samples), 4),
        "p50_s": round(quantiles[49], 4),
        "p95_s": round(quantiles[94], 4),
        "max_s": round(max(samples), 4),
    }


def paired_ratio(candidate: Sequence[float], baseline: Sequence[float]) -> float:
    """Median of the ratios of runs made side by side: each pair saw the same machine load."""
    return median([c / b for c, b in zip(candidate, baseline, strict=True)])
