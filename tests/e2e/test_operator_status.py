"""Stalled on a real control plane: what the API server or admission refuses reaches the pool's status and
Events with the server's own message, and nothing else of the pool is lost.

The operator runs as a local process against the local cluster (tests/e2e/operator_harness.py); the test
namespace enforces Pod Security "restricted".
"""

from __future__ import annotations

import pytest

from devcluster import operator_harness as h
from devcluster.control_plane import LocalCluster
from devcluster.operator_harness import OperatorProcess
from devdb.demo_project import MigratedDatabase

pytestmark = pytest.mark.e2e


def warnings(cluster: LocalCluster, namespace: str, pool: str, reason: str) -> list[str]:
    return [
        e["message"]
        for e in h.events(cluster, namespace, pool)
        if e["reason"] == reason and e["type"] == "Warning"
    ]


def test_a_deployment_the_api_server_refuses_stalls_the_pool_and_keeps_the_running_one(
    cluster: LocalCluster, namespace: str, database: MigratedDatabase, operator: OperatorProcess
) -> None:
    h.create_pool(
        cluster, namespace, h.pool_manifest("shop", "db", scaling={"minReplicas": 0, "pollInterval": "1s"})
    )
    h.wait_for_condition(cluster, namespace, "shop", "Ready", timeout=60, status="True")
    before = h.get_deployment(cluster, namespace, "shop-workers")
    assert before is not None

    # The CRD takes any string as a label value; the API server refuses it in the Deployment's template.
    cluster.rest.patch(
        h.pools_path(namespace, "shop"), {"spec": {"worker": {"labels": {"team": "web shop!"}}}}
    )
    pool = h.wait_for_condition(
        cluster, namespace, "shop", "Stalled", timeout=60, status="True", reason="DeploymentRejected"
    )
    stalled = h.condition(pool, "Stalled")
    assert "web shop!" in stalled["message"], stalled  # the API server's own words
    assert stalled["observedGeneration"] == pool["metadata"]["generation"]
    assert (
        pool["status"]["observedGeneration"] == pool["metadata"]["generation"]
    )  # kstatus: Failed, not waiting
    assert h.condition(pool, "Reconciling")["status"] == "False"
    assert h.condition(pool, "Ready")["reason"] == "DeploymentRejected"
    (event,) = h.wait_until(
        lambda: warnings(cluster, namespace, "shop", "DeploymentRejected"), 30, "the DeploymentRejected Event"
    )
    assert "web shop!" in event
    # Nothing else is lost: the Deployment as it was keeps running, the queue is still measured.
    after = h.get_deployment(cluster, namespace, "shop-workers")
    assert after is not None
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    assert after["spec"]["template"] == before["spec"]["template"]
    assert h.condition(pool, "DatabaseReachable")["status"] == "True"
    assert pool["status"]["readyTasks"] == 0

    # Fixing the spec is enough.
    cluster.rest.patch(
        h.pools_path(namespace, "shop"), {"spec": {"worker": {"labels": {"team": "web-shop"}}}}
    )
    h.wait_for_condition(cluster, namespace, "shop", "Ready", timeout=90, status="True")
    pool = h.wait_for_condition(cluster, namespace, "shop", "Stalled", timeout=30, status="False")
    deployment = h.get_deployment(cluster, namespace, "shop-workers")
    assert deployment is not None
    assert deployment["spec"]["template"]["metadata"]["labels"]["team"] == "web-shop"


def test_a_scheduler_deployment_the_api_server_refuses_stalls_the_pool(
    cluster: LocalCluster, namespace: str, database: MigratedDatabase, operator: OperatorProcess
) -> None:
    # The CRD takes each quantity on its own; the API server refuses requests above their limits.
    refused = {"enabled": True, "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}}
    manifest = h.pool_manifest(
        "cron", "db", scaling={"minReplicas": 0, "pollInterval": "1s"}, scheduler=refused
    )
    h.create_pool(cluster, namespace, manifest)
    pool = h.wait_for_condition(
        cluster, namespace, "cron", "Stalled", timeout=60, status="True", reason="DeploymentRejected"
    )
    message = h.condition(pool, "Stalled")["message"]
    assert "cron-scheduler" in message, message
    assert "must be less than or equal to cpu limit" in message, message  # the API server's own words
    (event,) = h.wait_until(
        lambda: warnings(cluster, namespace, "cron", "DeploymentRejected"), 30, "the DeploymentRejected Event"
    )
    assert "must be less than or equal to cpu limit" in event
    assert h.get_deployment(cluster, namespace, "cron-scheduler") is None
    assert h.get_deployment(cluster, namespace, "cron-workers") is not None  # the workers are written

    # Fixing the spec is enough.
    cluster.rest.patch(
        h.pools_path(namespace, "cron"), {"spec": {"scheduler": {"resources": {"requests": {"cpu": "1"}}}}}
    )
    h.wait_for_condition(cluster, namespace, "cron", "Stalled", timeout=90, status="False")
    assert h.get_deployment(cluster, namespace, "cron-scheduler") is not None


def test_worker_pods_refused_by_admission_stall_the_pool(
    cluster: LocalCluster, namespace: str, database: MigratedDatabase, operator: OperatorProcess
) -> None:
    # The namespace enforces Pod Security "restricted": a privileged container is refused at pod creation,
    # which the Deployment only reports as its ReplicaFailure condition.
    manifest = h.pool_manifest(
        "priv",
        "db",
        scaling={"minReplicas": 1, "pollInterval": "1s"},
        worker={"securityContext": {"privileged": True}},
    )
    h.create_pool(cluster, namespace, manifest)
    pool = h.wait_for_condition(
        cluster, namespace, "priv", "Stalled", timeout=120, status="True", reason="PodsRejected"
    )
    message = h.condition(pool, "Stalled")["message"]
    assert "privileged" in message, message
    assert h.condition(pool, "Reconciling")["status"] == "False"
    h.wait_until(lambda: warnings(cluster, namespace, "priv", "PodsRejected"), 30, "the PodsRejected Event")
    # The rest of the pool's state is intact: its Deployment exists with the replicas the operator chose.
    assert h.spec_replicas(cluster, namespace, "priv-workers") == 1
    assert pool["status"]["desiredReplicas"] == 1


def test_an_image_that_cannot_be_pulled_stalls_the_pool_with_a_warning(
    cluster: LocalCluster, namespace: str, database: MigratedDatabase, operator: OperatorProcess
) -> None:
    image = "example.com/not-mapped:1"  # no image the local cluster runs: its pull fails
    manifest = h.pool_manifest(
        "nopull", "db", scaling={"minReplicas": 1, "pollInterval": "1s"}, worker={"image": image}
    )
    h.create_pool(cluster, namespace, manifest)
    pool = h.wait_for_condition(
        cluster, namespace, "nopull", "Stalled", timeout=120, status="True", reason="ImagePullFailed"
    )
    message = h.condition(pool, "Stalled")["message"]
    assert image in message, message
    assert "nopull-workers-" in message, message  # names the pod
    assert h.condition(pool, "Ready")["status"] == "False"
    h.wait_until(
        lambda: any(image in m for m in warnings(cluster, namespace, "nopull", "ImagePullFailed")),
        30,
        "the ImagePullFailed Event",
    )
    # Nothing else of the pool is lost: its Deployment runs the replicas the operator chose.
    assert h.spec_replicas(cluster, namespace, "nopull-workers") == 1


def test_crash_looping_workers_stall_the_pool_with_a_warning(
    cluster: LocalCluster, namespace: str, database: MigratedDatabase, operator: OperatorProcess
) -> None:
    # A settings module that does not exist: every start of the worker fails, the kubelet backs off.
    env = [{"name": "DJANGO_SETTINGS_MODULE", "value": "no_such_settings"}]
    manifest = h.pool_manifest(
        "crashing", "db", scaling={"minReplicas": 1, "pollInterval": "1s"}, worker={"env": env}
    )
    h.create_pool(cluster, namespace, manifest)
    pool = h.wait_for_condition(
        cluster, namespace, "crashing", "Stalled", timeout=180, status="True", reason="WorkersCrashLooping"
    )
    message = h.condition(pool, "Stalled")["message"]
    assert message.startswith("CrashLoopBackOff"), message
    assert "crashing-workers-" in message, message
    h.wait_until(
        lambda: warnings(cluster, namespace, "crashing", "WorkersCrashLooping"),
        30,
        "the WorkersCrashLooping Event",
    )
    assert h.spec_replicas(cluster, namespace, "crashing-workers") == 1
