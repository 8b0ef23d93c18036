"""The node agent: a kubelet stand-in that runs pods as local processes.

    python -m devcluster.node_agent CONFIG.json      (started by the launcher; SIGTERM stops it)

It registers the configured Nodes (capacity from this machine, Ready), renews their Leases in
kube-node-lease every 10 s, watches the pods bound to them and gives each pod a PodRunner (pod_runner.py):
its own network namespace and IP on the cluster bridge, its volumes, its container processes. On SIGTERM it
stops every pod (SIGTERM, then SIGKILL after `shutdown_grace_s`) and removes their namespaces before exiting.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from devcluster import log_server, network
from devcluster.node_config import NodeAgentConfig
from devcluster.pod_runner import PodRunner, now_rfc3339
from devcluster.rest import ApiError, Rest

LEASE_RENEW_S = 10
LEASE_DURATION_S = 40
NODE_STATUS_EVERY_S = 60
WATCH_TIMEOUT_S = 30


def _micro_time() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _memory_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


class Agent:
    def __init__(self, config: NodeAgentConfig) -> None:
        self.config = config
        self.api = Rest(config.api_url, config.ca, config.cert, config.key)
        self.nodes = list(config.nodes)
        self.slot = network.Slot(config.slot)
        self.state_dir = config.state_dir
        self.kube_version = config.kube_version
        self.backoff_initial_s = config.backoff_initial_s
        self.backoff_max_s = config.backoff_max_s
        self.shutdown_grace_s = config.shutdown_grace_s
        self.extra_images = list(config.extra_images)
        host, port = config.api_host, str(config.api_port)
        # What the kubelet injects for the `kubernetes` Service; in-cluster clients read these.
        self.service_env = {
            "KUBERNETES_SERVICE_HOST": host,
            "KUBERNETES_SERVICE_PORT": port,
            "KUBERNETES_SERVICE_PORT_HTTPS": port,
            "KUBERNETES_PORT": f"tcp://{host}:{port}",
            f"KUBERNETES_PORT_{port}_TCP": f"tcp://{host}:{port}",
            f"KUBERNETES_PORT_{port}_TCP_PROTO": "tcp",
            f"KUBERNETES_PORT_{port}_TCP_PORT": port,
            f"KUBERNETES_PORT_{port}_TCP_ADDR": host,
        }
        self.capacity = {
            "cpu": str(os.cpu_count() or 1),
            "memory": str(_memory_bytes()),
            "pods": str(config.max_pods),
            "ephemeral-storage": str(os.statvfs("/").f_frsize * os.statvfs("/").f_blocks),
        }
        self.log_port = self.slot.port(5)
        self.stopping = threading.Event()
        self.stopped_at = float("inf")
        self.runners: dict[str, PodRunner] = {}
        self._index_lock = threading.Lock()
        self._free_indexes = list(self.slot.pod_indexes)
        self._log_lock = threading.Lock()

    def log(self, message: str) -> None:
        with self._log_lock:
            print(f"{now_rfc3339()} node-agent: {message}", file=sys.stderr, flush=True)

    def allocate_pod_index(self) -> int:
        with self._index_lock:
            if not self._free_indexes:
                raise network.NetworkError("the pod subnet is full")
            return self._free_indexes.pop(0)

    def release_pod_index(self, index: int) -> None:
        with self._index_lock:
            self._free_indexes.append(index)

    def event(self, pod: dict[str, Any], kind: str, reason: str, message: str, field_path: str = "") -> None:
        meta = pod["metadata"]
        stamp = now_rfc3339()
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
                **({"fieldPath": field_path} if field_path else {}),
            },
            "reason": reason,
            "message": message[:1024],
            "type": kind,
            "source": {"component": "kubelet", "host": pod["spec"].get("nodeName", "")},
            "reportingComponent": "kubelet",
            "reportingInstance": pod["spec"].get("nodeName", ""),
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        with contextlib.suppress(ApiError):  # events are best effort, as in the kubelet
            self.api.create(f"/api/v1/namespaces/{meta['namespace']}/events", body)

    # --- nodes ---------------------------------------------------------------------------------------
    def node_status(self, name: str) -> dict[str, Any]:
        stamp = now_rfc3339()

        def condition(kind: str, status: str, reason: str, message: str) -> dict[str, str]:
            return {
                "type": kind,
                "status": status,
                "reason": reason,
                "message": message,
                "lastHeartbeatTime": stamp,
                "lastTransitionTime": self._started,
            }

        return {
            "capacity": self.capacity,
            "allocatable": self.capacity,
            "conditions": [
                condition(
                    "MemoryPressure",
                    "False",
                    "KubeletHasSufficientMemory",
                    "kubelet has sufficient memory available",
                ),
                condition(
                    "DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"
                ),
                condition(
                    "PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"
                ),
                condition("Ready", "True", "KubeletReady", "taskpool node agent is posting ready status"),
            ],
            "addresses": [
                {"type": "InternalIP", "address": self.slot.gateway},
                {"type": "Hostname", "address": name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.log_port}},
            "nodeInfo": {
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
                "kernelVersion": platform.release(),
                "osImage": "taskpool local node",
                "containerRuntimeVersion": "taskpool-node-agent://1",
                "kubeletVersion": self.kube_version,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        }

    def register_nodes(self) -> None:
        self._started = now_rfc3339()
        for name in self.nodes:
            node = {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "labels": {
                        "kubernetes.io/hostname": name,
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": "amd64",
                        "node.kubernetes.io/instance-type": "taskpool-local",
                    },
                },
            }
            try:
                created = self.api.create("/api/v1/nodes", node)
            except ApiError as exc:
                if exc.status != 409:
                    raise
                created = self.api.get(f"/api/v1/nodes/{name}")
            self.api.patch(f"/api/v1/nodes/{name}/status", {"status": self.node_status(name)})
            lease = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {
                    "name": name,
                    "namespace": "kube-node-lease",
                    "ownerReferences": [
                        {"apiVersion": "v1", "kind": "Node", "name": name, "uid": created["metadata"]["uid"]}
                    ],
                },
                "spec": {
                    "holderIdentity": name,
                    "leaseDurationSeconds": LEASE_DURATION_S,
                    "renewTime": _micro_time(),
                },
            }
            try:
                self.api.create("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", lease)
            except ApiError as exc:
                if exc.status != 409:
                    raise
            self.log(f"registered node {name} (Ready)")

    def heartbeat(self) -> None:
        last_status = time.monotonic()
        while not self.stopping.wait(LEASE_RENEW_S):
            for name in self.nodes:
                try:
                    self.api.patch(
                        f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}",
                        {"spec": {"renewTime": _micro_time()}},
                    )
                    if time.monotonic() - last_status >= NODE_STATUS_EVERY_S:
                        self.api.patch(f"/api/v1/nodes/{name}/status", {"status": self.node_status(name)})
                except (
                    Exception
                ) as exc:  # the API server down or restarting: urllib3 raises more than OSError
                    self.log(f"heartbeat for node {name} failed: {exc!r}")
            if time.monotonic() - last_status >= NODE_STATUS_EVERY_S:
                last_status = time.monotonic()

    # --- pods ----------------------------------------------------------------------------------------
    def _ours(self, pod: dict[str, Any]) -> bool:
        return pod["spec"].get("nodeName") in self.nodes

    def _observe(self, pod: dict[str, Any], deleted: bool = False) -> None:
        uid = pod["metadata"]["uid"]
        runner = self.runners.get(uid)
        if deleted:
            if runner is not None:
                runner.vanish()
                del self.runners[uid]
            return
        if runner is not None:
            runner.update(pod)
        elif self._ours(pod) and pod.get("status", {}).get("phase") not in ("Succeeded", "Failed"):
            runner = PodRunner(self, pod)
            self.runners[uid] = runner
            runner.start()

    def watch_pods(self) -> None:
        path = "/api/v1/pods?fieldSelector=spec.nodeName%21%3D"  # only pods bound to some node
        while not self.stopping.is_set():
            try:
                listing = self.api.get("/api/v1/pods", fieldSelector="spec.nodeName!=")
                seen = set()
                for pod in listing["items"]:
                    seen.add(pod["metadata"]["uid"])
                    self._observe(pod)
                for uid in [u for u in self.runners if u not in seen]:
                    self.runners.pop(uid).vanish()
                version = listing["metadata"]["resourceVersion"]
                while not self.stopping.is_set():
                    for event in self.api.watch(path, version, WATCH_TIMEOUT_S):
                        if self.stopping.is_set():
                            break
                        obj = event["object"]
                        if event["type"] == "ERROR":
                            raise ApiError("WATCH", path, int(obj.get("code", 500)), obj)
                        version = obj["metadata"]["resourceVersion"]
                        if event["type"] != "BOOKMARK":
                            self._observe(obj, deleted=event["type"] == "DELETED")
            except ApiError as exc:
                if exc.status != 410:  # 410 Gone: the version expired, relist
                    self.log(f"pod watch failed, relisting: {exc}")
                    self.stopping.wait(1)
            except OSError as exc:  # connection trouble (urllib3 errors are OSErrors or subclass them)
                self.log(f"pod watch connection failed, relisting: {exc}")
                self.stopping.wait(1)
            except Exception as exc:  # urllib3 protocol errors and the like: keep the node alive
                self.log(f"pod watch failed, relisting: {exc!r}")
                self.stopping.wait(1)

    def pod_active(self, folder: Path) -> bool:
        """Whether the pod whose files are in `folder` still has processes (for `kubectl logs -f`)."""
        return any(
            r.folder == folder and not r.finished and r.is_alive() for r in list(self.runners.values())
        )

    def stop_soon(self) -> None:
        self.stopped_at = min(self.stopped_at, time.monotonic())
        self.stopping.set()

    def stop(self) -> None:
        self.stop_soon()
        for runner in list(self.runners.values()):
            runner.wake.set()
        for runner in list(self.runners.values()):
            runner.join(timeout=self.shutdown_grace_s + 10)


def main() -> None:
    config = NodeAgentConfig.read(Path(sys.argv[1]))
    agent = Agent(config)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: agent.stop_soon())
    log_server.serve(
        (agent.slot.gateway, agent.log_port),
        config.serving_cert,
        config.serving_key,
        agent.state_dir / "pods",
        agent.pod_active,
    )
    agent.register_nodes()
    threading.Thread(target=agent.heartbeat, name="heartbeat", daemon=True).start()
    threading.Thread(target=agent.watch_pods, name="pod-watch", daemon=True).start()
    config.ready_file.write_text(str(os.getpid()))
    agent.stopping.wait()
    agent.log("stopping: ending every pod")
    agent.stop()
    agent.log("stopped")


if __name__ == "__main__":
    main()
