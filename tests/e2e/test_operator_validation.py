"""The API server rejects bad TaskWorkerPools (the CRD's schema and CEL rules) with readable messages."""

from __future__ import annotations

import copy
import json
import subprocess
from typing import Any

import pytest

from devcluster import operator_harness as h
from devcluster.control_plane import LocalCluster
from devcluster.rest import ApiError

pytestmark = pytest.mark.e2e


def _with(changes: dict[str, Any]) -> dict[str, Any]:
    manifest = h.pool_manifest("checked", "db")
    for path, value in changes.items():
        target = manifest
        *parents, leaf = path.split(".")
        for key in parents:
            target = target.setdefault(key, {})
        target[leaf] = value
    return manifest


def test_a_valid_pool_is_stored_with_its_defaults(
    cluster: LocalCluster, namespace: str, crd_installed: None
) -> None:
    stored = h.create_pool(cluster, namespace, h.pool_manifest("valid", "db"))
    spec = stored["spec"]
    assert spec["backend"] == "default"
    assert spec["database"]["key"] == "DATABASE_URL"
    assert spec["scaling"]["enabled"] is True
    assert spec["scaling"]["pollInterval"] == "5s"
    assert spec["worker"]["concurrency"] == 1
    assert spec["worker"]["metricsPort"] == 9100
    assert spec["orphans"] == {"action": "Fail", "gracePeriod": "60s"}
    header = cluster.kubectl("-n", namespace, "get", "twp").stdout.splitlines()[0].split()
    assert header == ["NAME", "QUEUES", "READY", "RUNNING", "REPLICAS", "DESIRED", "AGE"]
    explained = cluster.kubectl("explain", "twp.spec.scaling.pollInterval").stdout
    assert "How often the queue is measured" in explained


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"spec.scaling": {"minReplicas": 5, "maxReplicas": 2}}, "minReplicas must be less than or equal to"),
        ({"spec.queues": []}, "spec.queues"),
        ({"spec.queues": ["default", "*"]}, 'either ["*"] or a list of queue names'),
        ({"spec.queues": ["q" * 33]}, "Too long"),
        ({"spec.excludeQueues": ["slow"]}, 'excludeQueues is only allowed together with queues ["*"]'),
        ({"spec.scaling": {"pollInterval": "5"}}, "spec.scaling.pollInterval"),
        ({"spec.scaling": {"pollInterval": "100ms"}}, "pollInterval must be between 1s and 5m"),
        ({"spec.scaling": {"scaleDownStabilization": "one minute"}}, "scaleDownStabilization"),
        ({"spec.worker.shutdownTimeout": "10 s"}, "shutdownTimeout"),
        ({"spec.database": {"secretName": "db", "password": "hunter2"}}, "inline database credentials"),
        (
            {"spec.database": {"secretName": "db", "dsn": "postgresql://u:p@h/d"}},
            "inline database credentials",
        ),
        (
            {"spec.worker.env": [{"name": "BROKER", "value": "postgresql://app:s3cret@db:5432/app"}]},
            "must not carry credentials",
        ),
        ({"spec.worker.env": [{"name": "DATABASE_URL", "value": "x"}]}, "set by the operator"),
        ({"spec.replicas": 3}, "only allowed when spec.scaling.enabled is false"),
        (
            {"spec.worker.shutdownTimeout": "60s", "spec.worker.terminationGracePeriodSeconds": 62},
            "must exceed worker.shutdownTimeout",
        ),
        ({"spec.worker.timeLimit": "10m"}, "worker.timeLimit must not exceed worker.shutdownTimeout"),
        ({"spec.worker.timeLimit": "500ms"}, "worker.timeLimit must be between 1s and 24h"),
        ({"metadata.name": "a" * 36}, "metadata.name"),
        ({"spec.orphans": {"action": "Retry"}}, "spec.orphans.action"),
        ({"spec.orphans": {"gracePeriod": "500ms"}}, "orphans.gracePeriod must be between 1s and 24h"),
        ({"spec.orphans": {"gracePeriod": "60"}}, "spec.orphans.gracePeriod"),
        # Queue names the worker's comma-separated --queue-name would split or strip differently from the
        # probe, which counts them as written.
        ({"spec.queues": ["emails,reports"]}, "cannot contain a comma"),
        ({"spec.queues": [" emails"]}, "cannot begin or end with whitespace"),
        ({"spec.queues": ["emails\t"]}, "cannot begin or end with whitespace"),
        ({"spec.queues": ["*"], "spec.excludeQueues": ["slow,bulk"]}, "cannot contain a comma"),
        ({"spec.queues": ["emails", ""]}, "spec.queues[1]"),
        # Embedded Kubernetes types, validated with Kubernetes' own schema (charts/crd_embedded.py).
        ({"spec.worker.resources": {"limits": {"cpu": "two"}}}, "spec.worker.resources.limits.cpu"),
        (
            {"spec.worker.resources": {"requests": {"memory": "1 Gi"}}},
            "spec.worker.resources.requests.memory",
        ),
        (
            {"spec.worker.tolerations": [{"operator": "Exists", "tolerationSeconds": "30s"}]},
            "tolerationSeconds",
        ),
        (
            {"spec.worker.env": [{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": 3}}}]},
            "spec.worker.env[0].valueFrom.fieldRef.fieldPath",
        ),
        ({"spec.worker.securityContext": {"runAsUser": "root"}}, "spec.worker.securityContext.runAsUser"),
    ],
)
def test_invalid_pools_are_rejected(
    cluster: LocalCluster, namespace: str, crd_installed: None, changes: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ApiError) as rejected:
        h.create_pool(cluster, namespace, _with(changes))
    assert rejected.value.status == 422
    message = rejected.value.body.get("message", "")
    assert expected in message, message
    assert "hunter2" not in message


def test_manual_replicas_through_the_scale_subresource(
    cluster: LocalCluster, namespace: str, crd_installed: None
) -> None:
    manifest = copy.deepcopy(h.pool_manifest("manual", "db", scaling={"enabled": False}, replicas=1))
    h.create_pool(cluster, namespace, manifest)
    cluster.kubectl("-n", namespace, "scale", "twp/manual", "--replicas=3")
    assert h.get_pool(cluster, namespace, "manual")["spec"]["replicas"] == 3

    h.create_pool(cluster, namespace, h.pool_manifest("auto", "db"))
    refused = cluster.kubectl("-n", namespace, "scale", "twp/auto", "--replicas=3", check=False)
    assert refused.returncode != 0
    assert "only allowed when spec.scaling.enabled is false" in refused.stderr


def kubectl_apply(
    cluster: LocalCluster, namespace: str, manifest: dict[str, Any]
) -> subprocess.CompletedProcess[str]:
    """`kubectl apply` as a user runs it (strict field validation: unknown fields are errors)."""
    return subprocess.run(
        ["kubectl", f"--kubeconfig={cluster.kubeconfig}", "-n", namespace, "apply", "-f", "-"],
        input=json.dumps(manifest),
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize(
    ("changes", "unknown"),
    [
        ({"spec.worker.resources": {"limit": {"cpu": "1"}}}, "spec.worker.resources.limit"),
        (
            {"spec.worker.resources": {"requests": {"cpu": "1"}, "request": {}}},
            "spec.worker.resources.request",
        ),
        (
            {"spec.worker.tolerations": [{"keys": "gpu", "operator": "Exists"}]},
            "spec.worker.tolerations[0].keys",
        ),
        ({"spec.worker.affinity": {"nodeAfinity": {}}}, "spec.worker.affinity.nodeAfinity"),
        ({"spec.worker.envFrom": [{"secretRefs": {"name": "x"}}]}, "spec.worker.envFrom[0].secretRefs"),
    ],
)
def test_misspelt_keys_of_embedded_types_are_rejected_and_the_stored_pool_kept(
    cluster: LocalCluster, namespace: str, crd_installed: None, changes: dict[str, Any], unknown: str
) -> None:
    good = _with({"spec.worker.resources": {"requests": {"cpu": "250m", "memory": "256Mi"}}})
    assert kubectl_apply(cluster, namespace, good).returncode == 0
    before = h.get_pool(cluster, namespace, "checked")

    bad = _with(changes)
    refused = kubectl_apply(cluster, namespace, bad)
    assert refused.returncode != 0
    assert "unknown field" in refused.stderr, refused.stderr
    assert unknown in refused.stderr, refused.stderr
    after = h.get_pool(cluster, namespace, "checked")
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert after["spec"] == before["spec"]


def test_valid_embedded_types_are_stored_as_written(
    cluster: LocalCluster, namespace: str, crd_installed: None
) -> None:
    worker = {
        "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"cpu": 2, "memory": "1Gi"}},
        "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30}],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["a"]}]}
                    ]
                }
            }
        },
    }
    manifest = _with({f"spec.worker.{key}": value for key, value in worker.items()})
    applied = kubectl_apply(cluster, namespace, manifest)
    assert applied.returncode == 0, applied.stderr
    stored = h.get_pool(cluster, namespace, "checked")["spec"]["worker"]
    assert {key: stored[key] for key in worker} == worker
