"""spec.scheduler on a real control plane: a pool at zero workers with a scheduler enqueues its scheduled
task, the pool scales from zero and the task runs; turning the scheduler off removes it.

The operator runs as a local process against the local cluster; the scheduler and worker pods run the demo
project (tests/cluster/images.py) on a migrated test database, in a namespace enforcing Pod Security
"restricted".
"""

from __future__ import annotations

import json

import psycopg
import pytest

from devcluster import operator_harness as h
from devcluster.control_plane import LocalCluster
from devcluster.operator_harness import OperatorProcess
from devdb.demo_project import MigratedDatabase
from taskpool_operator.probe.sql import TASK_TABLE

pytestmark = pytest.mark.e2e

SCHEDULES = {
    "e2e-tick": {"task": "taskpool_demo.tasks.with_context", "every": 10, "kwargs": {"label": "tick"}}
}


@pytest.fixture
def operator_args() -> tuple[str, ...]:
    return ("--log-level", "debug")


def scheduled_tasks(dsn: str) -> list[tuple[str, str, list[str]]]:
    """(task id, status, worker ids) of the tasks the schedule enqueued, by fire time."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT t.id::text, t.status, t.worker_ids FROM taskpool_schedule_fire AS f"
            f" JOIN {TASK_TABLE} AS t ON t.id::text = f.task_result_id"
            " WHERE f.schedule = 'e2e-tick' ORDER BY f.fire_time"
        ).fetchall()
    return [(task_id, status, list(worker_ids)) for task_id, status, worker_ids in rows]


def test_scheduler_fires_while_the_pool_is_at_zero_and_the_task_wakes_the_pool(
    cluster: LocalCluster, namespace: str, database: MigratedDatabase, operator: OperatorProcess
) -> None:
    env = [
        {"name": "TASKPOOL_DEMO_EMAIL_BACKEND", "value": "locmem"},
        {"name": "TASKPOOL_DEMO_SCHEDULES", "value": json.dumps(SCHEDULES)},
    ]
    manifest = h.pool_manifest(
        "ticks",
        "db",
        worker={"env": env, "shutdownTimeout": "5s", "terminationGracePeriodSeconds": 15},
        scaling={"minReplicas": 0, "pollInterval": "1s", "scaleToZeroAfter": "10s"},
        scheduler={"enabled": True},
        retention={"successful": "336h"},
    )
    h.create_pool(cluster, namespace, manifest)
    scheduler = h.wait_until(
        lambda: h.get_deployment(cluster, namespace, "ticks-scheduler"), 30, "the scheduler Deployment"
    )
    (container,) = scheduler["spec"]["template"]["spec"]["containers"]
    assert container["command"][:3] == ["python", "manage.py", "taskpool_scheduler"]
    assert container["command"][container["command"].index("--retain-successful") + 1] == "1209600"
    assert h.spec_replicas(cluster, namespace, "ticks-workers") == 0

    # The scheduler pod exists only if its template passes Pod Security "restricted"; it becomes ready, and
    # the pool's status shows it, while the pool has no worker.
    status = h.wait_until(
        lambda: (
            (h.get_pool(cluster, namespace, "ticks").get("status", {}).get("scheduler") or {}).get(
                "readyReplicas"
            )
            == 1
            and h.get_pool(cluster, namespace, "ticks")["status"]
        ),
        180,
        "a ready scheduler pod in the pool's status",
    )
    assert status["scheduler"]["deployment"] == "ticks-scheduler"

    # A fire enqueues the task, the pool scales from zero, a worker pod of the pool runs it.
    tasks = h.wait_until(
        lambda: [t for t in scheduled_tasks(database.dsn) if t[1] == "SUCCESSFUL"],
        240,
        "a scheduled task run by a worker",
    )
    task_id, _, worker_ids = tasks[0]
    assert worker_ids[-1].startswith("ticks-workers-"), worker_ids
    assert any(e["reason"] == "ScaledUp" for e in h.events(cluster, namespace, "ticks")), task_id

    # A deleted scheduler Deployment is put back.
    first_uid = h.get_deployment(cluster, namespace, "ticks-scheduler")["metadata"]["uid"]
    cluster.rest.delete(h.deployment_path(namespace, "ticks-scheduler"))
    h.wait_until(
        lambda: (
            (h.get_deployment(cluster, namespace, "ticks-scheduler") or {"metadata": {"uid": first_uid}})[
                "metadata"
            ]["uid"]
            != first_uid
        ),
        60,
        "the scheduler Deployment to be recreated",
    )

    # Turning the scheduler off deletes its Deployment and its status.
    cluster.rest.patch(
        h.pools_path(namespace, "ticks"), {"spec": {"scheduler": {"enabled": False}, "retention": None}}
    )
    h.wait_until(
        lambda: h.get_deployment(cluster, namespace, "ticks-scheduler") is None, 60, "the scheduler to go"
    )
    h.wait_until(
        lambda: "scheduler" not in h.get_pool(cluster, namespace, "ticks").get("status", {}),
        30,
        "status.scheduler to go",
    )
