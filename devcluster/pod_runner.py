"""One pod on a node of the node agent: its network namespace, volumes and container processes, its probes,
its status in the API, and the kubelet's graceful-deletion protocol.

A PodRunner is a thread that lives as long as the pod object. It ticks a few times a second: starts
containers that are due, notices exits, restarts per `restartPolicy` with the kubelet's back-off (immediate,
then initial, doubling to the maximum), runs probes, and patches the pod status whenever it changes. When the
API sets `deletionTimestamp` it sends SIGTERM, waits `deletionGracePeriodSeconds`, sends SIGKILL, removes the
pod's namespace and deletes the pod with grace 0. Init containers run one after another before the others.
Lifecycle hooks: preStop (exec, httpGet) runs before SIGTERM; postStart is not supported.
"""

from __future__ import annotations

import contextlib
import datetime
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devcluster import images, network, pod_inputs, security
from devcluster.dockerfile_build import SYSTEM_PATH
from devcluster.rest import ApiError

if TYPE_CHECKING:
    from devcluster.node_agent import Agent

SHIM = Path(__file__).with_name("pod_shim.py")
TICK_S = 0.2
START_RETRY_S = 2.0
# The kubelet's HTTPS probes skip certificate verification (k8s.io/kubernetes/pkg/probe/http).
_UNVERIFIED_TLS = ssl.create_default_context()
_UNVERIFIED_TLS.check_hostname = False
_UNVERIFIED_TLS.verify_mode = ssl.CERT_NONE


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Probe:
    spec: dict[str, Any]
    next_at: float
    successes: int = 0
    failures: int = 0
    passed: bool = False  # the current verdict after the thresholds


@dataclass
class Container:
    spec: dict[str, Any]
    init: bool = False
    proc: subprocess.Popen[bytes] | None = None
    host_pid: int | None = None
    container_id: str = ""
    started_at: str = ""
    start_monotonic: float = 0.0
    restart_count: int = 0
    waiting: tuple[str, str] = ("ContainerCreating", "")
    terminated: dict[str, Any] | None = None  # current state when it will not (yet) run again
    last_state: dict[str, Any] | None = None
    next_start: float = 0.0
    backoff: float = 0.0
    kill_deadline: float | None = None
    probes: dict[str, Probe] = field(default_factory=dict)
    done: bool = False  # finished for good (init container succeeded, or no restart per policy)

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    @property
    def running(self) -> bool:
        return self.proc is not None

    def probe_ok(self, kind: str, default: bool) -> bool:
        probe = self.probes.get(kind)
        return default if probe is None else probe.passed


class PodRunner(threading.Thread):
    def __init__(self, agent: Agent, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        super().__init__(name=f"pod-{meta['namespace']}/{meta['name']}", daemon=True)
        self.agent = agent
        self.pod = pod
        self.uid = meta["uid"]
        self.folder = agent.state_dir / "pods" / f"{meta['namespace']}_{meta['name']}_{self.uid}"
        self.wake = threading.Event()
        self.vanished = False
        self.pod_index: int | None = None
        self.pod_ip = ""
        self.start_time = now_rfc3339()
        self.volumes = pod_inputs.Volumes(agent.api, pod, self.folder / "volumes")
        self.volumes_ready = False
        self.setup_retry_at = 0.0
        self.setup_error: tuple[str, str] | None = None
        spec = pod["spec"]
        self.init_containers = [Container(c, init=True) for c in spec.get("initContainers") or []]
        self.containers = [Container(c) for c in spec.get("containers") or []]
        self.finished = False  # Succeeded or Failed: processes and namespace are gone
        self.killed_by_deletion: set[str] = set()
        self.conditions: dict[str, tuple[str, str]] = {}  # type -> (status, lastTransitionTime)
        self.last_status: dict[str, Any] | None = None
        self.terminations: dict[str, dict[str, Any]] = {}

    # --- called from the agent's watch thread -------------------------------------------------------
    def update(self, pod: dict[str, Any]) -> None:
        self.pod = pod
        self.wake.set()

    def vanish(self) -> None:
        self.vanished = True
        self.wake.set()

    # --- the loop ------------------------------------------------------------------------------------
    @property
    def meta(self) -> dict[str, Any]:
        meta: dict[str, Any] = self.pod["metadata"]
        return meta

    @property
    def api_path(self) -> str:
        return f"/api/v1/namespaces/{self.meta['namespace']}/pods/{self.meta['name']}"

    @property
    def all_containers(self) -> list[Container]:
        return self.init_containers + self.containers

    def run(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            while not self.vanished and not self.agent.stopping.is_set():
                if self.meta.get("deletionTimestamp"):
                    self._terminate_for_deletion()
                    return
                if not self.finished:
                    self._step()
                self.wake.wait(TICK_S if not self.finished else 1.0)
                self.wake.clear()
            self._kill_all(grace=self.agent.shutdown_grace_s if not self.vanished else 0.0)
        except Exception as exc:  # a bug here must not leave processes behind; report and clean up
            self.agent.log(f"pod {self.label}: runner failed: {exc!r}")
            self._kill_all(grace=0.0)
            raise
        finally:
            self._release_network()

    def _write_name_files(self) -> None:
        """/etc/hosts as the kubelet writes it (the pod's own name resolves without DNS, plus hostAliases)
        and an /etc/resolv.conf that fails fast: there is no cluster DNS, and no other network to resolve."""
        spec = self.pod["spec"]
        hostname = spec.get("hostname") or self.meta["name"]
        lines = [
            "# Kubernetes-managed hosts file (taskpool node agent).",
            "127.0.0.1\tlocalhost",
            "::1\tlocalhost ip6-localhost ip6-loopback",
            f"{self.pod_ip}\t{hostname}",
        ]
        lines += [f"{a['ip']}\t{' '.join(a.get('hostnames') or [])}" for a in spec.get("hostAliases") or []]
        (self.folder / "hosts").write_text("\n".join(lines) + "\n")
        (self.folder / "resolv.conf").write_text(
            "# No cluster DNS on the taskpool local cluster; lookups fail at once.\n"
            "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n"
        )

    def _pod_view(self) -> dict[str, Any]:
        """The pod as the downward API sees it: with the addresses this agent gave it, even before the API
        reflects them."""
        status = dict(self.pod.get("status") or {})
        status.update(hostIP=self.agent.slot.gateway, hostIPs=[{"ip": self.agent.slot.gateway}])
        if self.pod_ip:
            status.update(podIP=self.pod_ip, podIPs=[{"ip": self.pod_ip}])
        return {**self.pod, "status": status}

    @property
    def label(self) -> str:
        return f"{self.meta['namespace']}/{self.meta['name']}"

    def _step(self) -> None:
        now = time.monotonic()
        if not self.pod_ip:
            if self.pod["spec"].get("hostNetwork"):  # the node's namespace and address, as on a real node
                self.pod_ip = self.agent.slot.gateway
            else:
                self.pod_index = self.agent.allocate_pod_index()
                self.pod_ip = network.add_pod_interface(self.agent.slot, self.pod_index)
            self._write_name_files()
        if not self.volumes_ready and now >= self.setup_retry_at:
            try:
                self.volumes.pod = self._pod_view()
                self.volumes.write_all()
                self.volumes_ready = True
                self.setup_error = None
            except (pod_inputs.InputError, ApiError) as exc:
                self.setup_error = ("ContainerCreating", f"MountVolume.SetUp failed: {exc}")
                self.setup_retry_at = now + START_RETRY_S
                self._event("Warning", "FailedMount", str(exc))
        if self.volumes_ready:
            self.volumes.refresh_if_due()
            self._supervise(now)
        self._push_status()

    def _supervise(self, now: float) -> None:
        for container in self.all_containers:
            if container.running:
                self._check_exit(container)
        failed_init = any(
            c.done and (c.terminated or {}).get("exitCode", 0) != 0 for c in self.init_containers
        )
        if failed_init or all(c.done for c in self.all_containers):
            self._finish()
            return
        pending_init = next((c for c in self.init_containers if not c.done), None)
        for container in [pending_init] if pending_init else self.containers:
            if not container.running and not container.done and now >= container.next_start:
                self._start(container)
            if container.running:
                self._run_probes(container, now)
            if container.kill_deadline is not None and container.running and now >= container.kill_deadline:
                self._signal(container, signal.SIGKILL)

    # --- containers ----------------------------------------------------------------------------------
    def _start(self, container: Container) -> None:
        spec = container.spec
        image = spec.get("image", "")
        environment = images.resolve(image, self.agent.extra_images)
        if environment is None:
            message = (
                f'image "{image}" is not mapped to a local environment (devcluster/images.py); '
                "images are never pulled on this node"
            )
            if container.waiting[0] != "ErrImagePull":
                self._event("Warning", "Failed", f"Failed to pull image: {message}", container)
            container.waiting = ("ErrImagePull", message)
            container.next_start = time.monotonic() + START_RETRY_S
            return
        command = images.command_line(
            environment, list(spec.get("command") or []), list(spec.get("args") or [])
        )
        if not command:
            container.waiting = (
                "CreateContainerError",
                f'no command given and image "{image}" has no default',
            )
            container.next_start = time.monotonic() + START_RETRY_S
            return
        base = {
            "PATH": f"{images.REPO / '.venv' / 'bin'}:{SYSTEM_PATH}",
            "VIRTUAL_ENV": str(images.REPO / ".venv"),
            "HOME": str(self.folder / "home"),
            "LANG": "C.UTF-8",
            "HOSTNAME": self.meta["name"],
            **self.agent.service_env,
            **environment.env,
        }
        try:
            env = pod_inputs.container_env(self.agent.api, self._pod_view(), spec, base, self.agent.capacity)
            pod_name = f"{self.meta['name']}_{self.meta['namespace']}({self.uid})"
            run_as = security.run_as(pod_name, self.pod["spec"], spec, environment.user)
        except (pod_inputs.InputError, ApiError, security.SecurityContextError) as exc:
            if container.waiting != ("CreateContainerConfigError", str(exc)):
                self._event("Warning", "Failed", f"Error: {exc}", container)
            container.waiting = ("CreateContainerConfigError", str(exc))
            container.next_start = time.monotonic() + START_RETRY_S
            return
        argv = [pod_inputs.expand(a, env) for a in command]
        (self.folder / "home").mkdir(exist_ok=True)
        cwd = environment.cwd or Path("/")  # an image without WORKDIR starts in /
        mounts = [
            {"source": str(self.folder / name), "target": f"/etc/{name}", "readOnly": True}
            for name in ("hosts", "resolv.conf")
        ] + [
            {
                "source": str(self.volumes.source(m["name"]) / m.get("subPath", "")),
                "target": m["mountPath"],
                "readOnly": bool(m.get("readOnly")),
            }
            for m in spec.get("volumeMounts") or []
        ]
        # The image's files are the host's checkout (and a built image's folder in the cache): a volume over
        # one of their parent folders (scratch /tmp while the checkout lives under /tmp, as a CI clone may)
        # would hide them, so they are bound back on top (mounts are applied parents first).
        for files in (images.REPO, *([environment.built] if environment.built else [])):
            if any(files.is_relative_to(m["target"]) for m in mounts):
                mounts.append({"source": str(files), "target": str(files), "readOnly": run_as.read_only_root})
        attempt = container.restart_count
        status_file = self.folder / f"{container.name}.{attempt}.start"
        spec_file = self.folder / f"{container.name}.{attempt}.spec.json"
        # The spec holds the resolved environment, secrets included: readable by its owner only.
        with os.fdopen(os.open(spec_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as out:
            out.write(
                json.dumps(
                    {
                        "netns": None if self.pod_index is None else self.agent.slot.netns(self.pod_index),
                        "hostname": (self.pod["spec"].get("hostname") or self.meta["name"])[:63],
                        "mounts": mounts,
                        "cwd": str(cwd),
                        "argv": argv,
                        "env": env,
                        "status_file": str(status_file),
                        "user": {"uid": run_as.uid, "gid": run_as.gid, "groups": list(run_as.groups)},
                        "readOnlyRoot": run_as.read_only_root,
                        "noNewPrivileges": run_as.no_new_privileges,
                    }
                )
            )
        log = (self.folder / f"{container.name}.log").open("ab")
        container.proc = subprocess.Popen(
            [sys.executable, "-I", "-S", str(SHIM), str(spec_file)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        container.container_id = f"taskpool://{self.uid}-{container.name}-{attempt}"
        container.started_at = now_rfc3339()
        container.start_monotonic = time.monotonic()
        container.terminated = None
        container.waiting = ("", "")
        container.kill_deadline = None
        container.probes = {
            kind: Probe(spec[key], time.monotonic() + float(spec[key].get("initialDelaySeconds", 0)))
            for kind, key in (
                ("startup", "startupProbe"),
                ("liveness", "livenessProbe"),
                ("readiness", "readinessProbe"),
            )
            if spec.get(key)
        }
        self._event("Normal", "Started", f"Started container {container.name}", container)
        self.agent.log(
            f"pod {self.label}: started {container.name} ({argv[0]}, ip {self.pod_ip}, uid {run_as.uid}"
            f"{', read-only root' if run_as.read_only_root else ''})"
        )

    def _check_exit(self, container: Container) -> None:
        assert container.proc is not None
        code = container.proc.poll()
        if container.host_pid is None:
            container.host_pid = self._start_record(container).get("pid")
        if code is None:
            return
        record = self._start_record(container)
        code = 128 - code if code < 0 else code  # the shim itself was killed by a signal
        reason = "Completed" if code == 0 else "Error"
        if record.get("startError"):
            reason = "StartError"
        terminated: dict[str, Any] = {
            "exitCode": code,
            "reason": reason,
            "startedAt": container.started_at,
            "finishedAt": now_rfc3339(),
            "containerID": container.container_id,
        }
        if code > 128:
            terminated["signal"] = code - 128
        if record.get("startError"):
            terminated["message"] = record["startError"]
        container.proc = None
        container.host_pid = None
        container.kill_deadline = None
        container.probes = {}
        container.terminated = terminated
        self.terminations[container.name] = terminated
        self.agent.log(f"pod {self.label}: {container.name} exited {code} ({reason})")
        ran_for = time.monotonic() - container.start_monotonic
        if self._will_restart(container):
            if ran_for >= 600:  # ran long enough: the kubelet forgets the back-off
                container.backoff = 0.0
            delay = container.backoff
            container.backoff = min(
                max(container.backoff * 2, self.agent.backoff_initial_s), self.agent.backoff_max_s
            )
            container.last_state = {"terminated": terminated}
            container.restart_count += 1
            container.next_start = time.monotonic() + delay
            if delay > 0:
                container.waiting = (
                    "CrashLoopBackOff",
                    f"back-off {delay:g}s restarting failed container={container.name} "
                    f"pod={self.meta['name']}",
                )
                self._event("Warning", "BackOff", "Back-off restarting failed container", container)
            else:
                container.waiting = ("ContainerCreating", "")
            container.terminated = None
        else:
            container.done = True

    def _start_record(self, container: Container) -> dict[str, Any]:
        path = self.folder / f"{container.name}.{container.restart_count}.start"
        try:
            return dict(json.loads(path.read_text()))
        except (OSError, ValueError):
            return {}

    def _will_restart(self, container: Container) -> bool:
        if self.meta.get("deletionTimestamp"):
            return False
        policy: str = self.pod["spec"].get("restartPolicy", "Always")
        code: int = (container.terminated or {}).get("exitCode", 0)
        if container.init:
            return code != 0 and policy != "Never"
        return policy == "Always" or (policy == "OnFailure" and code != 0)

    def _signal(self, container: Container, signum: int) -> None:
        if container.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            container.proc.send_signal(signum)

    def _stop_container(self, container: Container, grace: float) -> None:
        """SIGTERM now, SIGKILL at the deadline (checked by the loop)."""
        if container.running and container.kill_deadline is None:
            self._signal(container, signal.SIGTERM)
            container.kill_deadline = time.monotonic() + grace

    def _kill_all(self, grace: float) -> None:
        for container in self.all_containers:
            self._stop_container(container, grace)
        self._wait_all_exited()

    def _wait_all_exited(self) -> None:
        while any(c.running for c in self.all_containers):
            if self.agent.stopping.is_set():  # the node is shutting down: a short grace for everyone
                cap = self.agent.stopped_at + self.agent.shutdown_grace_s
                for container in self.all_containers:
                    if container.kill_deadline is not None and container.kill_deadline > cap:
                        container.kill_deadline = cap
            for container in self.all_containers:
                if container.running:
                    self._check_exit(container)
                deadline = container.kill_deadline
                if container.running and deadline is not None and time.monotonic() >= deadline:
                    self._signal(container, signal.SIGKILL)
            time.sleep(0.05)

    # --- probes and hooks ----------------------------------------------------------------------------
    def _run_probes(self, container: Container, now: float) -> None:
        if container.kill_deadline is not None:  # being stopped: no more verdicts
            return
        startup = container.probes.get("startup")
        for kind, probe in container.probes.items():
            if now < probe.next_at or (kind != "startup" and startup is not None and not startup.passed):
                continue
            if kind == "startup" and probe.passed:
                continue
            probe.next_at = now + float(probe.spec.get("periodSeconds", 10))
            ok, detail = self._handler(probe.spec, container, float(probe.spec.get("timeoutSeconds", 1)))
            if ok:
                probe.successes, probe.failures = probe.successes + 1, 0
                if probe.successes >= int(probe.spec.get("successThreshold", 1)):
                    probe.passed = True
                continue
            probe.successes, probe.failures = 0, probe.failures + 1
            self._event("Warning", "Unhealthy", f"{kind.capitalize()} probe failed: {detail}", container)
            if probe.failures < int(probe.spec.get("failureThreshold", 3)):
                continue
            probe.passed = False
            if kind in ("liveness", "startup"):
                self._event(
                    "Normal",
                    "Killing",
                    f"Container {container.name} failed {kind} probe, will be restarted",
                    container,
                )
                grace = probe.spec.get("terminationGracePeriodSeconds") or self._grace_seconds()
                self._stop_container(container, float(grace))

    def _handler(self, spec: dict[str, Any], container: Container, timeout: float) -> tuple[bool, str]:
        """Runs an httpGet, tcpSocket or exec handler (probe or hook); returns (success, detail)."""
        try:
            if "httpGet" in spec:
                get = spec["httpGet"]
                host, port = get.get("host") or self.pod_ip, self._port(get["port"], container)
                conn: http.client.HTTPConnection
                if get.get("scheme") == "HTTPS":
                    # Like the kubelet, an HTTPS probe does not verify the certificate (pods serve
                    # self-signed or cluster-CA ones the node cannot know).
                    conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=_UNVERIFIED_TLS)
                else:
                    conn = http.client.HTTPConnection(host, port, timeout=timeout)
                try:
                    headers = {h["name"]: h["value"] for h in get.get("httpHeaders") or []}
                    conn.request(
                        "GET", get.get("path", "/"), headers={"User-Agent": "kube-probe/1.36", **headers}
                    )
                    status = conn.getresponse().status
                finally:
                    conn.close()
                return 200 <= status < 400, f"HTTP probe failed with statuscode: {status}"
            if "tcpSocket" in spec:
                tcp = spec["tcpSocket"]
                with socket.create_connection(
                    (tcp.get("host") or self.pod_ip, self._port(tcp["port"], container)), timeout=timeout
                ):
                    return True, ""
            if "exec" in spec:
                if container.host_pid is None:
                    return False, "container process not known yet"
                result = subprocess.run(
                    [
                        "nsenter",
                        "-t",
                        str(container.host_pid),
                        "-n",
                        "-m",
                        "-u",
                        "-i",
                        "-p",
                        "--",
                        *spec["exec"]["command"],
                    ],
                    capture_output=True,
                    timeout=timeout,
                    check=False,
                )
                return (
                    result.returncode == 0,
                    f"command exited with {result.returncode}: {result.stdout[-200:]!r}",
                )
        except (OSError, http.client.HTTPException, subprocess.TimeoutExpired) as exc:
            return False, f"{type(exc).__name__}: {exc}"
        return False, f"unsupported handler {sorted(spec)} (the node agent supports httpGet, tcpSocket, exec)"

    @staticmethod
    def _port(port: int | str, container: Container) -> int:
        if isinstance(port, int) or str(port).isdigit():
            return int(port)
        for p in container.spec.get("ports") or []:
            if p.get("name") == port:
                return int(p["containerPort"])
        raise OSError(f"no container port named {port!r}")

    # --- deletion and termination --------------------------------------------------------------------
    def _grace_seconds(self) -> float:
        return float(self.pod["spec"].get("terminationGracePeriodSeconds", 30))

    def _terminate_for_deletion(self) -> None:
        grace = float(self.meta.get("deletionGracePeriodSeconds", self._grace_seconds()))
        deadline = time.monotonic() + grace
        running = [c for c in self.all_containers if c.running]
        if running:
            self._event("Normal", "Killing", f"Stopping container {', '.join(c.name for c in running)}")
        for container in running:
            pre_stop = (container.spec.get("lifecycle") or {}).get("preStop")
            if pre_stop:
                self._handler(pre_stop, container, max(deadline - time.monotonic(), 0.1))
        for container in running:
            container.kill_deadline = None
            self._stop_container(container, max(deadline - time.monotonic(), 0.0))
            self.killed_by_deletion.add(container.name)
        self._wait_all_exited()
        self.agent.log(f"pod {self.label}: terminated (grace {grace:g} s), deleting")
        self._write_terminations()
        self._release_network()
        try:
            self.agent.api.delete(
                self.api_path,
                {
                    "apiVersion": "v1",
                    "kind": "DeleteOptions",
                    "gracePeriodSeconds": 0,
                    "preconditions": {"uid": self.uid},
                },
            )
        except ApiError as exc:
            if exc.status not in (404, 409):
                raise

    def _write_terminations(self) -> None:
        """Records how each container ended (tests read it; the pod object is gone by then)."""
        record = {
            name: {
                **t,
                "killedAtDeadline": t.get("signal") == signal.SIGKILL and name in self.killed_by_deletion,
            }
            for name, t in self.terminations.items()
        }
        (self.folder / "terminations.json").write_text(json.dumps(record, indent=1))

    def _finish(self) -> None:
        self.finished = True
        self._write_terminations()
        self._release_network()

    def _release_network(self) -> None:
        if self.pod_index is not None:
            network.remove_pod_interface(self.agent.slot, self.pod_index)
            self.agent.release_pod_index(self.pod_index)
            self.pod_index = None

    # --- status --------------------------------------------------------------------------------------
    def _container_status(self, container: Container) -> dict[str, Any]:
        if container.running:
            state: dict[str, Any] = {"running": {"startedAt": container.started_at}}
        elif container.terminated is not None:
            state = {"terminated": container.terminated}
        else:
            reason, message = self.setup_error or container.waiting
            state = {
                "waiting": {
                    "reason": reason or "ContainerCreating",
                    **({"message": message} if message else {}),
                }
            }
        started = container.running and container.probe_ok("startup", True)
        ready = started and container.probe_ok("readiness", True) and container.kill_deadline is None
        status = {
            "name": container.name,
            "image": container.spec.get("image", ""),
            "imageID": "",
            "ready": bool(ready),
            "started": bool(started),
            "restartCount": container.restart_count,
            "state": state,
            "lastState": container.last_state or {},
        }
        if container.container_id:
            status["containerID"] = container.container_id
        return status

    def _phase(self) -> str:
        if self.finished:
            failed = any((c.terminated or {}).get("exitCode", 0) != 0 for c in self.all_containers)
            return "Failed" if failed else "Succeeded"
        if any(not c.done for c in self.init_containers):
            return "Pending"
        if any(c.running or c.restart_count for c in self.containers) or any(c.done for c in self.containers):
            return "Running"
        return "Pending"

    def _condition(self, kind: str, value: bool) -> dict[str, Any]:
        status = "True" if value else "False"
        previous = self.conditions.get(kind)
        if previous is None or previous[0] != status:
            self.conditions[kind] = (status, now_rfc3339())
        return {
            "type": kind,
            "status": status,
            "lastProbeTime": None,
            "lastTransitionTime": self.conditions[kind][1],
        }

    def _push_status(self) -> None:
        statuses = [self._container_status(c) for c in self.containers]
        initialized = all(c.done for c in self.init_containers)
        containers_ready = bool(statuses) and all(s["ready"] for s in statuses)
        managed = ("PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready")
        others = [
            c for c in (self.pod.get("status") or {}).get("conditions") or [] if c["type"] not in managed
        ]
        status: dict[str, Any] = {
            "phase": self._phase(),
            "hostIP": self.agent.slot.gateway,
            "hostIPs": [{"ip": self.agent.slot.gateway}],
            "startTime": self.start_time,
            "conditions": [
                *others,
                self._condition("PodReadyToStartContainers", self.volumes_ready and not self.finished),
                self._condition("Initialized", initialized),
                self._condition("ContainersReady", containers_ready),
                self._condition("Ready", containers_ready),
            ],
            "containerStatuses": statuses,
        }
        if self.pod_ip:
            status.update(podIP=self.pod_ip, podIPs=[{"ip": self.pod_ip}])
        if self.init_containers:
            status["initContainerStatuses"] = [self._container_status(c) for c in self.init_containers]
        if status == self.last_status:
            return
        try:
            self.agent.api.patch(self.api_path + "/status", {"status": status})
            self.last_status = status
        except ApiError as exc:
            if exc.status != 404:
                self.agent.log(f"pod {self.label}: status update failed: {exc}")

    def _event(self, kind: str, reason: str, message: str, container: Container | None = None) -> None:
        self.agent.event(
            self.pod, kind, reason, message, f"spec.containers{{{container.name}}}" if container else ""
        )
