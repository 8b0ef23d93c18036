"""The local demo: PostgreSQL, the demo Django app, a pool of worker processes and a burst of tasks.

    make demo                                   (or: .venv/bin/python -m scripts.demo --help)

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
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from charts import checks
from devcluster import binaries
from devcluster.control_plane import LocalCluster
from devdb import demo_project
from monitoring.plot import plot_timeline

ROOT = Path(__file__).resolve().parents[1]

# Logs, the cluster's state and the timeline plot; TASKPOOL_DEMO_OUTPUT moves them (the end-to-end test does).
OUTPUT = Path(os.environ.get("TASKPOOL_DEMO_OUTPUT") or ROOT / "demo-output")
STATUSES = ("READY", "RUNNING", "SUCCESSFUL", "FAILED")
# The demo proper starts with this line, all being up (benchmarks/demo_first_run.py counts lines before it).
BURST_BANNER = "enqueueing a burst"

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
def background(name: str, argv: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """Runs a process with its output in demo-output/<name>.log; stops it (SIGTERM) on the way out."""
    OUTPUT.mkdir(parents=True, exist_ok=True)
    with (OUTPUT / f"{name}.log").open("wb") as log:
        process = subprocess.Popen(
            argv, env=env, cwd=demo_project.DJANGO_DIR, stdout=log, stderr=subprocess.STDOUT
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
    argv = demo_project.manage("runserver", "--noreload", f"127.0.0.1:{port}")
    return background(
        "app", argv, demo_project.django_env(database_url, TASKPOOL_DEMO_EMAIL_BACKEND="console")
    )


def start_workers(
    database_url: str, concurrency: int, metrics_port: int
) -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
    argv = demo_project.manage(
        "taskpool_worker",
        "--no-reload",
        "--queue-name=*",
        f"--concurrency={concurrency}",
        f"--metrics-port={metrics_port}",
        "--interval=0.2",
    )
    return background("workers", argv, demo_project.django_env(database_url, POD_NAME="demo-workers-local"))


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


# --- the whole stack: the local cluster, the Helm chart, the operator and an autoscaled pool ----------

DEMO_NAMESPACE = "taskpool-demo"
DEMO_RELEASE = "taskpool"
DEMO_POOL = "demo"
POOL_PATH = f"/apis/taskpool.dev/v1alpha1/namespaces/{DEMO_NAMESPACE}/taskworkerpools/{DEMO_POOL}"
# The schedule the pool's scheduler fires once it is enabled, after the burst (so the burst's counts stay
# its own): a periodic task that wakes the pool from zero.
DEMO_SCHEDULE_EVERY_S = 20
DEMO_SCHEDULES = {
    "demo-tick": {"task": "taskpool_demo.tasks.noop", "every": DEMO_SCHEDULE_EVERY_S, "missed": "skip"}
}
# devcluster/images.py maps it to the demo project and the worker runtime (worker_image/Dockerfile).
WORKER_IMAGE = "ghcr.io/taskpool/taskpool-worker-demo:0.1.0"


def demo_values(max_replicas: int) -> dict[str, Any]:
    """The chart values of the demo: the operator limited to the demo namespace, and the pool."""
    return {
        "operator": {"watchNamespaces": [DEMO_NAMESPACE], "logFormat": "text"},
        "pools": [
            {
                "name": DEMO_POOL,
                "spec": {
                    "queues": ["*"],
                    "database": {"secretName": "demo-database"},
                    "worker": {
                        "image": WORKER_IMAGE,
                        "concurrency": 2,
                        "interval": "200ms",
                        "shutdownTimeout": "20s",
                        "terminationGracePeriodSeconds": 30,
                        "env": [
                            {"name": "TASKPOOL_DEMO_EMAIL_BACKEND", "value": "locmem"},
                            {"name": "TASKPOOL_DEMO_SCHEDULES", "value": json.dumps(DEMO_SCHEDULES)},
                        ],
                    },
                    "scaling": {
                        "minReplicas": 0,
                        "maxReplicas": max_replicas,
                        "tasksPerReplica": 10,
                        "pollInterval": "1s",
                        "scaleDownStabilization": "10s",
                        "scaleToZeroAfter": "15s",
                    },
                },
            }
        ],
    }


def helm_run(cluster: LocalCluster, *args: str, timeout: float = 600) -> str:
    env = {
        **os.environ,
        "KUBECONFIG": str(cluster.kubeconfig),
        "HELM_CACHE_HOME": str(OUTPUT / "helm" / "cache"),
        "HELM_CONFIG_HOME": str(OUTPUT / "helm" / "config"),
        "HELM_DATA_HOME": str(OUTPUT / "helm" / "data"),
    }
    result = subprocess.run(
        [checks.helm_binary(), *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"helm {args[0]} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def pool_status(cluster: LocalCluster) -> dict[str, Any]:
    return dict(cluster.rest.get(POOL_PATH).get("status") or {})


def scale_events(cluster: LocalCluster) -> list[str]:
    events = cluster.rest.get(
        f"/api/v1/namespaces/{DEMO_NAMESPACE}/events",
        fieldSelector=f"involvedObject.kind=TaskWorkerPool,involvedObject.name={DEMO_POOL}",
    )["items"]
    events.sort(key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
    return [
        f"{(e.get('lastTimestamp') or '')[11:19]} {e['reason']}: {e['message']}"
        for e in events
        if e["reason"] in {"ScaledUp", "ScaledDown"}
    ]


def stack_live_view(
    cluster: LocalCluster, app_url: str, expected: int, timeout: float, max_replicas: int
) -> dict[str, Any]:
    """One line a second: queue depth, desired/current/ready replicas and finished tasks, until the queue is
    drained and the pool is back at zero replicas (or the timeout). Every line is also a sample of the
    timeline plot (`samples` in the result)."""
    columns = ("time", "ready", "running", "desired", "current", "ready pods", "finished")
    print("\n" + " ".join(f"{c:>{w}}" for c, w in zip(columns, (7, 6, 8, 8, 8, 11, 12), strict=True)))
    start = time.monotonic()
    peak: dict[str, Any] = {"peak_replicas": 0, "first_pod_s": None, "drained_s": None, "zero_s": None}
    samples: list[dict[str, float]] = []
    while True:
        elapsed = time.monotonic() - start
        status = pool_status(cluster)
        totals = counts(app_url)["totals"]
        finished = totals["SUCCESSFUL"] + totals["FAILED"]
        current, ready_pods = status.get("replicas", 0), status.get("readyReplicas", 0)
        peak["peak_replicas"] = max(peak["peak_replicas"], current)
        if ready_pods and peak["first_pod_s"] is None:
            peak["first_pod_s"] = elapsed
        if finished >= expected and peak["drained_s"] is None:
            peak["drained_s"] = elapsed
        samples.append(
            {
                "t": elapsed,
                "ready": status.get("readyTasks", 0),
                "running": status.get("runningTasks", 0),
                "replicas": current,
                "desired": status.get("desiredReplicas", 0),
                "max_replicas": max_replicas,
            }
        )
        print(
            f"{elapsed:6.0f}s {status.get('readyTasks', 0):>6} {status.get('runningTasks', 0):>8}"
            f" {status.get('desiredReplicas', 0):>8} {current:>8} {ready_pods:>11} {finished:>6}/{expected}",
            flush=True,
        )
        if peak["drained_s"] is not None and current == 0 and status.get("desiredReplicas", 0) == 0:
            peak["zero_s"] = elapsed
            return {"totals": totals, "samples": samples, **peak}
        if elapsed > timeout:
            print(f"timed out after {timeout:.0f}s")
            return {"totals": totals, "samples": samples, **peak}
        time.sleep(1)


def scheduled_wakeup(cluster: LocalCluster, app_url: str, timeout: float) -> float | None:
    """Enables the pool's scheduler (with retention) while the pool is at zero pods, and watches the schedule
    fire, the pool wake up and the scheduled task run; seconds from enabling to that task's success."""
    print(
        f"\nenabling the pool's scheduler: schedule 'demo-tick' enqueues a no-op task every "
        f"{DEMO_SCHEDULE_EVERY_S}s while the pool has no worker"
    )
    before = counts(app_url)["totals"]["SUCCESSFUL"]
    cluster.rest.patch(
        POOL_PATH,
        {"spec": {"scheduler": {"enabled": True}, "retention": {"successful": "24h", "failed": "168h"}}},
    )
    start = time.monotonic()
    seen: set[str] = set()
    while (elapsed := time.monotonic() - start) < timeout:
        status = pool_status(cluster)
        steps = {
            "scheduler pod ready": (status.get("scheduler") or {}).get("readyReplicas", 0) >= 1,
            "schedule fired, pool woke from zero": status.get("desiredReplicas", 0) > 0,
        }
        for step, done in steps.items():
            if done and step not in seen:
                seen.add(step)
                print(f"  {elapsed:4.0f}s {step}")
        if counts(app_url)["totals"]["SUCCESSFUL"] > before:
            print(f"  {elapsed:4.0f}s the scheduled task ran on a worker pod")
            return elapsed
        time.sleep(1)
    print(f"  the scheduled task did not run within {timeout:.0f}s")
    return None


def run_stack(args: argparse.Namespace) -> int:
    app_port = args.app_port or demo_project.free_port()
    app_url = f"http://127.0.0.1:{app_port}"
    OUTPUT.mkdir(parents=True, exist_ok=True)
    values_file = OUTPUT / "values.yaml"
    values_file.write_text(json.dumps(demo_values(args.max_replicas), indent=2))
    print("starting PostgreSQL and migrating a fresh database...")
    with (
        demo_project.standalone_migrated_database("taskpool_demo") as db,
        start_app(db.url, app_port),
    ):
        print("starting the local Kubernetes cluster (etcd, API server, controller-manager, scheduler, node)")
        # A fresh cluster every run: the state folder (kept afterwards for its logs) would otherwise
        # resume the previous run's objects.
        shutil.rmtree(OUTPUT / "cluster", ignore_errors=True)
        with LocalCluster.start(nodes=1, state_dir=OUTPUT / "cluster", backoff_initial_s=2) as cluster:
            cluster.rest.create(
                "/api/v1/namespaces",
                {
                    "metadata": {
                        "name": DEMO_NAMESPACE,
                        "labels": {"pod-security.kubernetes.io/enforce": "restricted"},
                    }
                },
            )
            cluster.rest.create(
                f"/api/v1/namespaces/{DEMO_NAMESPACE}/secrets",
                {"metadata": {"name": "demo-database"}, "stringData": {"DATABASE_URL": db.url}},
            )
            print(f"helm install {DEMO_RELEASE} charts/taskpool --wait (values: {values_file})...")
            began = time.monotonic()
            helm_run(
                cluster, "install", DEMO_RELEASE, "charts/taskpool", "--namespace", DEMO_NAMESPACE,
                "--values", str(values_file), "--wait", "--timeout", "300s",
            )  # fmt: skip
            print(
                f"  installed in {time.monotonic() - began:.1f}s: operator running, pool '{DEMO_POOL}' Ready"
            )
            kubectl = binaries.kubectl()
            print(f"  KUBECONFIG={cluster.kubeconfig} {kubectl} -n {DEMO_NAMESPACE} get twp,deploy,pods")
            wait_for(f"{app_url}/healthz")
            print(f"{BURST_BANNER} through the demo app ({app_url}/api/tasks/burst):")
            started = time.monotonic()
            expected = enqueue_burst(app_url)
            view = stack_live_view(cluster, app_url, expected, args.timeout, args.max_replicas)
            timeline = plot_timeline(view["samples"], OUTPUT / "timeline.png", "taskpool demo: a burst")
            totals = view["totals"]
            finished = totals["SUCCESSFUL"] + totals["FAILED"]
            print(f"\nsummary: {finished}/{expected} tasks finished")
            print(f"  successful {totals['SUCCESSFUL']}, failed {totals['FAILED']} (flaky fails on purpose)")
            if view["first_pod_s"] is not None:
                print(f"  first worker pod ready {view['first_pod_s']:.0f}s after the burst")
            if view["drained_s"] is not None:
                print(
                    f"  queue drained {view['drained_s']:.0f}s after the burst"
                    f" (at most {view['peak_replicas']} worker pods)"
                )
            if view["zero_s"] is not None:
                print(f"  scaled back to zero pods {view['zero_s'] - view['drained_s']:.0f}s after draining")
            for line in scale_events(cluster):
                print(f"  {line}")
            print(f"  total {time.monotonic() - started:.0f}s; logs: {OUTPUT}/; timeline plot: {timeline}")
            woke = scheduled_wakeup(cluster, app_url, args.timeout) if view["zero_s"] is not None else None
            print("helm uninstall (the pool is deleted first, its workers finish, then the operator goes)...")
            helm_run(cluster, "uninstall", DEMO_RELEASE, "-n", DEMO_NAMESPACE, "--wait", "--timeout", "300s")
    ok = finished >= expected and view["zero_s"] is not None and woke is not None
    print("demo finished" if ok else "demo did not complete: see the output above")
    return 0 if ok else 1


def main() -> int:
    # SIGTERM unwinds like Ctrl+C: the app, the workers and the embedded server are stopped on the way out.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--local", action="store_true", help="worker processes on this machine only (no cluster, no Helm)"
    )
    parser.add_argument("--concurrency", type=int, default=3, help="worker processes (default: 3)")
    parser.add_argument("--app-port", type=int, default=0, help="demo app port (default: a free one)")
    parser.add_argument(
        "--metrics-port", type=int, default=0, help="worker metrics port (default: a free one)"
    )
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for the burst")
    parser.add_argument(
        "--max-replicas", type=int, default=4, help="the pool's maxReplicas on the cluster (default: 4)"
    )
    args = parser.parse_args()
    return run_local(args) if args.local else run_stack(args)


def run_local(args: argparse.Namespace) -> int:
    app_port = args.app_port or demo_project.free_port()
    metrics_port = args.metrics_port or demo_project.free_port()
    app_url, metrics_url = f"http://127.0.0.1:{app_port}", f"http://127.0.0.1:{metrics_port}"

    print("starting PostgreSQL and migrating a fresh database...")
    with (
        demo_project.standalone_migrated_database("taskpool_demo") as db,
        start_app(db.url, app_port),
        start_workers(db.url, args.concurrency, metrics_port) as workers,
    ):
        wait_for(f"{app_url}/healthz")
        wait_for(f"{metrics_url}/healthz")
        print(f"demo app:  {app_url}/api/counts   worker metrics: {metrics_url}/metrics  logs: {OUTPUT}/")
        print(f"{BURST_BANNER} through {app_url}/api/tasks/burst:")
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
