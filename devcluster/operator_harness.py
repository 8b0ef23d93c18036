"""Running the operator against the local cluster: CRD install, the operator as a subprocess, pools, tasks.

Shared by tests/e2e/test_operator_*.py and benchmarks/reaction.py.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from devcluster.control_plane import LocalCluster
from devcluster.rest import ApiError
from devdb import demo_project
from taskpool_operator import crd
from taskpool_operator.probe.sql import TASK_TABLE

CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
WORKER_IMAGE = "registry.local/taskpool-worker:e2e"

OPERATOR_BIN = Path(sys.executable).with_name("taskpool-operator")


def pools_path(namespace: str, name: str = "") -> str:
    base = f"/apis/{crd.GROUP}/{crd.VERSION}/namespaces/{namespace}/{crd.PLURAL}"
    return f"{base}/{name}" if name else base


def deployment_path(namespace: str, name: str) -> str:
    return f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}"


def wait_until[T](check: Callable[[], T], timeout: float, what: str, interval: float = 0.2) -> T:
    """`demo_project.wait_until`, polling the API server less often by default."""
    return demo_project.wait_until(check, timeout, what, interval)


def install_crd(cluster: LocalCluster) -> None:
    """Creates or replaces the CRD from operator/taskpool_operator/crd.yaml and waits until it is served."""
    manifest = crd.crd_manifest()
    name = manifest["metadata"]["name"]
    try:
        cluster.rest.create(CRD_PATH, manifest)
    except ApiError as exc:
        if exc.status != 409:
            raise
        live = cluster.rest.get(f"{CRD_PATH}/{name}")
        manifest["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"]
        cluster.rest.request("PUT", f"{CRD_PATH}/{name}", manifest)

    def established() -> bool:
        conditions = cluster.rest.get(f"{CRD_PATH}/{name}").get("status", {}).get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

    wait_until(established, 30, "the CRD to be established")


@dataclass
class OperatorProcess:
    process: subprocess.Popen[bytes]
    log: Path
    metrics_port: int
    liveness_port: int

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
            return str(response.read().decode())

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@contextlib.contextmanager
def running_operator(
    cluster: LocalCluster, namespace: str, *extra: str, binary: Path = OPERATOR_BIN
) -> Iterator[OperatorProcess]:
    """`taskpool-operator run` for one namespace, as a local process with the cluster's kubeconfig (`binary`:
    another installation of it, e.g. one with only the image's packages)."""
    folder = Path(tempfile.mkdtemp(prefix="tp-operator-"))
    log = folder / "operator.log"
    metrics_port, liveness_port = demo_project.free_port(), demo_project.free_port()
    argv = [
        str(binary), "run", "--namespace", namespace,
        "--metrics-port", str(metrics_port), "--liveness-port", str(liveness_port), *extra,
    ]  # fmt: skip
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    with log.open("wb") as out:
        process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=folder)
    operator = OperatorProcess(process, log, metrics_port, liveness_port)
    try:
        wait_until(
            lambda: process.poll() is not None or _answers(f"http://127.0.0.1:{liveness_port}/healthz"),
            60,
            "the operator's liveness endpoint",
        )
        assert process.poll() is None, f"the operator exited:\n{operator.log_text()[-3000:]}"
        yield operator
    finally:
        demo_project.stop_process(process)
        # Shown by pytest for failed tests only.
        print(f"--- operator log ({log}) ---\n{operator.log_text()[-20000:]}")
        shutil.rmtree(folder, ignore_errors=True)


def create_dsn_secret(
    cluster: LocalCluster, namespace: str, name: str, url: str, key: str = "DATABASE_URL"
) -> None:
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": {key: url}}
    try:
        cluster.rest.create(f"/api/v1/namespaces/{namespace}/secrets", secret)
    except ApiError as exc:
        if exc.status != 409:
            raise
        cluster.rest.patch(f"/api/v1/namespaces/{namespace}/secrets/{name}", {"stringData": {key: url}})


def pool_manifest(name: str, secret: str, **spec: Any) -> dict[str, Any]:
    """A TaskWorkerPool running the demo project's worker; `spec` keys replace or extend the defaults."""
    worker = {
        "image": WORKER_IMAGE,
        "env": [{"name": "TASKPOOL_DEMO_EMAIL_BACKEND", "value": "locmem"}],
        **spec.pop("worker", {}),
    }
    return {
        "apiVersion": crd.API_VERSION,
        "kind": crd.KIND,
        "metadata": {"name": name},
        "spec": {"queues": ["default"], "database": {"secretName": secret}, "worker": worker, **spec},
    }


def create_pool(cluster: LocalCluster, namespace: str, manifest: dict[str, Any]) -> dict[str, Any]:
    return cluster.rest.create(pools_path(namespace), manifest)


def get_pool(cluster: LocalCluster, namespace: str, name: str) -> dict[str, Any]:
    return cluster.rest.get(pools_path(namespace, name))


def condition(pool: dict[str, Any], condition_type: str) -> dict[str, Any]:
    for found in pool.get("status", {}).get("conditions", []):
        if found["type"] == condition_type:
            return dict(found)
    return {}


def get_deployment(cluster: LocalCluster, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        return cluster.rest.get(deployment_path(namespace, name))
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise


def spec_replicas(cluster: LocalCluster, namespace: str, name: str) -> int | None:
    deployment = get_deployment(cluster, namespace, name)
    return None if deployment is None else int(deployment["spec"].get("replicas", 0))


def events(cluster: LocalCluster, namespace: str, pool: str) -> list[dict[str, Any]]:
    """Events about the pool, oldest first."""
    found = cluster.rest.get(
        f"/api/v1/namespaces/{namespace}/events",
        fieldSelector=f"involvedObject.kind={crd.KIND},involvedObject.name={pool}",
    )["items"]
    return sorted(found, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")


def task_counts(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(f"SELECT status, count(*) FROM {TASK_TABLE} GROUP BY status").fetchall()
    return {str(status): int(count) for status, count in rows}


def last_enqueued_at(dsn: str) -> float:
    """When the newest task was enqueued (epoch seconds; the database runs on this machine's clock)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(f"SELECT extract(epoch FROM max(enqueued_at)) FROM {TASK_TABLE}").fetchone()
    assert row is not None
    assert row[0] is not None, "no task was enqueued"
    return float(row[0])


def wait_for_condition(
    cluster: LocalCluster,
    namespace: str,
    pool: str,
    condition_type: str,
    timeout: float = 30,
    **expected: str,
) -> dict[str, Any]:
    """The pool, once its condition has the `expected` fields (status=..., reason=...)."""

    def matches() -> dict[str, Any]:
        found = get_pool(cluster, namespace, pool)
        current = condition(found, condition_type)
        return found if all(current.get(k) == v for k, v in expected.items()) else {}

    return wait_until(matches, timeout, f"{condition_type} {expected} on pool {pool}")
