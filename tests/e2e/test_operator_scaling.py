"""The operator on a real control plane: Deployment, scaling with a real queue, database trouble, cleanup.

The operator runs as a local process (`taskpool-operator run`) against the local cluster; worker pods run the
demo project's `taskpool_worker` as local processes (devcluster/images.py) on a migrated test database.
"""

from __future__ import annotations

import re
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from devcluster import operator_harness as h
from devcluster.control_plane import LocalCluster
from devcluster.operator_harness import OperatorProcess
from devdb import postgres
from devdb.demo_project import MigratedDatabase, enqueue, task_rows
from taskpool_operator import objects, workers

pytestmark = pytest.mark.e2e


@pytest.fixture
def operator_args() -> tuple[str, ...]:
    return ("--log-level", "debug")


def _events(cluster: LocalCluster, namespace: str, pool: str, reason: str) -> list[dict]:
    return [e for e in h.events(cluster, namespace, pool) if e["reason"] == reason]


def test_pool_owns_a_restricted_worker_deployment(
    cluster: LocalCluster, namespace: str, database: MigratedDatabase, operator: OperatorProcess
) -> None:
    pool = h.create_pool(
        cluster, namespace, h.pool_manifest("shop", "db", queues=["emails"], scaling={"minReplicas": 1})
    )
    deployment = h.wait_until(
        lambda: h.get_deployment(cluster, namespace, "shop-workers"), 30, "the worker Deployment"
    )
    assert deployment["metadata"]["ownerReferences"][0]["uid"] == pool["metadata"]["uid"]
    assert deployment["spec"]["replicas"] == 1
    template = deployment["spec"]["template"]
    assert template["metadata"]["labels"]["taskpool.dev/pool"] == "shop"
    (worker,) = template["spec"]["containers"]
    assert worker["command"][:4] == ["python", "manage.py", "taskpool_worker", "--no-reload"]
    assert worker["command"][worker["command"].index("--queue-name") + 1] == "emails"
    env = {e["name"]: e for e in worker["env"]}
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "db", "key": "DATABASE_URL"}
    assert worker["securityContext"]["readOnlyRootFilesystem"] is True

    # The namespace enforces Pod Security "restricted": the pod exists only if the template complies.
    ready = h.wait_until(
        lambda: (h.get_pool(cluster, namespace, "shop").get("status", {}).get("readyReplicas") or 0) >= 1,
        120,
        "a ready worker pod",
    )
    assert ready
    status = h.wait_for_condition(cluster, namespace, "shop", "Ready", status="True", timeout=60)["status"]
    assert status["selector"] == objects.selector_string("shop")
    assert status["observedGeneration"] == pool["metadata"]["generation"]
    assert h.condition(h.get_pool(cluster, namespace, "shop"), "DatabaseReachable")["status"] == "True"
    # Backlog metrics come from the operator, not from workers.
    assert re.search(
        rf'taskpool_queue_ready_tasks\{{namespace="{namespace}",pool="shop",queue="emails"\}} 0',
        operator.metrics(),
    )

    # A manual edit of the Deployment is undone.
    cluster.rest.patch(
        h.deployment_path(namespace, "shop-workers"),
        {"spec": {"template": {"spec": {"terminationGracePeriodSeconds": 7}}}},
    )
    h.wait_until(
        lambda: (
            h.get_deployment(cluster, namespace, "shop-workers")["spec"]["template"]["spec"][
                "terminationGracePeriodSeconds"
            ]
            == 330
        ),
        30,
        "the operator to restore the Deployment",
    )
    # So is a scale of the Deployment itself: the operator's count (an empty queue, minReplicas 1) is back.
    cluster.kubectl("-n", namespace, "scale", "deployment/shop-workers", "--replicas=3")
    h.wait_until(
        lambda: h.spec_replicas(cluster, namespace, "shop-workers") == 1, 30, "the operator's replicas back"
    )

    # A `kubectl rollout restart` is kept: the operator's rewrite carries its stamp (the pods restart once).
    applied = f"applied Deployment {namespace}/shop-workers"  # logged once the rewrite is done
    rewrites = operator.log_text().count(applied)
    cluster.kubectl("-n", namespace, "rollout", "restart", "deployment/shop-workers")
    h.wait_until(lambda: operator.log_text().count(applied) > rewrites, 30, "the operator's rewrite")
    template = h.get_deployment(cluster, namespace, "shop-workers")["spec"]["template"]
    assert objects.ROLLOUT_RESTART in template["metadata"].get("annotations", {}), template["metadata"]

    # Deleting it is undone.
    cluster.rest.delete(h.deployment_path(namespace, "shop-workers"))
    h.wait_until(
        lambda: (
            (d := h.get_deployment(cluster, namespace, "shop-workers"))
            and d["metadata"]["uid"] != deployment["metadata"]["uid"]
        ),
        30,
        "the operator to create the Deployment again",
    )

    # A spec change rolls out, keeping the replicas the operator chose.
    cluster.rest.patch(h.pools_path(namespace, "shop"), {"spec": {"worker": {"concurrency": 2}}})
    h.wait_until(
        lambda: (
            "2"
            in h.get_deployment(cluster, namespace, "shop-workers")["spec"]["template"]["spec"]["containers"][
                0
            ]["command"]
        ),
        30,
        "the new concurrency in the pod template",
    )

    # Deleting the pool deletes its Deployment (owner references) and the operator lets it go (finalizer).
    cluster.rest.delete(h.pools_path(namespace, "shop"))
    h.wait_until(
        lambda: h.get_deployment(cluster, namespace, "shop-workers") is None, 60, "the Deployment to go"
    )
    assert operator.process.poll() is None


def test_replicas_follow_the_queue_up_and_back_to_min(
    cluster: LocalCluster, namespace: str, database: MigratedDatabase, operator: OperatorProcess
) -> None:
    poll_s = 2.0
    h.create_pool(
        cluster,
        namespace,
        h.pool_manifest(
            "burst",
            "db",
            scaling={
                "minReplicas": 0,
                "maxReplicas": 3,
                "tasksPerReplica": 10,
                "pollInterval": f"{poll_s:g}s",
                "scaleDownStabilization": "4s",
                "scaleToZeroAfter": "6s",
            },
            worker={
                "concurrency": 2,
                "interval": "200ms",
                "shutdownTimeout": "20s",
                "terminationGracePeriodSeconds": 30,
            },
        ),
    )
    h.wait_until(lambda: h.spec_replicas(cluster, namespace, "burst-workers") == 0, 30, "the Deployment at 0")

    enqueue(database.url, "slow", count=100, duration=0.3, queue="default")
    # 100 tasks at 10 per replica want 10 pods; maxReplicas caps them at 3: one decision gets there.
    h.wait_until(lambda: h.spec_replicas(cluster, namespace, "burst-workers") == 3, 30, "3 replicas")
    reacted_s = time.time() - h.last_enqueued_at(database.dsn)
    assert reacted_s <= 2 * poll_s, f"took {reacted_s:.1f}s (two poll intervals are {2 * poll_s:g}s)"
    # The Event and the status are written right after the replicas, so they may trail them a little.
    scaled_up = h.wait_until(lambda: _events(cluster, namespace, "burst", "ScaledUp"), 10, "a ScaledUp event")
    assert "scaling up from 0 to 3" in scaled_up[0]["message"], scaled_up
    h.wait_until(
        lambda: (
            h.condition(h.get_pool(cluster, namespace, "burst"), "ScalingLimited").get("reason")
            == "TooManyReplicas"
        ),
        10,
        "ScalingLimited=TooManyReplicas",
    )
    assert re.search(
        rf'taskpool_pool_desired_replicas\{{namespace="{namespace}",pool="burst"\}} 3', operator.metrics()
    )

    # The workers drain the queue, then the pool scales back to zero after the idle period.
    h.wait_until(lambda: h.task_counts(database.dsn).get("SUCCESSFUL") == 100, 240, "every task to succeed")

    def idle_pods_marked() -> bool:
        pods = cluster.rest.get(
            f"/api/v1/namespaces/{namespace}/pods", labelSelector=objects.selector_string("burst")
        )["items"]
        costs = [(p["metadata"].get("annotations") or {}).get(objects.POD_DELETION_COST) for p in pods]
        return bool(costs) and all(cost == str(objects.IDLE_POD_COST) for cost in costs)

    # Before scaling down, the operator marks the (now idle) pods as the cheapest to delete.
    h.wait_until(idle_pods_marked, 60, "pod-deletion-cost on the idle pods")
    h.wait_until(
        lambda: h.spec_replicas(cluster, namespace, "burst-workers") == 0, 60, "the scale back to zero"
    )
    counts = h.task_counts(database.dsn)
    assert counts == {"SUCCESSFUL": 100}, counts  # no worker was stopped in the middle of a task
    assert _events(cluster, namespace, "burst", "ScaledDown")
    status = h.get_pool(cluster, namespace, "burst")["status"]
    assert (status["readyTasks"], status["runningTasks"], status["desiredReplicas"]) == (0, 0, 0)
    assert "lastScaleTime" in status
    assert "restoring it" not in operator.log_text()  # its own scaling is never taken for someone else's


def test_database_trouble_holds_replicas_and_recovers(
    cluster: LocalCluster, namespace: str, migrated_database: MigratedDatabase, operator: OperatorProcess
) -> None:
    h.create_pool(
        cluster,
        namespace,
        h.pool_manifest("held", "missing", scaling={"minReplicas": 1, "pollInterval": "1s"}),
    )
    pool = h.wait_for_condition(cluster, namespace, "held", "DatabaseReachable", reason="SecretNotFound")
    assert h.condition(pool, "DatabaseReachable")["status"] == "False"
    assert h.condition(pool, "Ready")["status"] == "False"
    assert h.spec_replicas(cluster, namespace, "held-workers") == 1

    # A wrong DSN (with a password): the condition says so, the message never carries it, replicas stay.
    params = {k: v for k, v in conninfo_to_dict(migrated_database.dsn).items() if v is not None}
    params.update(dbname="no_such_database", password="not-the-Passw0rd")
    wrong = postgres.to_url(make_conninfo(**params))
    h.create_dsn_secret(cluster, namespace, "missing", wrong)
    enqueue(migrated_database.url, "noop", count=50)
    pool = h.wait_for_condition(cluster, namespace, "held", "DatabaseReachable", reason="ConnectFailed")
    message = h.condition(pool, "DatabaseReachable")["message"]
    assert "not-the-Passw0rd" not in message
    time.sleep(3)  # several polls with the database unreadable
    assert h.spec_replicas(cluster, namespace, "held-workers") == 1
    assert len(_events(cluster, namespace, "held", "ConnectFailed")) == 1  # one Event per transition
    assert len(_events(cluster, namespace, "held", "SecretNotFound")) == 1

    # Fixing the Secret is enough: the operator recovers by itself.
    h.create_dsn_secret(cluster, namespace, "missing", migrated_database.url)
    status = h.wait_for_condition(cluster, namespace, "held", "DatabaseReachable", status="True")["status"]
    assert "readyTasks" in status  # measured again (never before: the Secret was missing from the start)
    for text in (repr(status), operator.log_text()):
        assert "not-the-Passw0rd" not in text
    assert operator.process.poll() is None


def _kill_the_worker_of_a_running_task(
    cluster: LocalCluster,
    namespace: str,
    database: MigratedDatabase,
    pool: str,
    orphans: dict[str, str],
    duration: int,
) -> tuple[str, str]:
    """A pool of one pod whose worker is force-killed while it runs a task; returns (task id, pod name)."""
    h.create_pool(
        cluster,
        namespace,
        h.pool_manifest(
            pool, "db", scaling={"minReplicas": 1, "maxReplicas": 1, "pollInterval": "1s"}, orphans=orphans
        ),
    )
    (task_id,) = enqueue(database.url, "slow", duration=duration, queue="default")
    h.wait_until(
        lambda: h.get_pool(cluster, namespace, pool).get("status", {}).get("runningTasks") == 1,
        120,
        "the task to run",
    )
    (pod,) = cluster.rest.get(
        f"/api/v1/namespaces/{namespace}/pods", labelSelector=objects.selector_string(pool)
    )["items"]
    # Like a node failure or SIGKILL: no chance to finish or fail the task.
    cluster.kubectl("-n", namespace, "delete", "pod", pod["metadata"]["name"], "--grace-period=0", "--force")
    return task_id, pod["metadata"]["name"]


def test_orphaned_tasks_of_a_killed_worker_are_reported_then_failed(
    cluster: LocalCluster, namespace: str, database: MigratedDatabase, operator: OperatorProcess
) -> None:
    task_id, pod = _kill_the_worker_of_a_running_task(
        cluster, namespace, database, "orphans", {"action": "Fail", "gracePeriod": "5s"}, duration=120
    )
    warning = h.wait_until(lambda: _events(cluster, namespace, "orphans", "OrphanedTasks"), 60, "the orphan")
    assert warning[0]["type"] == "Warning"
    assert pod in warning[0]["message"]
    assert "marked FAILED once their pod has been gone for 5s" in warning[0]["message"]

    row = h.wait_until(
        lambda: (r := task_rows(database.dsn)[task_id])["status"] == "FAILED" and r,
        60,
        "the row to be FAILED",
    )
    assert row["exception_class_path"] == "django_taskpool.exceptions.WorkerLost"
    assert pod in row["traceback"]
    assert row["worker_ids"] == [f"{pod}-0"]
    (failed,) = h.wait_until(
        lambda: _events(cluster, namespace, "orphans", "OrphanedTasksFailed"), 30, "the recovery Event"
    )
    assert failed["type"] == "Warning"
    assert pod in failed["message"]
    status = h.wait_until(
        lambda: (
            (s := h.get_pool(cluster, namespace, "orphans").get("status", {})).get("orphansRecovered") and s
        ),
        30,
        "status.orphansRecovered",
    )
    assert (status["orphansRecovered"], status["orphanedTasks"]) == (1, 0)
    metrics_text = operator.metrics()
    recovered = {
        (sample.labels["namespace"], sample.labels["pool"], sample.labels["action"]): sample.value
        for family in text_string_to_metric_families(metrics_text)
        for sample in family.samples
        if sample.name == "taskpool_orphaned_tasks_recovered_total"
    }
    assert recovered == {(namespace, "orphans", "fail"): 1}
    assert re.search(
        rf'taskpool_pool_orphaned_tasks\{{namespace="{namespace}",pool="orphans"\}} 0', metrics_text
    )
    time.sleep(3)  # a few more rounds: the FAILED row is never run again
    assert task_rows(database.dsn)[task_id]["status"] == "FAILED"


def test_requeued_orphans_are_run_again_by_another_worker_pod(
    cluster: LocalCluster, namespace: str, database: MigratedDatabase, operator: OperatorProcess
) -> None:
    task_id, pod = _kill_the_worker_of_a_running_task(
        cluster, namespace, database, "requeue", {"action": "Requeue", "gracePeriod": "2s"}, duration=10
    )
    row = h.wait_until(
        lambda: (r := task_rows(database.dsn)[task_id])["status"] == "SUCCESSFUL" and r,
        120,
        "the requeued task to be run again",
    )
    first, second = row["worker_ids"]
    assert first == f"{pod}-0"
    assert second.startswith("requeue-workers-")
    assert not second.startswith(pod)
    (requeued,) = _events(cluster, namespace, "requeue", "OrphanedTasksRequeued")
    assert requeued["type"] == "Normal"
    assert pod in requeued["message"]
    assert h.get_pool(cluster, namespace, "requeue")["status"]["orphansRecovered"] == 1


def test_manual_mode_follows_kubectl_scale(
    cluster: LocalCluster, namespace: str, database: MigratedDatabase, operator: OperatorProcess
) -> None:
    manifest = h.pool_manifest(
        "manual", "db", scaling={"enabled": False}, replicas=2, worker={"image": "registry.invalid/none:1"}
    )
    h.create_pool(cluster, namespace, manifest)
    h.wait_until(lambda: h.spec_replicas(cluster, namespace, "manual-workers") == 2, 30, "2 replicas")
    cluster.kubectl("-n", namespace, "scale", "twp/manual", "--replicas=0")
    h.wait_until(lambda: h.spec_replicas(cluster, namespace, "manual-workers") == 0, 30, "0 replicas")

    # The condition already held at generation 1: wait for the status written for the scaled generation
    # (the Deployment's reconcile and the scaling loop write it in turn).
    def current_for_scaled_generation() -> dict | None:
        found = h.get_pool(cluster, namespace, "manual")
        generation = found["metadata"]["generation"]
        scaling_active = h.condition(found, "ScalingActive")
        current = (
            found["status"].get("observedGeneration") == generation
            and scaling_active.get("observedGeneration") == generation
        )
        return found if current else None

    pool = h.wait_until(current_for_scaled_generation, 30, "status for the scaled generation")
    assert h.condition(pool, "ScalingActive")["reason"] == "ScalingDisabled", pool["status"]
    h.wait_until(
        lambda: h.get_pool(cluster, namespace, "manual")["status"]["desiredReplicas"] == 0,
        30,
        "desiredReplicas 0",
    )


def _running_by_pod(dsn: str) -> dict[str, str]:
    """RUNNING task ids by the pod of their last worker id."""
    return {
        task_id: workers.pod_of_worker(row["worker_ids"][-1])
        for task_id, row in task_rows(dsn).items()
        if row["status"] == "RUNNING"
    }


def _three_tasks_on_three_pods(
    cluster: LocalCluster, namespace: str, pool: str, database: MigratedDatabase, *, duration: int
) -> tuple[list[str], dict[str, str]]:
    """Waits for the pool's 3 ready pods, enqueues 3 `slow` tasks and waits until each runs on its own pod;
    returns their ids and task id -> pod."""
    h.wait_until(
        lambda: (h.get_pool(cluster, namespace, pool).get("status", {}).get("readyReplicas") or 0) == 3,
        180,
        "3 ready worker pods",
    )
    ids = enqueue(database.url, "slow", count=3, duration=duration, queue="default")

    def on_three_pods() -> dict[str, str] | None:
        found = _running_by_pod(database.dsn)
        return found if len(set(found.values())) == 3 else None

    return ids, h.wait_until(on_three_pods, 60, "3 tasks running on 3 pods")


def test_scale_down_while_pods_are_busy_removes_no_busy_pod(
    cluster: LocalCluster, namespace: str, database: MigratedDatabase, operator: OperatorProcess
) -> None:
    """3 slow tasks on 3 pods with tasksPerReplica 4: the queue alone asks for 1 pod, but no busy pod goes
    and no task is interrupted; once they finish, the pool scales in."""
    worker = {
        "concurrency": 1,  # one task per pod: the 3 tasks run on 3 different pods
        "interval": "200ms",
        "shutdownTimeout": "5s",  # a busy pod deleted would fail its task (SystemExit) within seconds
        "terminationGracePeriodSeconds": 15,
    }
    scaling = {
        "minReplicas": 3,
        "maxReplicas": 3,
        "tasksPerReplica": 4,
        "pollInterval": "2s",
        "scaleDownStabilization": "0s",
        "scaleToZeroAfter": "4s",
    }
    h.create_pool(cluster, namespace, h.pool_manifest("busy", "db", scaling=scaling, worker=worker))
    ids, running = _three_tasks_on_three_pods(cluster, namespace, "busy", database, duration=20)
    busy = set(running.values())

    # Only the queue would now say 1 pod (3 tasks / 4 per pod); the busy pods are the floor.
    cluster.rest.patch(h.pools_path(namespace, "busy"), {"spec": {"scaling": {"minReplicas": 0}}})
    lowest = 3
    while any(row["status"] == "RUNNING" for row in task_rows(database.dsn).values()):
        replicas = h.spec_replicas(cluster, namespace, "busy-workers")
        assert replicas is not None
        lowest = min(lowest, replicas)
        pods = cluster.rest.get(
            f"/api/v1/namespaces/{namespace}/pods", labelSelector=objects.selector_string("busy")
        )["items"]
        deleting = {p["metadata"]["name"] for p in pods if p["metadata"].get("deletionTimestamp")}
        still_running = set(_running_by_pod(database.dsn).values())
        assert not deleting & still_running, f"busy pods being deleted: {deleting & still_running}"
        time.sleep(0.5)
    assert lowest == 3, f"the Deployment went down to {lowest} replicas while 3 pods were busy"

    rows = task_rows(database.dsn)
    assert {rows[i]["status"] for i in ids} == {"SUCCESSFUL"}, {i: rows[i]["status"] for i in ids}
    # Each ran once, on the pod that first claimed it: none was interrupted and claimed again.
    assert {workers.pod_of_worker(rows[i]["worker_ids"][-1]) for i in ids} == busy
    assert all(len(rows[i]["worker_ids"]) == 1 for i in ids)

    # Idle now: the pool scales in.
    h.wait_until(lambda: h.spec_replicas(cluster, namespace, "busy-workers") == 0, 60, "the scale-in to zero")
    assert not _events(cluster, namespace, "busy", "BusyPodsDraining")


def test_a_lowered_max_replicas_drains_busy_pods_with_a_warning_and_loses_no_task(
    cluster: LocalCluster, namespace: str, database: MigratedDatabase, operator: OperatorProcess
) -> None:
    """3 tasks on 3 pods, then maxReplicas 1: the pool scales to 1 (the user's cap wins over busy pods), says
    so in a Warning Event, and the 2 busy pods drain: their tasks finish within worker.shutdownTimeout."""
    worker = {
        "concurrency": 1,  # one task per pod: the 3 tasks run on 3 different pods
        "interval": "200ms",
        "shutdownTimeout": "40s",  # longer than the tasks: a draining pod finishes its task
        "terminationGracePeriodSeconds": 55,
    }
    scaling = {"minReplicas": 3, "maxReplicas": 3, "pollInterval": "1s", "scaleDownStabilization": "0s"}
    h.create_pool(cluster, namespace, h.pool_manifest("capped", "db", scaling=scaling, worker=worker))
    ids, running = _three_tasks_on_three_pods(cluster, namespace, "capped", database, duration=10)

    cluster.rest.patch(
        h.pools_path(namespace, "capped"), {"spec": {"scaling": {"minReplicas": 1, "maxReplicas": 1}}}
    )
    h.wait_until(lambda: h.spec_replicas(cluster, namespace, "capped-workers") == 1, 60, "the scale to 1")
    (warning,) = h.wait_until(
        lambda: _events(cluster, namespace, "capped", "BusyPodsDraining"), 30, "a BusyPodsDraining Event"
    )
    assert warning["type"] == "Warning"
    assert "maxReplicas 1 is below the 3 pods running tasks" in warning["message"]
    assert "2 busy pod(s) drain" in warning["message"]

    h.wait_until(
        lambda: all(task_rows(database.dsn)[i]["status"] in ("SUCCESSFUL", "FAILED") for i in ids),
        120,
        "the drained tasks to finish",
    )
    rows = task_rows(database.dsn)
    assert {rows[i]["status"] for i in ids} == {"SUCCESSFUL"}, {i: rows[i]["status"] for i in ids}
    # Each ran once, on the pod that first claimed it: draining interrupted none.
    assert {i: workers.pod_of_worker(rows[i]["worker_ids"][-1]) for i in ids} == running
    assert all(len(rows[i]["worker_ids"]) == 1 for i in ids)


def _live_pods(cluster: LocalCluster, namespace: str, pool: str) -> tuple[set[str], set[str]]:
    """The pool's worker pods: (all, those being deleted)."""
    pods = cluster.rest.get(
        f"/api/v1/namespaces/{namespace}/pods", labelSelector=objects.selector_string(pool)
    )["items"]
    names = {p["metadata"]["name"] for p in pods}
    return names, {p["metadata"]["name"] for p in pods if p["metadata"].get("deletionTimestamp")}


def test_lowered_manual_replicas_remove_idle_pods_and_spare_the_busy_one(
    cluster: LocalCluster, namespace: str, database: MigratedDatabase, operator: OperatorProcess
) -> None:
    """Scaling disabled, 3 pods, one long task on one of the two newest, then `kubectl scale twp
    --replicas=1`: the idle pods go (the ReplicaSet alone would remove the newest pods, the busy one among
    them), the busy pod stays and its task ends SUCCESSFUL, interrupted by nothing."""
    worker = {
        "concurrency": 1,  # one task per pod
        "interval": "200ms",
        "shutdownTimeout": "5s",  # a busy pod deleted would fail its task (SystemExit) within seconds
        "terminationGracePeriodSeconds": 15,
    }
    scaling = {"enabled": False, "pollInterval": "1s"}
    manifest = h.pool_manifest("handheld", "db", scaling=scaling, replicas=1, worker=worker)
    h.create_pool(cluster, namespace, manifest)
    h.wait_until(
        lambda: (h.get_pool(cluster, namespace, "handheld").get("status", {}).get("readyReplicas") or 0) == 1,
        120,
        "the first worker pod",
    )
    # The first pod is kept busy while two newer ones start, so that the long task runs on a newer one.
    (first,) = enqueue(database.url, "slow", duration=15, queue="default")
    h.wait_until(lambda: _running_by_pod(database.dsn).get(first), 60, "the first task running")
    cluster.kubectl("-n", namespace, "scale", "twp/handheld", "--replicas=3")
    h.wait_until(
        lambda: (h.get_pool(cluster, namespace, "handheld").get("status", {}).get("readyReplicas") or 0) == 3,
        180,
        "3 ready worker pods",
    )
    (long,) = enqueue(database.url, "slow", duration=30, queue="default")
    busy = h.wait_until(lambda: _running_by_pod(database.dsn).get(long), 60, "the long task running")
    h.wait_until(lambda: task_rows(database.dsn)[first]["status"] == "SUCCESSFUL", 60, "the first task done")

    cluster.kubectl("-n", namespace, "scale", "twp/handheld", "--replicas=1")
    h.wait_until(lambda: h.spec_replicas(cluster, namespace, "handheld-workers") == 1, 60, "the scale to 1")
    while task_rows(database.dsn)[long]["status"] == "RUNNING":
        _, deleting = _live_pods(cluster, namespace, "handheld")
        assert busy not in deleting, f"the busy pod {busy} is being deleted"
        time.sleep(0.5)

    row = task_rows(database.dsn)[long]
    assert row["status"] == "SUCCESSFUL", row["status"]
    # Ran once, on the pod that first claimed it: not interrupted and claimed again.
    assert [workers.pod_of_worker(w) for w in row["worker_ids"]] == [busy]
    remaining = h.wait_until(
        lambda: pods if len(pods := _live_pods(cluster, namespace, "handheld")[0]) == 1 else None,
        60,
        "the idle pods to go",
    )
    assert remaining == {busy}
    assert not _events(cluster, namespace, "handheld", "BusyPodsDraining")
    assert "restoring it" not in operator.log_text()  # its own writes are never taken for someone else's
