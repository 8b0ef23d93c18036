"""Reaction time: from a burst of tasks being committed to the worker Deployment's spec.replicas changing.

Runs the real operator (`taskpool-operator run`, a local process) against the local Kubernetes control plane
(devcluster) and a migrated PostgreSQL database. Two pools, pollInterval 1s, min 0, on the same database and
operator: one polls (queue `emails`), the other also wakes on NOTIFY (`spec.scaling.notify`, queue `reports`).
Each trial, for each pool in turn (alternating which goes first), enqueues a burst with the demo project's
`manage.py enqueue_burst` at a random phase of the poll cycle, and times from the newest task's `enqueued_at`
(the database runs on this machine's clock) to the moment a watch on the pool's Deployment sees
spec.replicas leave 0. The pools' image runs no worker, so the queue stays until the benchmark deletes it;
the pool then goes back to zero (no stabilization window) before the next burst. Goals: polling p95 <= 2 s,
NOTIFY p95 <= 0.3 s.

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
import sys
import threading
import time

import psycopg

from benchmarks.common import QUICK, RESULTS, latency_summary, migrated_database
from devcluster import operator_harness as h
from devcluster.control_plane import RESTRICTED, LocalCluster
from devdb import demo_project
from taskpool_operator.probe import sql

TRIALS = 5 if QUICK else 20
BURST = 50
POLL_INTERVAL_S = 1.0
TARGET_P95_S = 2.0
TARGET_NOTIFY_P95_S = 0.3
KEDA_DEFAULT_WORST_CASE_S = 30.0  # ScaledObject pollingInterval default: activation from zero waits for it
# Written by main() itself, not common.write_result (which sorts the keys and adds measured_at and
# machine.system): the committed benchmarks/results/reaction.json has this file's own layout.
RESULT = RESULTS / "reaction.json"
POOLS = {"polling": ("bench", "emails", False), "notify": ("bench-notify", "reports", True)}


class ReplicaWatch:
    """Records (time, spec.replicas) of the Deployment from a watch, in a background thread."""

    def __init__(self, cluster: LocalCluster, namespace: str, deployment: str) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.deployment = deployment
        self.changes: list[tuple[float, int]] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        path = f"/apis/apps/v1/namespaces/{self.namespace}/deployments"
        while not self.stopped.is_set():
            try:
                listed = self.cluster.rest.get(path, fieldSelector=f"metadata.name={self.deployment}")
                version = listed["metadata"]["resourceVersion"]
                watched = f"{path}?fieldSelector=metadata.name%3D{self.deployment}"
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


def wait_for_zero_replicas(
    cluster: LocalCluster, namespace: str, deployment: str, timeout: float, what: str
) -> None:
    h.wait_until(lambda: h.spec_replicas(cluster, namespace, deployment) == 0, timeout, what)


def clear_queue(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DELETE FROM {sql.TASK_TABLE}")


def main() -> None:
    samples: dict[str, list[float]] = {mode: [] for mode in POOLS}
    with migrated_database() as database:
        dsn, url = database.dsn, database.url
        with LocalCluster.start(nodes=1) as cluster:
            h.install_crd(cluster)
            namespace = cluster.create_namespace("bench-", labels=RESTRICTED)
            h.create_dsn_secret(cluster, namespace, "db", url)
            with h.running_operator(cluster, namespace, "--log-level", "warning"):
                watches = {}
                for mode, (pool, queue, wakes_on_notify) in POOLS.items():
                    manifest = h.pool_manifest(
                        pool,
                        "db",
                        queues=[queue],
                        scaling={
                            "minReplicas": 0,
                            "maxReplicas": 10,
                            "tasksPerReplica": 10,
                            "pollInterval": f"{POLL_INTERVAL_S:g}s",
                            "scaleDownStabilization": "0s",
                            "scaleToZeroAfter": "0s",
                            "notify": wakes_on_notify,
                        },
                        # No worker consumes the burst: the image maps to nothing on the local node agent.
                        worker={"image": "registry.invalid/no-worker:bench"},
                    )
                    h.create_pool(cluster, namespace, manifest)
                    deployment = f"{pool}-workers"
                    wait_for_zero_replicas(cluster, namespace, deployment, 60, "the Deployment")
                    watches[mode] = ReplicaWatch(cluster, namespace, deployment)
                time.sleep(3 * POLL_INTERVAL_S)  # the notify pool's LISTEN is in place
                rng = random.Random(20261121)
                for trial in range(TRIALS):
                    modes = list(POOLS) if trial % 2 == 0 else list(reversed(POOLS))
                    for mode in modes:
                        pool, queue, _ = POOLS[mode]
                        watch = watches[mode]
                        time.sleep(rng.uniform(0, POLL_INTERVAL_S))
                        started = time.time()
                        demo_project.enqueue(url, "noop", count=BURST, queue=queue)
                        committed = h.last_enqueued_at(dsn)
                        changed = watch.first_above_zero_after(started, 30)
                        samples[mode].append(changed - committed)
                        print(f"trial {trial + 1}/{TRIALS} {mode}: {samples[mode][-1]:.3f}s", file=sys.stderr)
                        clear_queue(dsn)
                        wait_for_zero_replicas(cluster, namespace, watch.deployment, 30, "zero replicas")
                        watch.changes.clear()
                for watch in watches.values():
                    watch.stopped.set()
            cluster.delete_namespace(namespace)

    polling, notify = latency_summary(samples["polling"]), latency_summary(samples["notify"])
    result = {
        "benchmark": "reaction",
        "what": "seconds from a burst's commit to the worker Deployment's spec.replicas changing",
        "quick": QUICK,
        "trials": TRIALS,
        "burst_tasks": BURST,
        "poll_interval_s": POLL_INTERVAL_S,
        "samples_s": [round(s, 4) for s in samples["polling"]],
        "p50_s": polling["p50_s"],
        "p95_s": polling["p95_s"],
        "max_s": polling["max_s"],
        "target_p95_s": TARGET_P95_S,
        "meets_target": polling["p95_s"] <= TARGET_P95_S,
        "notify": {**notify, "samples_s": [round(s, 4) for s in samples["notify"]]},
        "target_notify_p95_s": TARGET_NOTIFY_P95_S,
        "goal_met": polling["p95_s"] <= TARGET_P95_S and notify["p95_s"] <= TARGET_NOTIFY_P95_S,
        "baseline": {
            "name": "KEDA postgresql scaler, default pollingInterval (worst case from zero)",
            "seconds": KEDA_DEFAULT_WORST_CASE_S,
        },
        "baseline_over_p95": round(KEDA_DEFAULT_WORST_CASE_S / polling["p95_s"], 2),
        "baseline_over_notify_p95": round(KEDA_DEFAULT_WORST_CASE_S / notify["p95_s"], 2),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("p95_s", "notify", "goal_met")}))


if __name__ == "__main__":
    main()
