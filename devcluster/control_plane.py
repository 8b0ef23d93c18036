"""The local Kubernetes cluster: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and the node
agent, started from the binaries built by k8sbuild/build.sh.

    with LocalCluster.start(nodes=1) as cluster:
        cluster.kubeconfig        # admin kubeconfig (client certificate, group system:masters)
        cluster.rest.get("/api/v1/nodes")

Everything runs as children of the process that entered the context, each started with a parent-death
signal, so even a SIGKILLed test run leaves no control-plane process behind; pods are ended by the node
agent (see node_agent.py). The API server listens on the cluster bridge address (10.213.<slot>.1:6443) so
that pods, each in its own network namespace, reach it; etcd, the controller-manager and the scheduler listen
on loopback ports of the slot. The state folder holds certificates, kubeconfigs, etcd data and logs
(logs/<component>.log, pods/<namespace>_<name>_<uid>/<container>.log).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import signal
import ssl
import stat
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from devcluster import binaries, images, network, pki
from devcluster.node_config import NodeAgentConfig
from devcluster.rest import ApiError, Rest

API_PORT = 6443
# Namespace labels of Pod Security "restricted" (enforced), what our chart must run under.
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}
SERVICE_CIDR = "10.96.0.0/16"
ISSUER = "https://kubernetes.default.svc.cluster.local"
STOP_TIMEOUT_S = 20.0


def _made_traversable(path: Path) -> list[Path]:
    """Adds g+x and o+x (enter, not list) to the folders above `path` that lack them, as an image's folders
    have them: containers run as non-root users (10001 for our images) and must reach the checkout and the
    interpreter, e.g. under a 0700 /root. Group too: a pod with runAsUser but no runAsGroup runs with gid 0,
    and for a root-owned folder the kernel then checks the group bits, not the others'. Returns the folders
    changed."""
    changed = []
    traverse = stat.S_IXGRP | stat.S_IXOTH
    for folder in reversed(path.parents):
        mode = folder.stat().st_mode
        if mode & traverse != traverse:
            folder.chmod(stat.S_IMODE(mode) | traverse)
            changed.append(folder)
    return changed


class ClusterError(RuntimeError):
    """The local cluster could not be started."""


def _wait(what: str, check: Callable[[], bool], timeout: float, procs: list[Component]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in procs:
            proc.assert_alive()
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.2)
    tails = "\n".join(f"--- {p.name} ({p.log_path}):\n{p.tail(8)}" for p in procs)
    raise ClusterError(f"timed out after {timeout:.0f} s waiting for {what}\n{tails}")


class Component:
    """One control-plane process with its log file; killed if its parent dies (setpriv --pdeathsig)."""

    def __init__(self, name: str, argv: list[str], logs: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.log_path = logs / f"{name}.log"
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                ["setpriv", "--pdeathsig", "KILL", "--", *argv],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )

    def assert_alive(self) -> None:
        if self.proc.poll() is not None:
            raise ClusterError(
                f"{self.name} exited with {self.proc.returncode}; "
                f"last lines of {self.log_path}:\n{self.tail()}"
            )

    def tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class LocalCluster:
    def __init__(self, state_dir: Path, lease: network.SlotLease, nodes: list[str]) -> None:
        self.state_dir = state_dir
        self.lease = lease
        self.slot = lease.slot
        self.node_names = nodes
        self.kube_version = binaries.kube_version()
        self.pki = pki.Pki(state_dir / "pki")
        self.components: list[Component] = []
        self.node_agent: Component | None = None
        self.rest = Rest(
            self.api_url, self.pki.ca_cert, self.pki.client_cert("admin"), self.pki.client_key("admin")
        )

    # --- what tests use ------------------------------------------------------------------------------
    @property
    def api_host(self) -> str:
        return self.slot.gateway

    @property
    def api_port(self) -> int:
        return API_PORT

    @property
    def api_url(self) -> str:
        return f"https://{self.api_host}:{self.api_port}"

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(binaries.kubectl()), f"--kubeconfig={self.kubeconfig}", *args],
            capture_output=True,
            text=True,
            check=check,
        )

    def pod_folder(self, namespace: str, name: str) -> Path:
        """The newest folder of pod `namespace/name` (logs, terminations.json)."""
        folders = sorted(
            (self.state_dir / "pods").glob(f"{namespace}_{name}_*"), key=lambda p: p.stat().st_mtime
        )
        if not folders:
            raise FileNotFoundError(f"no pod {namespace}/{name} has run on this cluster")
        return folders[-1]

    def pod_log(self, namespace: str, name: str, container: str | None = None) -> str:
        """stdout+stderr of a pod's container (the only container when `container` is None), every restart."""
        folder = self.pod_folder(namespace, name)
        logs = sorted(folder.glob("*.log"))
        if container is not None:
            logs = [folder / f"{container}.log"]
        return "".join(p.read_text(errors="replace") for p in logs if p.exists())

    def container_pid(self, namespace: str, name: str, container: str) -> int:
        """The host PID of a running container's process (PID 1 of its PID namespace): /proc/<pid>/status
        has its real user and groups, /proc/<pid>/root its view of the file system."""
        folder = self.pod_folder(namespace, name)
        starts = sorted(folder.glob(f"{container}.*.start"), key=lambda p: int(p.name.split(".")[-2]))
        record = json.loads(starts[-1].read_text()) if starts else {}
        if "pid" not in record:
            raise FileNotFoundError(f"container {container} of pod {namespace}/{name} has not started")
        return int(record["pid"])

    def pod_terminations(self, namespace: str, name: str) -> dict[str, dict[str, Any]]:
        """How each container of a finished or deleted pod ended: exitCode, signal, killedAtDeadline..."""
        path = self.pod_folder(namespace, name) / "terminations.json"
        return dict(json.loads(path.read_text())) if path.exists() else {}

    def create_namespace(self, prefix: str = "test-", labels: dict[str, str] | None = None) -> str:
        """Creates a namespace (generated name) and waits until its `default` ServiceAccount exists."""
        body = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"generateName": prefix, "labels": labels or {}},
        }
        name = str(self.rest.create("/api/v1/namespaces", body)["metadata"]["name"])
        _wait(
            f"the default ServiceAccount of namespace {name}",
            lambda: bool(self.rest.get(f"/api/v1/namespaces/{name}/serviceaccounts/default")),
            30,
            self.components,
        )
        return name

    def delete_namespace(self, name: str) -> None:
        with contextlib.suppress(ApiError):
            self.rest.delete(f"/api/v1/namespaces/{name}")

    # --- lifecycle -----------------------------------------------------------------------------------
    @classmethod
    @contextlib.contextmanager
    def start(
        cls,
        nodes: int = 1,
        state_dir: Path | None = None,
        extra_images: list[images.ImageEnvironment] | None = None,
        backoff_initial_s: float = 10.0,
        backoff_max_s: float = 300.0,
        log: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True),
    ) -> Iterator[LocalCluster]:
        """Starts a cluster with `nodes` Nodes; stops it and every pod on exit. Without `state_dir` the state
        lives in a temporary folder that is removed afterwards."""
        if os.geteuid() != 0:
            raise ClusterError(
                "the local cluster needs root: it creates network namespaces, veth pairs and mounts"
            )
        bindir = binaries.require()
        owned_dir = state_dir is None
        folder = Path(tempfile.mkdtemp(prefix="taskpool-cluster-")) if state_dir is None else state_dir
        lease = network.SlotLease()
        cluster = cls(folder, lease, [f"node-{i + 1}" for i in range(nodes)])
        try:
            cluster._boot(bindir, extra_images or [], backoff_initial_s, backoff_max_s, log)
            yield cluster
        finally:
            cluster.stop()
            if owned_dir:
                shutil.rmtree(folder, ignore_errors=True)

    def _boot(
        self,
        bindir: Path,
        extra_images: list[images.ImageEnvironment],
        backoff_initial_s: float,
        backoff_max_s: float,
        log: Callable[[str], None],
    ) -> None:
        started = time.monotonic()
        for sub in ("logs", "pods", "etcd"):
            (self.state_dir / sub).mkdir(parents=True, exist_ok=True)
        # Pods run as non-root users and some start in their own folder (images without a working folder): the
        # state folder is entered, not listed, by others (its secrets are 0600 files).
        self.state_dir.chmod(0o711)
        # The operator image, built from its Dockerfile into $TASKPOOL_CACHE (once per change of its inputs).
        extra_images = [*extra_images, *images.built_images(log)]
        # Extra images may run binaries from elsewhere (KEDA's, built into $TASKPOOL_CACHE): they too.
        extra_files = [
            Path(e.entrypoint[0]) for e in extra_images if e.entrypoint and e.entrypoint[0].startswith("/")
        ] + [e.built for e in extra_images if e.built]
        for needed in (*images.FILES_PODS_READ, self.state_dir, *extra_files):
            for folder in _made_traversable(needed):
                log(f"cluster: made {folder} traversable (g+x, o+x): non-root pods read {needed}")
        # Certificates are per state folder and address: a reused folder (make cluster-up) keeps them while
        # its cluster gets the same network slot, and gets new ones (and a new kubeconfig) otherwise.
        if not self.pki.complete() or not self._serving_cert_matches():
            pki.create(
                self.pki.folder,
                server_ips=[self.api_host, "127.0.0.1", "10.96.0.1"],
                server_names=[
                    "localhost",
                    "kubernetes",
                    "kubernetes.default",
                    "kubernetes.default.svc",
                    "kubernetes.default.svc.cluster.local",
                ],
            )
        for name in ("admin", "controller-manager", "scheduler"):
            self._write_kubeconfig(
                name, self.kubeconfig if name == "admin" else self.state_dir / f"{name}.kubeconfig"
            )
        logs = self.state_dir / "logs"
        etcd_url = f"http://127.0.0.1:{self.slot.port(0)}"
        log(f"cluster: starting Kubernetes {self.kube_version} (slot {self.slot.index}, API {self.api_url})")
        self.components.append(
            Component(
                "etcd",
                [
                    str(bindir / "etcd"),
                    f"--data-dir={self.state_dir / 'etcd'}",
                    f"--listen-client-urls={etcd_url}",
                    f"--advertise-client-urls={etcd_url}",
                    f"--listen-peer-urls=http://127.0.0.1:{self.slot.port(1)}",
                    f"--initial-advertise-peer-urls=http://127.0.0.1:{self.slot.port(1)}",
                    f"--initial-cluster=default=http://127.0.0.1:{self.slot.port(1)}",
                    "--unsafe-no-fsync",  # a throwaway test store: durability is not wanted, speed is
                    "--log-level=warn",
                ],
                logs,
            )
        )
        self.components.append(
            Component(
                "kube-apiserver",
                [
                    str(bindir / "kube-apiserver"),
                    f"--etcd-servers={etcd_url}",
                    f"--bind-address={self.api_host}",
                    f"--advertise-address={self.api_host}",
                    f"--secure-port={self.api_port}",
                    f"--cert-dir={self.pki.folder}",
                    f"--tls-cert-file={self.pki.serving_cert}",
                    f"--tls-private-key-file={self.pki.serving_key}",
                    f"--client-ca-file={self.pki.ca_cert}",
                    f"--service-account-issuer={ISSUER}",
                    f"--service-account-key-file={self.pki.sa_pub}",
                    f"--service-account-signing-key-file={self.pki.sa_key}",
                    "--authorization-mode=Node,RBAC",
                    "--enable-admission-plugins=NodeRestriction",  # PodSecurity etc. are on by default
                    f"--service-cluster-ip-range={SERVICE_CIDR}",
                    "--allow-privileged=true",  # so that Pod Security admission, not this flag, decides
                    "--profiling=false",
                    "--kubelet-preferred-address-types=InternalIP",  # for `kubectl logs` (log_server.py)
                    # The aggregation layer (APIService objects, e.g. KEDA's external metrics): the API server
                    # proxies to extension API servers with the front-proxy client certificate, and they
                    # trust the X-Remote-* headers of that identity only (kubeadm's flags).
                    f"--requestheader-client-ca-file={self.pki.front_proxy_ca_cert}",
                    f"--requestheader-allowed-names={pki.FRONT_PROXY_CLIENT}",
                    "--requestheader-username-headers=X-Remote-User",
                    "--requestheader-group-headers=X-Remote-Group",
                    "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                    f"--proxy-client-cert-file={self.pki.front_proxy_client_cert}",
                    f"--proxy-client-key-file={self.pki.front_proxy_client_key}",
                    # No kube-proxy routes Service IPs: the aggregator dials the Service's endpoint (pod) IPs.
                    "--enable-aggregator-routing=true",
                ],
                logs,
            )
        )
        self.components.append(
            Component(
                "kube-controller-manager",
                [
                    str(bindir / "kube-controller-manager"),
                    f"--kubeconfig={self.state_dir / 'controller-manager.kubeconfig'}",
                    "--bind-address=127.0.0.1",
                    f"--secure-port={self.slot.port(3)}",
                    f"--cert-dir={self.state_dir / 'kcm-certs'}",
                    "--leader-elect=false",
                    "--use-service-account-credentials=true",
                    f"--service-account-private-key-file={self.pki.sa_key}",
                    f"--root-ca-file={self.pki.ca_cert}",
                    f"--cluster-signing-cert-file={self.pki.ca_cert}",
                    f"--cluster-signing-key-file={self.pki.folder / 'ca.key'}",
                    # every default controller: deployment, replicaset, garbage collector, HPA, job...
                    "--controllers=*",
                ],
                logs,
            )
        )
        self.components.append(
            Component(
                "kube-scheduler",
                [
                    str(bindir / "kube-scheduler"),
                    f"--kubeconfig={self.state_dir / 'scheduler.kubeconfig'}",
                    "--bind-address=127.0.0.1",
                    f"--secure-port={self.slot.port(4)}",
                    f"--cert-dir={self.state_dir / 'scheduler-certs'}",
                    "--leader-elect=false",
                ],
                logs,
            )
        )
        _wait(
            "kube-apiserver /readyz",
            lambda: self.rest.request("GET", "/readyz") is not None,
            90,
            self.components,
        )
        for name, port in (
            ("kube-controller-manager", self.slot.port(3)),
            ("kube-scheduler", self.slot.port(4)),
        ):
            _wait(f"{name} /healthz", functools.partial(_healthy, port), 60, self.components)
        self._start_node_agent(extra_images, backoff_initial_s, backoff_max_s)
        _wait("the nodes to be Ready", self._nodes_ready, 60, [*self.components])
        log(f"cluster: ready in {time.monotonic() - started:.1f} s; KUBECONFIG={self.kubeconfig}")

    def _start_node_agent(
        self, extra_images: list[images.ImageEnvironment], backoff_initial_s: float, backoff_max_s: float
    ) -> None:
        ready_file = self.state_dir / "node-agent.ready"
        ready_file.unlink(missing_ok=True)
        config = NodeAgentConfig(
            api_url=self.api_url,
            api_host=self.api_host,
            api_port=self.api_port,
            ca=self.pki.ca_cert,
            cert=self.pki.client_cert("node-agent"),
            key=self.pki.client_key("node-agent"),
            serving_cert=self.pki.serving_cert,
            serving_key=self.pki.serving_key,
            nodes=tuple(self.node_names),
            slot=self.slot.index,
            state_dir=self.state_dir,
            kube_version=self.kube_version,
            ready_file=ready_file,
            backoff_initial_s=backoff_initial_s,
            backoff_max_s=backoff_max_s,
            extra_images=tuple(extra_images),
        )
        config_path = self.state_dir / "node-agent.json"
        config.write(config_path)
        env = {**os.environ, "PYTHONPATH": str(images.REPO)}
        self.node_agent = Component(
            "node-agent",
            [sys.executable, "-m", "devcluster.node_agent", str(config_path)],
            self.state_dir / "logs",
            env,
        )
        self.components.append(self.node_agent)
        _wait("the node agent", ready_file.exists, 30, self.components)

    def _nodes_ready(self) -> bool:
        items = self.rest.get("/api/v1/nodes")["items"]
        ready = {
            n["metadata"]["name"]
            for n in items
            # the node lifecycle controller lifts the not-ready taint admission put on the new Node
            if not any(t["key"] == "node.kubernetes.io/not-ready" for t in n["spec"].get("taints") or [])
            and any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in n.get("status", {}).get("conditions", [])
            )
        }
        return set(self.node_names) <= ready

    def _serving_cert_matches(self) -> bool:
        from cryptography import x509  # noqa: PLC0415

        cert = x509.load_pem_x509_certificate(self.pki.serving_cert.read_bytes())
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        return self.api_host in {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}

    def _write_kubeconfig(self, user: str, path: Path) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "taskpool-local",
                    "cluster": {"server": self.api_url, "certificate-authority": str(self.pki.ca_cert)},
                }
            ],
            "users": [
                {
                    "name": user,
                    "user": {
                        "client-certificate": str(self.pki.client_cert(user)),
                        "client-key": str(self.pki.client_key(user)),
                    },
                }
            ],
            "contexts": [{"name": "taskpool-local", "context": {"cluster": "taskpool-local", "user": user}}],
            "current-context": "taskpool-local",
        }
        path.write_text(json.dumps(config, indent=1))  # JSON is YAML: every client reads it
        path.chmod(0o600)

    def stop(self) -> None:
        """Ends the node agent (and with it every pod), then the control plane, then the network."""
        for component in reversed(self.components):
            component.stop(timeout=STOP_TIMEOUT_S + 10 if component is self.node_agent else STOP_TIMEOUT_S)
        self.components.clear()
        self.lease.release()


def _healthy(port: int) -> bool:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the component's self-signed serving certificate; loopback only
    with urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", context=context, timeout=2) as response:
        return bool(response.status == 200)
