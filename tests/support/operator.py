"""pytest fixtures for end-to-end tests of the operator on the local cluster (registered from
tests/conftest.py via pytest_plugins).

Fixtures
    crd_installed   (module) the TaskWorkerPool CRD applied to the cluster
    operator_args   extra `taskpool-operator run` arguments; a module overrides it (e.g. debug logs)
    operator        (per test) `taskpool-operator run` watching the test namespace, as a local process
    database        (per test) the migrated test database, with its DSN in Secret "db" of the test namespace
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devcluster import operator_harness
from devcluster.control_plane import LocalCluster
from devcluster.operator_harness import OperatorProcess
from devdb.demo_project import MigratedDatabase

DSN_SECRET = "db"


@pytest.fixture(scope="module")
def crd_installed(cluster: LocalCluster) -> None:
    operator_harness.install_crd(cluster)


@pytest.fixture
def operator_args() -> tuple[str, ...]:
    return ()


@pytest.fixture
def operator(
    cluster: LocalCluster, namespace: str, crd_installed: None, operator_args: tuple[str, ...]
) -> Iterator[OperatorProcess]:
    with operator_harness.running_operator(cluster, namespace, *operator_args) as running:
        yield running


@pytest.fixture
def database(cluster: LocalCluster, namespace: str, migrated_database: MigratedDatabase) -> MigratedDatabase:
    operator_harness.create_dsn_secret(cluster, namespace, DSN_SECRET, migrated_database.url)
    return migrated_database
