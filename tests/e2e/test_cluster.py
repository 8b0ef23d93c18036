"""The local cluster behaves like Kubernetes where our operator depends on it: the real controllers
(Deployment, ReplicaSet with pod-deletion-cost), Pod Security admission, CRD validation rules, in-cluster
credentials in pods, the kubelet's restart and termination behaviour, and a clean teardown."""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from devcluster import network, pki
from devcluster.control_plane import LocalCluster
from devcluster.rest import ApiError, Rest
from devdb import demo_project

pytestmark = pytest.mark.e2e

# A small HTTP server: answers with its pod name, and on SIGTERM stops serving and exits 0.
HTTP_SERVER = """
import http.server, os, signal, threading
name = os.environ["POD_NAME"]
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = name.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("0.0.0.0", 8080), Handler)
def stop(signum, frame):
    print("got SIGTERM", flush=True)
    threading.Thread(target=server.shutdown).start()
signal.signal(signal.SIGTERM, stop)
print("serving on", os.environ["POD_IP"], flush=True)
server.serve_forever()
print("exiting cleanly", flush=True)
"""

SLEEPER = "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *a: sys.exit(0)); time.sleep(3600)"

RESTRICTED_CONTAINER = {
    "securityContext": {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
}


def wait_until(what: str, check: Callable[[], Any], timeout: float = 60) -> Any:
    return demo_project.wait_until(check, timeout, what, interval=0.3)


def container(name: str, script: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "image": "python:3.12-slim",
        "command": ["python", "-c", script],
        **RESTRICTED_CONTAINER,
        **extra,
    }


def pod_manifest(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def start_pod(cluster: LocalCluster, namespace: str, name: str, spec: dict[str, Any]) -> None:
    """Creates the pod and waits until it is Running and Ready."""
    cluster.rest.create(f"/api/v1/namespaces/{namespace}/pods", pod_manifest(name, spec))
    path = f"/api/v1/namespaces/{namespace}/pods/{name}"
    wait_until(f"pod {name} to run", lambda: ready(cluster.rest.get(path)))


def deployment(name: str, replicas: int, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": spec},
        },
    }


def pods(rest: Rest, namespace: str, app: str) -> list[dict[str, Any]]:
    return list(rest.get(f"/api/v1/namespaces/{namespace}/pods", labelSelector=f"app={app}")["items"])


def ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions") or []
    return pod["status"].get("phase") == "Running" and any(
        c["type"] == "Ready" and c["status"] == "True" for c in conditions
    )


def running_pods(rest: Rest, namespace: str, app: str, count: int) -> list[dict[str, Any]]:
    def check() -> list[dict[str, Any]] | None:
        current = pods(rest, namespace, app)
        live = [p for p in current if not p["metadata"].get("deletionTimestamp")]
        return live if len(current) == count and all(ready(p) for p in live) else None

    return list(wait_until(f"{count} ready pods of {app}", check, timeout=90))


def scale(rest: Rest, namespace: str, name: str, replicas: int) -> None:
    rest.patch(
        f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale", {"spec": {"replicas": replicas}}
    )


def _exactly(items: list[dict[str, Any]], count: int) -> list[dict[str, Any]] | None:
    return items if len(items) == count else None


def http_get(ip: str, port: int) -> str:
    with urllib.request.urlopen(f"http://{ip}:{port}/", timeout=5) as response:
        return str(response.read().decode())


def test_deployment_pods_get_own_ips_and_scale_in_terminates_gracefully(
    cluster: LocalCluster, namespace: str
) -> None:
    rest = cluster.rest
    env = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
    ]
    probe = {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1}
    server = container(
        "web", HTTP_SERVER, env=env, ports=[{"name": "http", "containerPort": 8080}], readinessProbe=probe
    )
    spec = {"containers": [server], "terminationGracePeriodSeconds": 20}
    rest.create(f"/apis/apps/v1/namespaces/{namespace}/deployments", deployment("web", 3, spec))

    started = running_pods(rest, namespace, "web", 3)
    ips = {p["status"]["podIP"] for p in started}
    assert len(ips) == 3
    assert all(ipaddress.ip_address(ip) in cluster.slot.subnet for ip in ips)
    for pod in started:
        # every pod listens on the same port, each in its own network namespace
        assert http_get(pod["status"]["podIP"], 8080) == pod["metadata"]["name"]

    scale(rest, namespace, "web", 1)
    remaining = wait_until("scale-in to 1 pod", lambda: _exactly(pods(rest, namespace, "web"), 1))
    removed = {p["metadata"]["name"] for p in started} - {remaining[0]["metadata"]["name"]}
    assert len(removed) == 2
    for name in removed:
        log = cluster.pod_log(namespace, name)
        assert "got SIGTERM" in log
        assert "exiting cleanly" in log
        ended = cluster.pod_terminations(namespace, name)["web"]
        assert ended["exitCode"] == 0
        assert not ended["killedAtDeadline"]


def test_scale_in_removes_the_pods_with_the_lowest_deletion_cost(
    cluster: LocalCluster, namespace: str
) -> None:
    rest = cluster.rest
    spec = {"containers": [container("sleeper", SLEEPER)], "terminationGracePeriodSeconds": 5}
    rest.create(f"/apis/apps/v1/namespaces/{namespace}/deployments", deployment("cost", 4, spec))
    names = sorted(p["metadata"]["name"] for p in running_pods(rest, namespace, "cost", 4))
    costs = dict(zip(names, [100, -50, 300, 10], strict=True))
    for name, cost in costs.items():
        rest.patch(
            f"/api/v1/namespaces/{namespace}/pods/{name}",
            {"metadata": {"annotations": {"controller.kubernetes.io/pod-deletion-cost": str(cost)}}},
        )

    scale(rest, namespace, "cost", 2)

    def survivors() -> set[str] | None:
        current = [p for p in pods(rest, namespace, "cost") if not p["metadata"].get("deletionTimestamp")]
        return {p["metadata"]["name"] for p in current} if len(current) == 2 else None

    assert wait_until("scale-in to 2 pods", survivors) == {n for n, c in costs.items() if c >= 100}


def test_restricted_namespace_rejects_privileged_pod_and_admits_compliant_one(
    cluster: LocalCluster, namespace: str
) -> None:
    privileged = pod_manifest(
        "privileged",
        {"containers": [{"name": "c", "image": "python:3.12-slim", "securityContext": {"privileged": True}}]},
    )
    with pytest.raises(ApiError) as rejected:
        cluster.rest.create(f"/api/v1/namespaces/{namespace}/pods", privileged)
    assert rejected.value.status == 403
    assert 'violates PodSecurity "restricted:latest"' in str(rejected.value)
    assert "privileged" in str(rejected.value)

    start_pod(cluster, namespace, "compliant", {"containers": [container("c", SLEEPER)]})


CEL_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "gadgets.e2e.taskpool.dev"},
    "spec": {
        "group": "e2e.taskpool.dev",
        "names": {"kind": "Gadget", "plural": "gadgets", "singular": "gadget"},
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "properties": {
                                    "minReplicas": {"type": "integer", "minimum": 0},
                                    "maxReplicas": {"type": "integer", "minimum": 1},
                                },
                                "x-kubernetes-validations": [
                                    {
                                        "rule": "self.minReplicas <= self.maxReplicas",
                                        "message": "minReplicas must not exceed maxReplicas",
                                    }
                                ],
                            }
                        },
                    }
                },
            }
        ],
    },
}


def test_crd_validation_rule_rejects_invalid_object(cluster: LocalCluster, namespace: str) -> None:
    rest = cluster.rest
    crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    rest.create(crds, CEL_CRD)
    try:

        def established() -> bool:
            conditions = (
                rest.get(f"{crds}/gadgets.e2e.taskpool.dev").get("status", {}).get("conditions") or []
            )
            return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

        wait_until("the CRD to be established", established)
        path = f"/apis/e2e.taskpool.dev/v1/namespaces/{namespace}/gadgets"

        def gadget(name: str, low: int, high: int) -> dict[str, Any]:
            return {
                "apiVersion": "e2e.taskpool.dev/v1",
                "kind": "Gadget",
                "metadata": {"name": name},
                "spec": {"minReplicas": low, "maxReplicas": high},
            }

        # the discovery of a new CRD takes a moment; creating the valid one first waits for it
        wait_until("the Gadget API to serve", lambda: _created(rest, path, gadget("valid", 1, 3)))
        with pytest.raises(ApiError) as rejected:
            rest.create(path, gadget("invalid", 5, 2))
        assert rejected.value.status == 422
        assert "minReplicas must not exceed maxReplicas" in str(rejected.value)
    finally:
        rest.delete(f"{crds}/gadgets.e2e.taskpool.dev")


def _created(rest: Rest, path: str, body: dict[str, Any]) -> bool:
    try:
        rest.create(path, body)
    except ApiError as exc:
        if exc.status == 404:
            return False
        raise
    return True


def test_pod_reaches_the_api_with_in_cluster_credentials(cluster: LocalCluster, namespace: str) -> None:
    rest = cluster.rest
    rest.create(
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/roles",
        {
            "metadata": {"name": "pod-reader"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}],
        },
    )
    rest.create(
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings",
        {
            "metadata": {"name": "pod-reader"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": namespace}],
        },
    )
    script = (
        "import os; from kubernetes import client, config; config.load_incluster_config(); "
        "pod = client.CoreV1Api().read_namespaced_pod(os.environ['HOSTNAME'], os.environ['NS']); "
        "print('in-cluster read', pod.metadata.name, pod.status.pod_ip)"
    )
    env = [{"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}]
    spec = {
        "restartPolicy": "Never",
        # a scratch /tmp, as restricted charts mount: it must not hide the pod's other volumes
        "volumes": [{"name": "tmp", "emptyDir": {}}],
        "containers": [container("c", script, env=env, volumeMounts=[{"name": "tmp", "mountPath": "/tmp"}])],
    }
    rest.create(f"/api/v1/namespaces/{namespace}/pods", pod_manifest("incluster", spec))
    path = f"/api/v1/namespaces/{namespace}/pods/incluster"
    wait_until("the pod to finish", lambda: rest.get(path)["status"].get("phase") in ("Succeeded", "Failed"))
    phase = rest.get(path)["status"]
    log = cluster.pod_log(namespace, "incluster")
    assert phase["phase"] == "Succeeded", log
    assert f"in-cluster read incluster {phase['podIP']}" in log
    # kubectl logs works too: the API server proxies to the node agent's log endpoint
    assert cluster.kubectl("-n", namespace, "logs", "incluster").stdout == log


# An extension API server: HTTPS with a client certificate required from the front-proxy CA, answering
# discovery and echoing who the aggregator says the caller is (X-Remote-User) and who proxied (its CN).
EXTENSION_SERVER = """
import http.server, json, ssl
GV = "agg.test.example/v1"
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path.startswith("/apis/" + GV + "/whoami"):
            subject = dict(item[0] for item in self.connection.getpeercert()["subject"])
            body = {"user": self.headers.get("X-Remote-User"), "proxy": subject["commonName"]}
        elif self.path.startswith("/apis/" + GV):
            body = {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": GV, "resources": []}
        else:
            self.send_error(404)
            return
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def log_message(self, *args):
        pass
context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile="/front-proxy/ca.crt")
context.verify_mode = ssl.CERT_REQUIRED
context.load_cert_chain("/certs/tls.crt", "/certs/tls.key")
server = http.server.ThreadingHTTPServer(("0.0.0.0", 8443), Handler)
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"""


def test_aggregation_layer_proxies_to_an_extension_api_server_pod(
    cluster: LocalCluster, namespace: str
) -> None:
    """The API server reaches an APIService's pod by its endpoint IP (no kube-proxy) and presents the
    front-proxy identity with the caller's name, as the aggregation layer does for KEDA's metrics adapter."""
    rest = cluster.rest
    cert, key = pki.issue_service_cert(cluster.pki, f"agg-{namespace}", [f"agg.{namespace}.svc"])
    rest.create(
        f"/api/v1/namespaces/{namespace}/secrets",
        {
            "metadata": {"name": "agg-certs"},
            "stringData": {"tls.crt": cert.read_text(), "tls.key": key.read_text()},
        },
    )
    rest.create(
        f"/api/v1/namespaces/{namespace}/configmaps",
        {
            "metadata": {"name": "front-proxy"},
            "data": {"ca.crt": cluster.pki.front_proxy_ca_cert.read_text()},
        },
    )
    spec = {
        "volumes": [
            {"name": "certs", "secret": {"secretName": "agg-certs"}},
            {"name": "front-proxy", "configMap": {"name": "front-proxy"}},
        ],
        "containers": [
            container(
                "server",
                EXTENSION_SERVER,
                volumeMounts=[
                    {"name": "certs", "mountPath": "/certs"},
                    {"name": "front-proxy", "mountPath": "/front-proxy"},
                ],
            )
        ],
    }
    rest.create(f"/apis/apps/v1/namespaces/{namespace}/deployments", deployment("agg", 1, spec))
    rest.create(
        f"/api/v1/namespaces/{namespace}/services",
        {
            "metadata": {"name": "agg"},
            "spec": {"selector": {"app": "agg"}, "ports": [{"port": 443, "targetPort": 8443}]},
        },
    )
    apiservice = "/apis/apiregistration.k8s.io/v1/apiservices/v1.agg.test.example"
    rest.create(
        "/apis/apiregistration.k8s.io/v1/apiservices",
        {
            "metadata": {"name": "v1.agg.test.example"},
            "spec": {
                "group": "agg.test.example",
                "version": "v1",
                "service": {"name": "agg", "namespace": namespace, "port": 443},
                "caBundle": base64.b64encode(cluster.pki.ca_cert.read_bytes()).decode(),
                "groupPriorityMinimum": 1000,
                "versionPriority": 15,
            },
        },
    )
    try:

        def available() -> bool:
            conditions = rest.get(apiservice).get("status", {}).get("conditions") or []
            return any(c["type"] == "Available" and c["status"] == "True" for c in conditions)

        wait_until("the APIService to be Available", available, timeout=120)
        answer = rest.get("/apis/agg.test.example/v1/whoami")
        assert answer == {"user": "taskpool-admin", "proxy": pki.FRONT_PROXY_CLIENT}
    finally:
        rest.delete(apiservice)


def test_crashing_container_restarts_and_unmapped_image_fails_to_pull(
    cluster: LocalCluster, namespace: str
) -> None:
    rest = cluster.rest
    crasher = {"containers": [container("c", "import sys; print('crashing'); sys.exit(3)")]}
    unmapped = {"containers": [{**container("c", SLEEPER), "image": "example.com/not-mapped:1"}]}
    rest.create(f"/api/v1/namespaces/{namespace}/pods", pod_manifest("crasher", crasher))
    rest.create(f"/api/v1/namespaces/{namespace}/pods", pod_manifest("unmapped", unmapped))

    def status(name: str) -> dict[str, Any]:
        statuses = rest.get(f"/api/v1/namespaces/{namespace}/pods/{name}")["status"].get("containerStatuses")
        return dict(statuses[0]) if statuses else {}

    restarted = wait_until(
        "a restart of the crashing container", lambda: status("crasher").get("restartCount", 0) >= 1
    ) and status("crasher")
    assert restarted["lastState"]["terminated"]["exitCode"] == 3
    assert wait_until(
        "the back-off",
        lambda: status("crasher")["state"].get("waiting", {}).get("reason") == "CrashLoopBackOff",
    )
    assert cluster.pod_log(namespace, "crasher").count("crashing") >= 2

    waiting = wait_until("the pull failure", lambda: status("unmapped").get("state", {}).get("waiting"))
    assert waiting["reason"] == "ErrImagePull"
    assert "example.com/not-mapped:1" in waiting["message"]


def _alive(pid: int, cmdline_hint: str) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return cmdline_hint in cmdline


def test_teardown_leaves_no_process_behind() -> None:
    # A separate cluster: the session one must stay up for the other tests.
    with LocalCluster.start(nodes=1) as own:
        namespace = own.create_namespace("teardown-")
        # A pod whose main process ignores SIGTERM and has a child: only a kill of the whole pod ends both.
        script = (
            "import signal, subprocess, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "subprocess.Popen(['sleep', '3600']); print('started', flush=True); time.sleep(3600)"
        )
        start_pod(
            own,
            namespace,
            "stubborn",
            {"containers": [container("c", script)], "terminationGracePeriodSeconds": 60},
        )
        wait_until("the pod's output", lambda: "started" in own.pod_log(namespace, "stubborn"))
        folder = own.pod_folder(namespace, "stubborn")
        container_pid = json.loads((folder / "c.0.start").read_text())["pid"]
        child_pids = [
            int(p) for p in Path(f"/proc/{container_pid}/task/{container_pid}/children").read_text().split()
        ]
        assert child_pids
        processes = {c.proc.pid: c.name for c in own.components}
        processes[container_pid] = "python"
        processes.update({pid: "sleep" for pid in child_pids})
        slot = own.slot
        state_dir = own.state_dir
        assert all(
            _alive(pid, hint if hint != "node-agent" else "node_agent") for pid, hint in processes.items()
        )

    left = {
        pid: hint
        for pid, hint in processes.items()
        if _alive(pid, hint if hint != "node-agent" else "node_agent")
    }
    assert left == {}
    assert not any(
        line.startswith(slot.netns(0)[:-1]) for line in network.ip("netns", "list").stdout.splitlines()
    )
    assert network.ip("link", "show", slot.bridge, check=False).returncode != 0
    assert not state_dir.exists()
    assert os.path.exists("/proc/self")  # sanity: /proc is readable, so the checks above were meaningful
