"""pytest fixtures for a real local Kubernetes cluster (registered from tests/conftest.py via pytest_plugins).

Fixtures
    cluster    (session) a running LocalCluster (devcluster/control_plane.py), started on first use:
                 .kubeconfig            admin kubeconfig path (KUBECONFIG=... kubectl / helm / kopf)
                 .api_url               https://10.213.<slot>.1:6443 (reachable from the host and from pods)
                 .rest                  small JSON client: .get/.create/.patch/.delete/.watch (plain dicts)
                 .kubectl(*args)        runs kubectl against the cluster, returns CompletedProcess
                 .node_names            ["node-1"] (TASKPOOL_CLUSTER_NODES=N for more)
                 .pod_log(ns, name[, container])   the container's stdout+stderr, every restart
                 .pod_terminations(ns, name)       how each container ended (exitCode, signal...)
                 .container_pid(ns, name, container)   host PID of a running container's process
                 .create_namespace(prefix, labels) / .delete_namespace(name)
    namespace  (per test) a fresh namespace (generated name) labelled for Pod Security "restricted"
               (enforce), with its default ServiceAccount present; deleted after the test.

Environment: TASKPOOL_CLUSTER_NODES=N (default 1); TASKPOOL_CLUSTER_STATE=/some/new/folder keeps the
cluster's state (component logs, pod logs, etcd) after the run for debugging; by default it is a temporary
folder, removed at the end.

Outside pytest (demo, benchmarks): `with devcluster.control_plane.LocalCluster.start(nodes=1) as c: ...`.

Helpers: `process_ids(pid)` (real uid, gid and groups of a process, from /proc) and `write_error(pid, path)`
(what writing `path` in the process's view of the file system gives: None, or the errno name, "EROFS" on a
read-only root filesystem).

Pods run as local processes: see devcluster/images.py for which images run (and how), and
docs/local-cluster.md for what the node agent does and does not do. Needs root and the binaries from
`make k8s-binaries`; without them the fixture fails with that instruction.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from devcluster.binaries import BinariesMissing
from devcluster.control_plane import RESTRICTED, ClusterError, LocalCluster


@pytest.fixture(scope="session")
def cluster() -> Iterator[LocalCluster]:
    state = os.environ.get("TASKPOOL_CLUSTER_STATE")
    nodes = int(os.environ.get("TASKPOOL_CLUSTER_NODES", "1"))
    try:
        with LocalCluster.start(nodes=nodes, state_dir=Path(state) if state else None) as running:
            yield running
    except (BinariesMissing, ClusterError) as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def namespace(cluster: LocalCluster) -> Iterator[str]:
    name = cluster.create_namespace("test-", labels=RESTRICTED)
    yield name
    cluster.delete_namespace(name)


def process_ids(pid: int) -> dict[str, tuple[int, ...]]:
    """{"Uid": (real, effective, saved, fs), "Gid": (...), "Groups": (...)} of a running process."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("Uid", "Gid", "Groups"):
            found[key] = tuple(int(v) for v in value.split())
    return found


def write_error(pid: int, path: str) -> str | None:
    """Creates (and removes) `path` as the process sees its file system (its mount namespace, through
    /proc/<pid>/root). Done as root here, so only the mounts decide: None if writable, else the errno name."""
    target = Path(f"/proc/{pid}/root") / path.lstrip("/")
    try:
        target.write_text("written by a test\n")
    except OSError as exc:
        return errno.errorcode.get(exc.errno or 0, str(exc))
    target.unlink()
    return None
