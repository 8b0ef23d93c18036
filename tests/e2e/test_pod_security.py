"""Pods run as a kubelet runs them: as their securityContext's user and groups (the container's settings over
the pod's, the image's declared USER by default), refused when runAsNonRoot meets uid 0, on a read-only root
filesystem when readOnlyRootFilesystem is set (writable only where volumes are mounted), and with fsGroup
owning emptyDir volumes. Checked from inside (what the process sees) and from the host (/proc)."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest

from devcluster import images
from devcluster.control_plane import LocalCluster
from devcluster.operator_harness import WORKER_IMAGE
from devdb import demo_project
from tests.support.cluster import process_ids, write_error

pytestmark = pytest.mark.e2e

# Prints who it runs as and what writing each path (its arguments) gives, then sleeps until SIGTERM.
WRITE_PROBE = """
import errno, os, signal, sys, time
def attempt(path):
    try:
        with open(path, "w") as f:
            f.write("x")
    except OSError as exc:
        return errno.errorcode[exc.errno]
    os.remove(path)
    return "ok"
print("uid", os.getuid(), "gid", os.getgid(), "groups", sorted(os.getgroups()), flush=True)
for path in sys.argv[1:]:
    print("write", path, attempt(path), flush=True)
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
time.sleep(3600)
"""
RESTRICTED = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
IN_CHECKOUT = str(images.REPO / "written-by-a-pod")


def pods_path(namespace: str) -> str:
    return f"/api/v1/namespaces/{namespace}/pods"


def create_pod(cluster: LocalCluster, namespace: str, name: str, spec: dict[str, Any]) -> None:
    cluster.rest.create(
        pods_path(namespace), {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}
    )


def wait_for_log(cluster: LocalCluster, namespace: str, pod: str, container: str, text: str) -> str:
    def log() -> str:
        try:
            return cluster.pod_log(namespace, pod, container)
        except FileNotFoundError:  # the node agent has not started the pod yet
            return ""

    try:
        return demo_project.wait_until(lambda: log() if text in log() else "", 60, f"{text!r}", interval=0.3)
    except AssertionError as exc:
        status = cluster.rest.get(f"{pods_path(namespace)}/{pod}").get("status")
        raise AssertionError(f"{exc}\nlog of {pod}/{container}:\n{log()}\nstatus: {status}") from None


def container_state(cluster: LocalCluster, namespace: str, pod: str) -> dict[str, Any]:
    statuses = cluster.rest.get(f"{pods_path(namespace)}/{pod}")["status"].get("containerStatuses") or [{}]
    return dict(statuses[0].get("state") or {})


def test_containers_run_as_their_users_with_a_read_only_root_and_fs_group(
    cluster: LocalCluster, namespace: str
) -> None:
    probe = ["python", "-c", WRITE_PROBE]
    scratch = [{"name": "scratch", "mountPath": "/scratch"}]
    spec = {
        "securityContext": {"runAsNonRoot": True, "runAsUser": 2000, "runAsGroup": 3000, "fsGroup": 4000},
        "volumes": [{"name": "scratch", "emptyDir": {}}],
        "containers": [
            {
                "name": "readonly",
                "image": "python:3.12-slim",
                "command": [*probe, "/var/tmp/written-by-readonly", "/scratch/readonly"],
                "securityContext": {**RESTRICTED, "readOnlyRootFilesystem": True, "runAsUser": 1000},
                "volumeMounts": scratch,
            },
            {
                "name": "writable",
                "image": "python:3.12-slim",
                "command": [*probe, "/var/tmp/written-by-writable", "/scratch/writable"],
                "securityContext": RESTRICTED,
                "volumeMounts": scratch,
            },
        ],
    }
    create_pod(cluster, namespace, "users", spec)

    # The container's runAsUser wins over the pod's; runAsGroup and fsGroup come from the pod.
    readonly = wait_for_log(cluster, namespace, "users", "readonly", "write /scratch/readonly")
    assert "uid 1000 gid 3000 groups [4000]" in readonly
    # /var/tmp is writable by everyone (1777): only the read-only root stops the write.
    assert "write /var/tmp/written-by-readonly EROFS" in readonly
    assert "write /scratch/readonly ok" in readonly
    writable = wait_for_log(cluster, namespace, "users", "writable", "write /scratch/writable")
    assert "uid 2000 gid 3000 groups [4000]" in writable
    assert "write /var/tmp/written-by-writable ok" in writable
    assert "write /scratch/writable ok" in writable

    # From the host: the processes' real credentials, and their views of the file system.
    readonly_pid = cluster.container_pid(namespace, "users", "readonly")
    assert process_ids(readonly_pid) == {"Uid": (1000,) * 4, "Gid": (3000,) * 4, "Groups": (4000,)}
    writable_pid = cluster.container_pid(namespace, "users", "writable")
    assert process_ids(writable_pid)["Uid"] == (2000,) * 4
    assert write_error(readonly_pid, "/written-by-a-test") == "EROFS"
    assert write_error(readonly_pid, IN_CHECKOUT) == "EROFS"
    assert write_error(readonly_pid, "/scratch/written-by-a-test") is None
    assert write_error(writable_pid, "/var/tmp/written-by-a-test") is None
    volume = (Path(f"/proc/{readonly_pid}/root") / "scratch").stat()
    assert volume.st_gid == 4000
    assert volume.st_mode & stat.S_ISGID
    assert not Path(IN_CHECKOUT).exists()


def test_run_as_non_root_with_an_image_that_runs_as_root_is_refused(
    cluster: LocalCluster, namespace: str
) -> None:
    spec = {
        "containers": [
            {
                "name": "c",
                "image": "python:3.12-slim",  # declares no USER: root
                "command": ["python", "-c", "print('started')"],
                "securityContext": {**RESTRICTED, "runAsNonRoot": True},
            }
        ]
    }
    create_pod(cluster, namespace, "rootimage", spec)
    waiting = demo_project.wait_until(
        lambda: (
            container_state(cluster, namespace, "rootimage").get("waiting", {}).get("reason")
            == "CreateContainerConfigError"
            and container_state(cluster, namespace, "rootimage")["waiting"]
        ),
        60,
        "CreateContainerConfigError",
        interval=0.3,
    )
    assert "container has runAsNonRoot and image will run as root" in waiting["message"]
    assert "started" not in cluster.pod_log(namespace, "rootimage")


def test_a_worker_pod_that_writes_outside_its_volumes_fails_as_on_a_kubelet(
    cluster: LocalCluster, namespace: str
) -> None:
    """The worker image with the security context our operator gives worker pods (objects.py): no runAsUser,
    so the image's USER 10001; a read-only root; a scratch /tmp. Writing /var/tmp, which every user may write
    to (1777) but which is no volume, fails as on a read-only root filesystem."""
    script = (
        "import os; print('uid', os.getuid(), flush=True); "
        "open('/tmp/scratch-file', 'w').write('ok'); print('wrote /tmp', flush=True); "
        "open('/var/tmp/written-by-the-worker.txt', 'w')"
    )
    spec = {
        "restartPolicy": "Never",
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "volumes": [{"name": "tmp", "emptyDir": {}}],
        "containers": [
            {
                "name": "worker",
                "image": WORKER_IMAGE,
                "command": ["python", "-c", script],
                "securityContext": {**RESTRICTED, "readOnlyRootFilesystem": True, "runAsNonRoot": True},
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
            }
        ],
    }
    create_pod(cluster, namespace, "writer", spec)
    path = f"{pods_path(namespace)}/writer"
    demo_project.wait_until(
        lambda: cluster.rest.get(path)["status"].get("phase") in ("Succeeded", "Failed"), 60, "the pod to end"
    )
    log = cluster.pod_log(namespace, "writer")
    assert cluster.rest.get(path)["status"]["phase"] == "Failed", log
    assert cluster.pod_terminations(namespace, "writer")["worker"]["exitCode"] == 1
    assert "uid 10001" in log
    assert "wrote /tmp" in log
    assert "OSError: [Errno 30] Read-only file system: '/var/tmp/written-by-the-worker.txt'" in log
    assert not Path("/var/tmp/written-by-the-worker.txt").exists()
