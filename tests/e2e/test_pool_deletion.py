"""A pool deleted while its worker pods run tasks: the pool says so, the tasks drain, the operator forgets it.

The operator runs as a local process against the local cluster; worker pods run the demo project's
`taskpool_worker` as local processes on a migrated test database.
"""

from __future__ import annotations

import signal

import pytest

from devcluster import operator_harness as h
from devcluster.control_plane import LocalCluster
from devcluster.operator_harness import OperatorProcess
from devdb.demo_project import MigratedDatabase, enqueue, task_rows

pytestmark = pytest.mark.e2e

POOL = "retired"


def test_a_pool_deleted_while_busy_warns_drains_and_is_forgotten(
    cluster: LocalCluster, namespace: str, database: MigratedDatabase, operator: OperatorProcess
) -> None:
    worker = {
        "concurrency": 1,
        "interval": "200ms",
        "shutdownTimeout": "40s",  # longer than the task: the draining pod finishes it
        "terminationGracePeriodSeconds": 55,
    }
    scaling = {"minReplicas": 1, "maxReplicas": 1, "pollInterval": "1s"}
    h.create_pool(cluster, namespace, h.pool_manifest(POOL, "db", scaling=scaling, worker=worker))
    h.wait_for_condition(cluster, namespace, POOL, "Ready", status="True", timeout=180)
    (task_id,) = enqueue(database.url, "slow", count=1, duration=8, queue="default")
    h.wait_until(lambda: task_rows(database.dsn)[task_id]["status"] == "RUNNING", 60, "the task to run")
    # The pool knows the pod is busy (its probe reads RUNNING rows each poll) before it is deleted.
    h.wait_until(
        lambda: (h.get_pool(cluster, namespace, POOL).get("status", {}).get("runningTasks") or 0) == 1,
        30,
        "the pool to count the running task",
    )

    cluster.rest.delete(h.pools_path(namespace, POOL))

    (warning,) = h.wait_until(
        lambda: [e for e in h.events(cluster, namespace, POOL) if e["reason"] == "BusyPodsDraining"],
        30,
        "a BusyPodsDraining Event",
    )
    assert warning["type"] == "Warning"
    assert "the pool was deleted while 1 worker pod(s) ran tasks" in warning["message"]
    h.wait_until(
        lambda: task_rows(database.dsn)[task_id]["status"] in ("SUCCESSFUL", "FAILED"), 90, "the task to end"
    )
    assert task_rows(database.dsn)[task_id]["status"] == "SUCCESSFUL"
    h.wait_until(
        lambda: h.get_deployment(cluster, namespace, f"{POOL}-workers") is None, 60, "the Deployment to go"
    )
    h.wait_until(lambda: f'pool="{POOL}"' not in operator.metrics(), 30, "the pool's metrics to go")
    assert operator.process.poll() is None
    # The pool's daemon ended its round and returned (kopf cancels a daemon that does not, mid-round).
    assert "Daemon 'run' is cancelled" not in operator.log_text()


def test_the_operator_stops_at_the_end_of_its_pools_rounds(
    cluster: LocalCluster, namespace: str, database: MigratedDatabase, operator: OperatorProcess
) -> None:
    """SIGTERM (a rollout of the operator): each pool's daemon finishes its round and returns; kopf cancels
    none mid-round."""
    names = [f"quiet-{i}" for i in range(12)]
    for name in names:
        manifest = h.pool_manifest(name, "db", scaling={"minReplicas": 0, "pollInterval": "1s"})
        h.create_pool(cluster, namespace, manifest)
    for name in names:
        h.wait_for_condition(cluster, namespace, name, "Ready", status="True", timeout=120)

    operator.process.send_signal(signal.SIGTERM)
    assert operator.process.wait(timeout=60) == 0
    log = operator.log_text()
    assert "Daemon 'run' is cancelled" not in log, log[-3000:]
    assert "did not exit in time" not in log
