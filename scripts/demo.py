"""The local demo: PostgreSQL, the demo Django app, a pool of worker processes and a burst of tasks.

    make demo                                   (or: .venv/bin/python scripts/demo.py --help)

Starts an embedded PostgreSQL (or uses DATABASE_URL's server), migrates a fresh database, serves the demo
app's JSON API, starts `taskpool_worker --concurrency N`, enqueues a mixed burst through the API and shows a
live view of the counts per queue and status until the burst is done; then a summary, including the worker's
own metrics, and a graceful stop. Logs go to demo-output/.

The pieces are plain functions (start the database, start the app, start workers, enqueue a burst through the
API, watch the counts) so the whole-stack demo on the local cluster can reuse them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "django_app")]

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from tests.support import django_db, postgres  # noqa: E402

OUTPUT = ROOT / "demo-output"
STATUSES = ("READY", "RUNNING", "SUCCESSFUL", "FAILED")

# The burst: every kind of demo task, spread over the three queues.
BURST = (
    {"task": "email", "count": 60},
    {"task": "report", "count": 12, "duration": 0.5},
    {"task": "flaky", "count": 40, "failure_rate": 0.25},
    {"task": "slow", "count": 8, "duration": 2.0, "priority": 10},
    {"task": "context", "count": 20},
    {"task": "report", "count": 4, "duration": 0.2, "run_after": 5},
)


@contextlib.contextmanager
def database() -> Iterator[django_db.MigratedDatabase]:
    """A fresh, migrated database: on DATABASE_URL's server if set, else on an embedded PostgreSQL."""
    with postgres.postgres_server() as admin_dsn:
        dsn = postgres.create_database(admin_dsn, prefix="taskpool_demo")
        try:
            url = postgres.to_url(dsn)
            django_db.migrate(url)
            yield django_db.MigratedDatabase(dsn=dsn, url=url)
        finally:
            postgres.drop_database(admin_dsn, dsn)


@contextlib.contextmanager
def background(name: str, argv: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """Runs a process with its output in demo-output/<name>.log; stops it (SIGTERM) on the way out."""
    OUTPUT.mkdir(exist_ok=True)
    with (OUTPUT / f"{name}.log").open("wb") as log:
        process = subprocess.Popen(
            argv, env=env, cwd=django_db.DJANGO_DIR, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(60)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def start_app(database_url: str, port: int) -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
    argv = django_db.manage("runserver", "--noreload", f"127.0.0.1:{port}")
    return background("app", argv, django_db.django_env(database_url, TASKPOOL_DEMO_EMAIL_BACKEND="console"))


def start_workers(
    database_url: str, concurrency: int, metrics_port: int
) -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
    argv = django_db.manage(
        "taskpool_worker",
        "--no-reload",
        "--queue-name=*",
        f"--concurrency={concurrency}",
        f"--metrics-port={metrics_port}",
        "--interval=0.2",
    )
    return background("workers", argv, django_db.django_env(database_url, POD_NAME="demo-workers-local"))


def http(method: str, url: str, body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        payload = response.read().decode()
    return json.loads(payload) if payload.startswith(("{", "[")) else payload


def wait_for(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer within {timeout}s; see {OUTPUT}/") from None
            time.sleep(0.2)


def enqueue_burst(app_url: str, burst: tuple[dict[str, Any], ...] = BURST) -> int:
    """Enqueues every part of the burst through the JSON API; returns how many tasks were enqueued."""
    total = 0
    for part in burst:
        answer = http("POST", f"{app_url}/api/tasks/burst", part)
        total += answer["enqueued"]
        print(f"  enqueued {answer['enqueued']:>3} x {answer['task']} on {answer['queue']}")
    return total


def counts(app_url: str) -> dict[str, Any]:
    return dict(http("GET", f"{app_url}/api/counts"))


def render_counts(snapshot: dict[str, Any]) -> str:
    lines = [f"{'queue':<10}" + "".join(f"{status:>12}" for status in STATUSES)]
    for queue, by_status in snapshot["queues"].items():
        lines.append(f"{queue:<10}" + "".join(f"{by_status[status]:>12}" for status in STATUSES))
    lines.append(f"{'total':<10}" + "".join(f"{snapshot['totals'][status]:>12}" for status in STATUSES))
    return "\n".join(lines)


def live_view(app_url: str, expected: int, timeout: float, interval: float = 1.0) -> dict[str, Any]:
    """Prints the counts per queue and status until `expected` tasks are finished (or the timeout)."""
    start = time.monotonic()
    while True:
        snapshot = counts(app_url)
        finished = snapshot["totals"]["SUCCESSFUL"] + snapshot["totals"]["FAILED"]
        elapsed = time.monotonic() - start
        print(f"\n[{elapsed:5.1f}s] {finished}/{expected} finished\n{render_counts(snapshot)}", flush=True)
        if finished >= expected or elapsed > timeout:
            return snapshot
        time.sleep(interval)


def worker_metrics(metrics_url: str) -> dict[str, float]:
    """A few totals from the workers' /metrics."""
    text = http("GET", f"{metrics_url}/metrics")
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "taskpool_worker_tasks_finished_total":
                key = f"finished {sample.labels['outcome']}"
                totals[key] = totals.get(key, 0) + sample.value
            elif sample.name in ("taskpool_worker_processes", "taskpool_worker_process_restarts_total"):
                totals[sample.name] = sample.value
            elif sample.name == "taskpool_worker_task_queue_wait_seconds_sum":
                totals["queue wait seconds (sum)"] = totals.get("queue wait seconds (sum)", 0) + sample.value
    return totals


def main() -> int:
    # SIGTERM unwinds like Ctrl+C: the app, the workers and the embedded server are stopped on the way out.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=3, help="worker processes (default: 3)")
    parser.add_argument("--app-port", type=int, default=0, help="demo app port (default: a free one)")
    parser.add_argument(
        "--metrics-port", type=int, default=0, help="worker metrics port (default: a free one)"
    )
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for the burst")
    args = parser.parse_args()
    app_port = args.app_port or django_db.free_port()
    metrics_port = args.metrics_port or django_db.free_port()
    app_url, metrics_url = f"http://127.0.0.1:{app_port}", f"http://127.0.0.1:{metrics_port}"

    print("starting PostgreSQL and migrating a fresh database...")
    with (
        database() as db,
        start_app(db.url, app_port),
        start_workers(db.url, args.concurrency, metrics_port) as workers,
    ):
        wait_for(f"{app_url}/healthz")
        wait_for(f"{metrics_url}/healthz")
        print(f"demo app:  {app_url}/api/counts   worker metrics: {metrics_url}/metrics  logs: {OUTPUT}/")
        print(f"enqueueing a burst through {app_url}/api/tasks/burst:")
        started = time.monotonic()
        expected = enqueue_burst(app_url)
        final = live_view(app_url, expected, args.timeout)
        elapsed = time.monotonic() - started
        finished = final["totals"]["SUCCESSFUL"] + final["totals"]["FAILED"]
        print(
            f"\nsummary: {finished}/{expected} tasks finished in {elapsed:.1f}s ({finished / elapsed:.1f}/s)"
        )
        totals = final["totals"]
        print(f"  successful {totals['SUCCESSFUL']}, failed {totals['FAILED']} (flaky fails on purpose)")
        for name, value in worker_metrics(metrics_url).items():
            print(f"  {name}: {value:g}")
        workers.send_signal(signal.SIGTERM)
        code = workers.wait(60)
        print(f"workers stopped gracefully on SIGTERM (exit code {code})")
    return 0 if finished >= expected else 1


if __name__ == "__main__":
    sys.exit(main())
