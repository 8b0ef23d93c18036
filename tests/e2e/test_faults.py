"""The fault suite, small: each fault while tasks are in flight, with full task accounting (every task
SUCCESSFUL or FAILED with the expected class, none left READY or RUNNING, none run twice unless the orphan
action is Requeue). The same scenarios at full size: `make bench-faults` (benchmarks/faults.py).

Not here: scale-down while pods are busy (tests/e2e/test_operator_scaling.py, with the busy-safe policy) and a
lost node (benchmarks/faults.py, on a two-node cluster).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devcluster import fault_scenarios as faults
from devcluster.control_plane import LocalCluster
from devdb.demo_project import MigratedDatabase

pytestmark = pytest.mark.e2e

# Waits, not assertions of speed: the machine running the suite may be busy.
TIMEOUT_S = 600


@pytest.fixture
def site(
    cluster: LocalCluster,
    namespace: str,
    migrated_database: MigratedDatabase,
    postgres_admin_dsn: str,
    crd_installed: None,
) -> Iterator[faults.Site]:
    with faults.fault_site(cluster, namespace, migrated_database, postgres_admin_dsn) as running:
        yield running


@pytest.mark.parametrize("action", ["Fail", "Requeue"])
def test_force_deleted_busy_pods_lose_no_task(site: faults.Site, action: str) -> None:
    faults.force_deleted_pods(site, pods=2, action=action, task_s=10, timeout=TIMEOUT_S).check()


def test_random_pod_deletions_lose_no_task(site: faults.Site) -> None:
    faults.random_pod_deletions(
        site, tasks=150, task_s=0.5, pods=2, seed=10, every_s=(2, 5), timeout=TIMEOUT_S
    ).check()


def test_database_outage_holds_replicas_and_loses_no_task(site: faults.Site) -> None:
    faults.database_outage(site, tasks=30, outage_s=10, timeout=TIMEOUT_S).check()


def test_operator_killed_mid_scale_converges(site: faults.Site) -> None:
    faults.operator_killed_mid_scale(site, kills=5, max_replicas=2, seed=10, timeout=TIMEOUT_S).check()


def test_operator_watches_recover_from_an_api_server_restart(site: faults.Site) -> None:
    faults.api_server_restart(site, tasks=20, down_s=3, timeout=TIMEOUT_S).check()
