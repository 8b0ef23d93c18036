"""Reaction time: from a burst of tasks being committed to the worker Deployment's spec.replicas changing.

Runs the real operator (`taskpool-operator run`, a local process) against the local Kubernetes control plane
(devcluster) and a migrated PostgreSQL database. One pool, pollInterval 1s, min 0: each trial enqueues a
burst with the demo project's `manage.py enqueue_burst` at a random phase of the poll cycle, and times from
the newest task's `enqueued_at` (the database runs on this machine's clock) to the moment a watch on the
Deployment sees spec.replicas leave 0. The pool's image runs no worker, so the queue stays until the
benchmark deletes it; the pool then goes back to zero (no stabilization window) before the next trial.

Baseline, from the same facts users compare us with (docs/REFERENCE): KEDA's postgresql scaler with its
default pollingInterval of 30 s activates a ScaledObject from zero at the next poll, so its worst case is
30 s. The ratio is that figure over our p95.

    QUICK=1 python -m benchmarks.reaction      (5 trials instead of 20)
Writes benchmarks/results/reaction.json.
"""

from __future__ import annotations

import json
import os
import platform
import random
import statistics
import sys
import threading
import time
from pathlib import Path

import psycopg

from devcluster import operator_harness as h
from devcluster.control_plane import RESTRICTED, LocalCluster
from devdb import demo_project
from taskpool_operator.probe import sql

ROOT = Path(__file__).resolve().parents[1]

QUICK = os.environ.get("QUICK") == "1"
TRIALS = 5 if QUICK else 20
BURST = 50
POLL_INTERVAL_S = 1.0
TARGET_P95_S = 2.0
KEDA_DEFAULT_WORST_CASE_S = 30.0  # ScaledObject pollingInterval default: activation from zero waits for it
RESULT = ROOT / "benchmarks" / "results" / "reaction.json"
POOL = "bench"
DEPLOYMENT = f"{POOL}-workers"


class ReplicaWatch:
    """Records (time, spec.replicas) of the Deployment from a watch, in a background thread."""

    def __init__(self, cluster: LocalCluster, namespace: str) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.changes: list[tuple[float, int]] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        path = f"/apis/apps/v1/namespaces/{self.namespace}/deployments"
        while not self.stopped.is_set():
            try:
                listed = self.cluster.rest.get(path, fieldSelector=f"metadata.name={DEPLOYMENT}")
                version = listed["metadata"]["resourceVersion"]
                watched = f"{path}?fieldSelector=metadata.name%3D{DEPLOYMENT}"
                for event in self.cluster.rest.watch(watched, version, 20):
                    seen = time.time()
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self.changes.append((seen, int(event["object"]["spec"].get("replicas", 0))))
                    if self.stopped.is_set():
                        return
            except Exception as exc:  # an expired watch: list and watch again
                print(f"watch restarted: {exc}", file=sys.stderr)

    def first_above_zero_after(self, since: float, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for seen, replicas in list(self.changes):
                if seen >= since and replicas > 0:
                    return seen
            time.sleep(0.01)
        raise RuntimeError(f"spec.replicas did not change within {timeout:g}s")


def clear_queue(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DELETE FROM {sql.TASK_TABLE}")


def main() -> None:
    samples: list[float] = []
    with demo_project.standalone_migrated_database("taskpool_bench") as database:
        dsn, url = database.dsn, database.url
        with LocalCluster.start(nodes=1) as cluster:
            h.install_crd(cluster)
            namespace = cluster.create_namespace("bench-", labels=RESTRICTED)
            h.create_dsn_secret(cluster, namespace, "db", url)
            with h.running_operator(cluster, namespace, "--log-level", "warning"):
                manifest = h.pool_manifest(
                    POOL,
                    "db",
                    scaling={
                        "minReplicas": 0,
                        "maxReplicas": 10,
                        "tasksPerReplica": 10,
                        "pollInterval": f"{POLL_INTERVAL_S:g}s",
                        "scaleDownStabilization": "0s",
                        "scaleToZeroAfter": "0s",
                    },
                    # No worker consumes the burst: the image maps to nothing on the local node agent.
                    worker={"image": "registry.invalid/no-worker:bench"},
                )
                h.create_pool(cluster, namespace, manifest)
                h.wait_until(
                    lambda: h.spec_replicas(cluster, namespace, DEPLOYMENT) == 0, 60, "the Deployment"
                )
                watch = ReplicaWatch(cluster, namespace)
                rng = random.Random(20261121)
                for trial in range(TRIALS):
                    time.sleep(rng.uniform(0, POLL_INTERVAL_S))
                    started = time.time()
                    demo_project.enqueue(url, "noop", count=BURST)
                    committed = h.last_enqueued_at(dsn)
                    changed = watch.first_above_zero_after(started, 30)
                    samples.append(changed - committed)
                    print(f"trial {trial + 1}/{TRIALS}: {samples[-1]:.3f}s", file=sys.stderr)
                    clear_queue(dsn)
                    h.wait_until(
                        lambda: h.spec_replicas(cluster, namespace, DEPLOYMENT) == 0, 30, "zero replicas"
                    )
                    watch.changes.clear()
                watch.stopped.set()
            cluster.delete_namespace(namespace)

    quantiles = statistics.quantiles(samples, n=100, method="inclusive")
    p50, p95 = quantiles[49], quantiles[94]
    result = {
        "benchmark": "reaction",
        "what": "seconds from a burst's commit to the worker Deployment's spec.replicas changing",
        "quick": QUICK,
        "trials": TRIALS,
        "burst_tasks": BURST,
        "poll_interval_s": POLL_INTERVAL_S,
        "samples_s": [round(s, 4) for s in samples],
        "p50_s": round(p50, 4),
        "p95_s": round(p95, 4),
        "max_s": round(max(samples), 4),
        "target_p95_s": TARGET_P95_S,
        "meets_target": p95 <= TARGET_P95_S,
        "baseline": {
            "name": "KEDA postgresql scaler, default pollingInterval (worst case from zero)",
            "seconds": KEDA_DEFAULT_WORST_CASE_S,
        },
        "baseline_over_p95": round(KEDA_DEFAULT_WORST_CASE_S / p95, 2),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("p50_s", "p95_s", "baseline_over_p95", "meets_target")}))


if __name__ == "__main__":
    main()
