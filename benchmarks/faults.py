"""The fault suite at full size: what happens to tasks when worker pods are SIGKILLed, the database goes away,
the operator dies mid-scale, the API server restarts, a node is lost, or pods are deleted at random during a
long load.

Runs the scenarios of devcluster/fault_scenarios.py (the same code tests/e2e/test_faults.py runs small) on
the local control plane with the real operator, real worker pods and an embedded PostgreSQL, one fresh
namespace and database per scenario. Per scenario it records the task accounting (enqueued, successful,
failed by exception class, left READY, left RUNNING, run twice, lost), the seconds from the fault until every
task was terminal, the scenario's own checks, and every broken promise under "problems". The baseline,
measured in the same run: the random-deletion load without deletions (its settle time is the reference for
the one with them). `goal_met`: no scenario has a problem.

    QUICK=1 python benchmarks/faults.py        (smaller counts and a 20 s outage instead of 60 s)
Writes benchmarks/results/faults.json.
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from benchmarks.common import QUICK, write_result
from devcluster import fault_scenarios as faults
from devcluster import operator_harness as h
from devcluster.control_plane import RESTRICTED, LocalCluster
from devdb import demo_project, postgres

TIMEOUT_S = 900.0  # a wait, not a goal: the machine is shared
SEED = 20261201
PODS = 5 if QUICK else 20
LOAD_TASKS = 300 if QUICK else 2000
LOAD_PODS = 4
OUTAGE_S = 20.0 if QUICK else 60.0
# How long to wait for the tasks caught by the outage once the database is back (a wait, not a goal).
OUTAGE_SETTLE_BOUND_S = 300.0
NODE_LOST_TIMEOUT_S = 30  # spec.worker.nodeLostTimeout's default
# How long the lost node's tasks may take to be recovered before the benchmark stops waiting (and deletes the
# Node object): the controller-manager's default --node-monitor-grace-period (50 s) + nodeLostTimeout + the
# pods' termination grace (15 s) + the orphan grace (5 s), with room for a loaded machine.
NODE_LOST_BOUND_S = 300.0

Scenario = Callable[[faults.Site], faults.ScenarioResult]

SCENARIOS: dict[str, Scenario] = {
    "force_deleted_pods_fail": lambda site: faults.force_deleted_pods(
        site, pods=PODS, action="Fail", task_s=30, timeout=TIMEOUT_S
    ),
    "force_deleted_pods_requeue": lambda site: faults.force_deleted_pods(
        site, pods=PODS, action="Requeue", task_s=30, timeout=TIMEOUT_S
    ),
    "operator_killed_mid_scale": lambda site: faults.operator_killed_mid_scale(
        site, kills=5, max_replicas=4, seed=SEED, timeout=TIMEOUT_S
    ),
    "api_server_restart": lambda site: faults.api_server_restart(
        site, tasks=60, down_s=10, timeout=TIMEOUT_S
    ),
    "database_outage": lambda site: faults.database_outage(
        site, tasks=100 if QUICK else 300, outage_s=OUTAGE_S, timeout=OUTAGE_SETTLE_BOUND_S
    ),
    "node_lost_fail": lambda site: faults.node_lost(
        site,
        pods=2 if QUICK else 4,
        action="Fail",
        task_s=3600,
        node_lost_timeout_s=NODE_LOST_TIMEOUT_S,
        timeout=NODE_LOST_BOUND_S,
    ),
    "random_pod_deletions_baseline": lambda site: faults.random_pod_deletions(
        site, tasks=LOAD_TASKS, task_s=0.25, pods=LOAD_PODS, seed=SEED, every_s=None, timeout=TIMEOUT_S
    ),
    "random_pod_deletions": lambda site: faults.random_pod_deletions(
        site, tasks=LOAD_TASKS, task_s=0.25, pods=LOAD_PODS, seed=SEED, every_s=(3, 8), timeout=TIMEOUT_S
    ),
}


def run_one(
    cluster: LocalCluster, admin_dsn: str, template_dsn: str, name: str, scenario: Scenario
) -> dict[str, Any]:
    """One scenario in a fresh namespace and database: its figures, or the wait that did not end."""
    namespace = cluster.create_namespace("faults-", labels=RESTRICTED)
    dsn = demo_project.clone_database(admin_dsn, template_dsn, prefix="taskpool_faults")
    database = demo_project.MigratedDatabase(dsn=dsn, url=postgres.to_url(dsn))
    started = time.monotonic()
    print(f"--- {name}", file=sys.stderr, flush=True)
    try:
        with faults.fault_site(cluster, namespace, database, admin_dsn) as site:
            figures = scenario(site).figures()
    except AssertionError as exc:  # a wait that timed out: the scenario could not settle
        traceback.print_exc()
        figures = {"problems": [f"did not complete: {exc}"]}
    finally:
        cluster.delete_namespace(namespace)
    postgres.drop_database(admin_dsn, dsn)
    figures["scenario_wall_s"] = round(time.monotonic() - started, 1)
    print(f"--- {name}: {figures}", file=sys.stderr, flush=True)
    return figures


def write(results: dict[str, dict[str, Any]]) -> None:
    """benchmarks/results/faults.json with the scenarios run so far (written after each, so that a run cut
    short still leaves its figures; `complete` says whether every scenario ran)."""
    baseline = results.get("random_pod_deletions_baseline", {}).get("settle_s")
    faulted = results.get("random_pod_deletions", {}).get("settle_s")
    write_result(
        "faults",
        {
            "benchmark": "faults",
            "what": (
                "task accounting and seconds to settle per fault scenario (real control plane, operator, "
                "worker pods, PostgreSQL); machine shared with other jobs"
            ),
            "scenarios": results,
            "complete": set(results) == set(SCENARIOS),
            "random_deletions_settle_over_baseline": (
                round(faulted / baseline, 2) if baseline and faulted else None
            ),
            "goal": "every scenario: no task lost, left READY/RUNNING, failed unexpectedly or run twice "
            "(unless Requeue), and its own checks kept",
            "goal_met": set(results) == set(SCENARIOS)
            and all(not r.get("problems") for r in results.values()),
        },
    )


def main() -> None:
    results: dict[str, dict[str, Any]] = {}
    with postgres.postgres_server() as admin_dsn:
        template = postgres.create_database(admin_dsn, prefix="taskpool_faults_template")
        try:
            demo_project.migrate(postgres.to_url(template))
            with LocalCluster.start(nodes=1) as cluster:
                h.install_crd(cluster)
                for name, scenario in SCENARIOS.items():
                    results[name] = run_one(cluster, admin_dsn, template, name, scenario)
                    write(results)
        finally:
            postgres.drop_database(admin_dsn, template)


if __name__ == "__main__":
    main()
