"""pytest fixtures for a real local Kubernetes cluster (registered from tests/conftest.py via pytest_plugins).

Fixtures
    cluster    (session) a running LocalCluster (devcluster/control_plane.py), started on first use:
                 .kubeconfig            admin kubeconfig path (KUBECONFIG=... kubectl / helm / kopf)
                 .api_url               https://10.213.<slot>.1:6443 (reachable from the host and from pods)
                 .rest                  small JSON client: .get/.create/.patch/.delete/.watch (plain dicts)
                 .api_client()          a kubernetes.client.ApiClient (typed models)
                 .kubectl(*args)        runs kubectl against the cluster, returns CompletedProcess
                 .node_names            ["node-1"] (TASKPOOL_CLUSTER_NODES=N for more)
                 .pod_log(ns, name[, container])   the container's stdout+stderr, every restart
                 .pod_terminations(ns, name)       how each container ended (exitCode, signal...)
                 .create_namespace(prefix, labels) / .delete_namespace(name)
    namespace  (per test) a fresh namespace (generated name) labelled for Pod Security "restricted"
               (enforce), with its default ServiceAccount present; deleted after the test.

Environment: TASKPOOL_CLUSTER_NODES=N (default 1); TASKPOOL_CLUSTER_STATE=/some/new/folder keeps the
cluster's state (component logs, pod logs, etcd) after the run for debugging; by default it is a temporary
folder, removed at the end.

Outside pytest (demo, benchmarks): `with devcluster.control_plane.LocalCluster.start(nodes=1) as c: ...`.

Pods run as local processes: see devcluster/images.py for which images run (and how), and
docs/local-cluster.md for what the node agent does and does not do. Needs root and the binaries from
`make k8s-binaries`; without them the fixture fails with that instruction.
"""

from __future__ import annotations

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
