"""The Helm chart on the local control plane, with the real Helm 4: install into a namespace that enforces Pod
Security "restricted", a pool from values reconciled by the operator pod (run by the node agent from the
operator image's mapping), `--wait` until the pool is Ready, an upgrade that rolls the operator, and an
uninstall that removes everything the chart created.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from charts import checks
from devcluster import image_cache, images
from devcluster import operator_harness as h
from devcluster.control_plane import LocalCluster
from devcluster.rest import ApiError
from devdb.demo_project import MigratedDatabase
from tests.support.cluster import process_ids, write_error

pytestmark = pytest.mark.e2e

POOL = "shop"
INSTANCE = "app.kubernetes.io/instance"
# Every kind the chart can create, with the API path listing it (namespaced ones take the namespace).
NAMESPACED = {
    "ServiceAccount": "/api/v1/namespaces/{ns}/serviceaccounts",
    "Service": "/api/v1/namespaces/{ns}/services",
    "Deployment": "/apis/apps/v1/namespaces/{ns}/deployments",
    "Pod": "/api/v1/namespaces/{ns}/pods",
    "Job": "/apis/batch/v1/namespaces/{ns}/jobs",
    "Role": "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
    "RoleBinding": "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
    "NetworkPolicy": "/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies",
    "ConfigMap": "/api/v1/namespaces/{ns}/configmaps",
    "TaskWorkerPool": "/apis/taskpool.dev/v1alpha1/namespaces/{ns}/taskworkerpools",
}
CLUSTER_SCOPED = {
    "ClusterRole": "/apis/rbac.authorization.k8s.io/v1/clusterroles",
    "ClusterRoleBinding": "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
}


class Helm:
    def __init__(self, cluster: LocalCluster, home: Path) -> None:
        self.env = {
            **os.environ,
            "KUBECONFIG": str(cluster.kubeconfig),
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data"),
        }

    def __call__(
        self, *args: str, timeout: float = 300, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        try:
            binary = checks.helm_binary()
        except checks.ToolMissing as exc:
            pytest.fail(str(exc), pytrace=False)
        result = subprocess.run(
            [binary, *args], env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        assert result.returncode == 0 or not check, (
            f"helm {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
        )
        return result


@pytest.fixture
def helm(cluster: LocalCluster, tmp_path: Path) -> Helm:
    return Helm(cluster, tmp_path / "helm")


@pytest.fixture
def release(namespace: str) -> str:
    # Cluster-scoped names (ClusterRole...) derive from the release name: unique per test namespace.
    return f"tp-{namespace.removeprefix('test-')}"


def pool_values(namespace: str, **scaling: str) -> str:
    spec = h.pool_manifest(POOL, "db", scaling={"minReplicas": 1, "maxReplicas": 3, **scaling})["spec"]
    return "pools=" + json.dumps([{"name": POOL, "spec": spec}])


def release_objects(cluster: LocalCluster, namespace: str, release: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    paths = {**{k: v.format(ns=namespace) for k, v in NAMESPACED.items()}, **CLUSTER_SCOPED}
    for kind, path in paths.items():
        try:
            items = cluster.rest.get(path, labelSelector=f"{INSTANCE}={release}")["items"]
        except ApiError as exc:
            if exc.status == 404:
                continue
            raise
        if items:
            found[kind] = sorted(i["metadata"]["name"] for i in items)
    return found


def operator_pods(cluster: LocalCluster, namespace: str, release: str) -> list[dict[str, Any]]:
    selector = f"{INSTANCE}={release},app.kubernetes.io/component=operator"
    pods = cluster.rest.get(f"/api/v1/namespaces/{namespace}/pods", labelSelector=selector)["items"]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def print_pods(cluster: LocalCluster, namespace: str) -> None:
    """Every pod's container statuses and log tail; pytest shows this output for failed tests only."""
    for pod in cluster.rest.get(f"/api/v1/namespaces/{namespace}/pods")["items"]:
        name = pod["metadata"]["name"]
        statuses = json.dumps(pod.get("status", {}).get("containerStatuses"))[:2000]
        print(f"--- pod {name}: {statuses}\n{cluster.pod_log(namespace, name)[-3000:]}")


def install(
    helm: Helm, cluster: LocalCluster, namespace: str, release: str, *values: str, cluster_wide: bool = False
) -> None:
    """`helm install --wait` with one pool from values (the test namespace only unless cluster_wide)."""
    scope = [] if cluster_wide else ["--set-json", f'operator.watchNamespaces=["{namespace}"]']
    try:
        helm(
            "install", release, str(checks.CHART), "--namespace", namespace, "--wait", "--timeout", "240s",
            *scope, "--set-json", pool_values(namespace), *values,
        )  # fmt: skip
    except AssertionError:
        print_pods(cluster, namespace)
        raise


def uninstall(helm: Helm, cluster: LocalCluster, namespace: str, release: str) -> None:
    """After a test: what the pods did (for a failure's report), then the release and everything it made."""
    print_pods(cluster, namespace)
    helm("uninstall", release, "--namespace", namespace, "--wait", "--timeout", "240s", "--ignore-not-found")


@pytest.fixture
def installed(
    cluster: LocalCluster, namespace: str, release: str, helm: Helm, database: MigratedDatabase
) -> Iterator[str]:
    install(helm, cluster, namespace, release)
    try:
        yield release
    finally:
        uninstall(helm, cluster, namespace, release)


def test_install_wait_returns_with_the_pool_from_values_ready(
    cluster: LocalCluster, namespace: str, installed: str
) -> None:
    # `helm install --wait` has returned: the pool must already report Ready for its current generation.
    pool = h.get_pool(cluster, namespace, POOL)
    ready_condition = h.condition(pool, "Ready")
    assert ready_condition.get("status") == "True", pool.get("status")
    assert ready_condition["observedGeneration"] == pool["metadata"]["generation"]
    assert pool["status"]["observedGeneration"] == pool["metadata"]["generation"]
    assert h.condition(pool, "Reconciling")["status"] == "False"
    assert h.condition(pool, "Stalled")["status"] == "False"
    assert pool["metadata"]["labels"][INSTANCE] == installed
    # The operator ran as a pod (admitted under "restricted") and reconciled the pool into its Deployment.
    (pod,) = operator_pods(cluster, namespace, installed)
    assert ready(pod)
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    # It runs the operator image as its Dockerfile builds it (devcluster/image_cache.py), not the dev venv.
    pid = cluster.container_pid(namespace, pod["metadata"]["name"], pod["spec"]["containers"][0]["name"])
    interpreter, script, *_ = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    assert Path(interpreter).is_relative_to(image_cache.cache_dir()), interpreter
    assert Path(script).is_relative_to(image_cache.cache_dir()), script
    assert "MALLOC_ARENA_MAX=2" in Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0")
    deployment = h.get_deployment(cluster, namespace, f"{POOL}-workers")
    assert deployment is not None
    assert deployment["metadata"]["ownerReferences"][0]["uid"] == pool["metadata"]["uid"]
    assert deployment["spec"]["replicas"] == 1
    log = cluster.pod_log(namespace, pod["metadata"]["name"])
    assert POOL in log, log[-3000:]


def test_the_charts_pods_run_as_non_root_on_read_only_root_filesystems(
    cluster: LocalCluster, namespace: str, installed: str
) -> None:
    """The operator pod and the worker pod it creates: their real processes, not only their specs."""
    worker_selector = f"app.kubernetes.io/instance={POOL}"

    def running(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [p for p in pods if p.get("status", {}).get("phase") == "Running" and ready(p)]

    workers = h.wait_until(
        lambda: running(
            cluster.rest.get(f"/api/v1/namespaces/{namespace}/pods", labelSelector=worker_selector)["items"]
        ),
        120,
        "a running worker pod",
    )
    pods = [*operator_pods(cluster, namespace, installed), *workers]
    assert len(pods) == 2
    for pod in pods:
        name = pod["metadata"]["name"]
        for container in pod["spec"]["containers"]:
            pid = cluster.container_pid(namespace, name, container["name"])
            ids = process_ids(pid)
            assert ids["Uid"] == (10001,) * 4, (name, ids)
            assert ids["Gid"] == (10001,) * 4, (name, ids)
            assert write_error(pid, "/written-by-a-test") == "EROFS", name
            assert write_error(pid, str(images.REPO / "written-by-a-test")) == "EROFS", name


def test_upgrade_with_changed_values_rolls_the_operator(
    cluster: LocalCluster, namespace: str, installed: str, helm: Helm
) -> None:
    (before,) = operator_pods(cluster, namespace, installed)
    helm(
        "upgrade", installed, str(checks.CHART), "--namespace", namespace, "--reuse-values",
        "--set", "operator.logLevel=debug", "--wait", "--timeout", "240s",
    )  # fmt: skip
    (after,) = h.wait_until(
        lambda: [p for p in operator_pods(cluster, namespace, installed) if ready(p)],
        60,
        "the new operator pod",
    )
    assert after["metadata"]["uid"] != before["metadata"]["uid"]
    assert "--log-level=debug" in after["spec"]["containers"][0]["args"]
    # Recreate: the old pod is gone, never two operators at once.
    assert len(operator_pods(cluster, namespace, installed)) == 1
    # The new operator takes over the pool.
    h.wait_for_condition(cluster, namespace, POOL, "Ready", timeout=60, status="True")


def test_uninstall_removes_everything_the_chart_created(
    cluster: LocalCluster, namespace: str, release: str, helm: Helm, database: MigratedDatabase
) -> None:
    # Cluster-wide (the default): the ClusterRole path, against the real API server's authorization.
    install(helm, cluster, namespace, release, "--set", "networkPolicy.enabled=true", cluster_wide=True)
    created = release_objects(cluster, namespace, release)
    assert {"ServiceAccount", "Service", "Deployment", "ClusterRole", "ClusterRoleBinding"} <= created.keys()
    assert h.condition(h.get_pool(cluster, namespace, POOL), "Ready").get("status") == "True"
    assert created["TaskWorkerPool"] == [POOL]

    helm("uninstall", release, "--namespace", namespace, "--wait", "--timeout", "300s")

    # The pre-delete hook deleted the pool while the operator still ran, so its finalizer was removed; then
    # the garbage collector removes the worker Deployment the pool owned.
    h.wait_until(lambda: not release_objects(cluster, namespace, release), 60, "the release's objects to go")
    h.wait_until(
        lambda: h.get_deployment(cluster, namespace, f"{POOL}-workers") is None,
        60,
        "the worker Deployment to go",
    )
    pools = cluster.rest.get(h.pools_path(namespace))["items"]
    assert pools == []
    # The CRD stays: Helm never deletes crds/ (deleting it would delete every pool in the cluster).
    cluster.rest.get(f"{h.CRD_PATH}/taskworkerpools.taskpool.dev")


def test_install_wait_never_counts_a_pool_the_operator_has_not_seen_as_done(
    cluster: LocalCluster, namespace: str, release: str, helm: Helm, tmp_path: Path
) -> None:
    # A chart of one pool and no operator for its namespace: nobody writes the pool's status. kstatus counts a
    # status without observedGeneration or conditions as Current, so without the CRD's status default Helm
    # would return at once; read through the API server the pool says observedGeneration 0, behind its
    # generation, and Helm keeps waiting until its timeout.
    h.install_crd(cluster)
    chart = tmp_path / "pool-only"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: pool-only\nversion: 0.1.0\n")
    (chart / "templates" / "pool.yaml").write_text(json.dumps(h.pool_manifest(POOL, "db")))
    result = helm(
        "install", release, str(chart), "--namespace", namespace, "--wait", "--timeout", "20s", check=False
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "status: InProgress" in output, output
    assert "latest observed generation is 0" in output, output
    pool = h.get_pool(cluster, namespace, POOL)
    assert (pool["metadata"]["generation"], pool["status"]) == (1, {"observedGeneration": 0})


def test_install_wait_fails_fast_and_names_the_missing_secret(
    cluster: LocalCluster, namespace: str, release: str, helm: Helm
) -> None:
    # No Secret "db": the pool cannot become Ready without a human, so it says Stalled and Helm's kstatus
    # wait fails with its message instead of waiting for the timeout.
    values = pool_values(namespace, pollInterval="1s")
    try:
        result = helm(
            "install", release, str(checks.CHART), "--namespace", namespace, "--wait", "--timeout", "60s",
            "--set-json", f'operator.watchNamespaces=["{namespace}"]', "--set-json", values,
            check=False,
        )  # fmt: skip
        output = result.stdout + result.stderr
        assert result.returncode != 0, output
        assert "Secret 'db' does not exist" in output, output
        assert f"TaskWorkerPool/{namespace}/{POOL}" in output, output
        assert "status: Failed" in output, output
        assert "context deadline exceeded" not in output, (
            output
        )  # it failed on the Stalled pool, not the clock
        pool = h.get_pool(cluster, namespace, POOL)
        stalled = h.condition(pool, "Stalled")
        assert (stalled["status"], stalled["reason"]) == ("True", "SecretNotFound")
        assert any(
            e["reason"] == "SecretNotFound" and e["type"] == "Warning"
            for e in h.events(cluster, namespace, POOL)
        )
    finally:
        uninstall(helm, cluster, namespace, release)
