"""The fault suite's scenarios, shared by tests/e2e/test_faults.py (small counts) and benchmarks/faults.py
(full counts): same code, parameters differ.

Each scenario runs on real parts (the local control plane, the operator as a local process, worker pods
running the demo project's worker, PostgreSQL), injects one fault while tasks are in flight, waits until
every tracked task is terminal and returns a `ScenarioResult`: the task accounting
(devdb/task_accounting.py), the seconds from the fault to the last task settling, and the
scenario's own observations as named checks. `ScenarioResult.problems()` lists everything that broke a
promise; tests assert it is empty, the benchmark records it.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import os
import random
import signal
import sys
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devcluster import images, network
from devcluster import operator_harness as h
from devcluster.control_plane import Component, LocalCluster
from devcluster.node_config import NodeAgentConfig
from devcluster.rest import ApiError
from devdb import postgres
from devdb.demo_project import MigratedDatabase
from devdb.task_accounting import WORKER_LOST, Accounting, TrackedTasks
from taskpool_operator import objects

SECRET = "db"
# Orphans are recovered this long after their pod is gone (short, so a scenario settles quickly).
ORPHAN_GRACE = "5s"
# Short shutdowns: a gracefully deleted worker finishes its task (the demo's are seconds long) and exits.
QUICK_SHUTDOWN = {"shutdownTimeout": "10s", "terminationGracePeriodSeconds": 15}


class RestartableOperator:
    """`taskpool-operator run` for one namespace that a scenario can SIGKILL and start again."""

    def __init__(self, cluster: LocalCluster, namespace: str) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.starts = 0
        self._running: AbstractContextManager[h.OperatorProcess] | None = None
        self.current: h.OperatorProcess | None = None

    def start(self) -> h.OperatorProcess:
        self._running = h.running_operator(self.cluster, self.namespace)
        self.current = self._running.__enter__()
        self.starts += 1
        return self.current

    def kill(self) -> None:
        """SIGKILL, as when the operator's pod is deleted with grace 0 or its node dies."""
        assert self.current is not None
        self.current.process.kill()
        self.current.process.wait()
        self.stop()

    def stop(self) -> None:
        if self._running is not None:
            self._running.__exit__(None, None, None)
        self._running = self.current = None

    @property
    def pid(self) -> int:
        assert self.current is not None
        return self.current.process.pid


@dataclass
class Site:
    """Where a scenario runs: a namespace with the database Secret and a running operator."""

    cluster: LocalCluster
    namespace: str
    database: MigratedDatabase
    admin_dsn: str
    operator: RestartableOperator


@contextmanager
def fault_site(
    cluster: LocalCluster, namespace: str, database: MigratedDatabase, admin_dsn: str
) -> Iterator[Site]:
    h.create_dsn_secret(cluster, namespace, SECRET, database.url)
    operator = RestartableOperator(cluster, namespace)
    operator.start()
    try:
        yield Site(cluster, namespace, database, admin_dsn, operator)
    finally:
        operator.stop()


@dataclass
class ScenarioResult:
    name: str
    accounting: Accounting
    settle_s: float | None
    """Seconds from the fault (its start) until every tracked task was terminal; None: not within the
    scenario's timeout (the accounting then says which tasks are left)."""
    expected_failures: frozenset[str] = frozenset()
    requeue: bool = False
    checks: dict[str, bool] = field(default_factory=dict)
    """The scenario's own promises (replicas held, one Event per transition...): name -> kept."""
    observed: dict[str, Any] = field(default_factory=dict)

    def problems(self) -> list[str]:
        broken = [f"broken: {name}" for name, kept in self.checks.items() if not kept]
        return self.accounting.problems(self.expected_failures, self.requeue) + broken

    def check(self) -> None:
        found = self.problems()
        assert not found, f"{self.name}: {self.accounting.figures()} {self.observed}\n" + "\n".join(found)

    def figures(self) -> dict[str, Any]:
        return {
            **self.accounting.figures(),
            "settle_s": None if self.settle_s is None else round(self.settle_s, 1),
            "checks": self.checks,
            **self.observed,
            "problems": self.problems(),
        }


# -- helpers -----------------------------------------------------------------------------------------------


def _pods(site: Site, pool: str) -> list[dict[str, Any]]:
    return list(
        site.cluster.rest.get(
            f"/api/v1/namespaces/{site.namespace}/pods", labelSelector=f"{objects.POOL_LABEL}={pool}"
        )["items"]
    )


def _live_pod_names(site: Site, pool: str) -> list[str]:
    return sorted(
        p["metadata"]["name"]
        for p in _pods(site, pool)
        if not p["metadata"].get("deletionTimestamp") and p.get("status", {}).get("phase") == "Running"
    )


def _ready_replicas(site: Site, pool: str) -> int:
    deployment = h.get_deployment(site.cluster, site.namespace, objects.deployment_name(pool))
    return 0 if deployment is None else int(deployment.get("status", {}).get("readyReplicas") or 0)


def _wait_ready_pods(site: Site, pool: str, count: int, timeout: float) -> None:
    h.wait_until(lambda: _ready_replicas(site, pool) >= count, timeout, f"{count} ready worker pods", 1)


def _running(tracked: TrackedTasks) -> int:
    return tracked.statuses().get("RUNNING", 0)


def _settle(tracked: TrackedTasks, timeout: float, since: float) -> float | None:
    """Seconds from `since` until every tracked task is terminal, or None after `timeout` seconds."""
    try:
        return tracked.wait_settled(timeout, since=since)
    except AssertionError:
        return None


def _force_delete(site: Site, names: Collection[str]) -> None:
    site.cluster.kubectl(
        "-n", site.namespace, "delete", "pod", *names, "--grace-period=0", "--force", "--wait=false"
    )


def _graceful_delete(site: Site, name: str) -> None:
    site.cluster.kubectl("-n", site.namespace, "delete", "pod", name, "--wait=false")


def _create_pool(site: Site, name: str, **spec: Any) -> None:
    h.create_pool(site.cluster, site.namespace, h.pool_manifest(name, SECRET, **spec))


def _expected_replicas(tracked: TrackedTasks, per_replica: int, low: int, high: int) -> int:
    statuses = tracked.statuses()
    backlog = statuses.get("READY", 0) + statuses.get("RUNNING", 0)
    return max(low, min(high, math.ceil(backlog / per_replica)))


# -- scenarios ---------------------------------------------------------------------------------------------


def force_deleted_pods(site: Site, pods: int, action: str, task_s: float, timeout: float) -> ScenarioResult:
    """`pods` worker pods, each in the middle of a task, force-deleted (grace 0) at once; the pool's orphan
    action (Fail or Requeue) decides what becomes of their tasks."""
    pool = f"killed-{action.lower()}"
    _create_pool(
        site,
        pool,
        scaling={"minReplicas": pods, "maxReplicas": pods, "pollInterval": "1s"},
        orphans={"action": action, "gracePeriod": ORPHAN_GRACE},
        worker={"interval": "200ms", **QUICK_SHUTDOWN},
    )
    # Every pod is polling before the tasks arrive, so each claims one within a poll interval.
    _wait_ready_pods(site, pool, pods, timeout)
    tracked = TrackedTasks(site.database)
    tracked.enqueue("slow", count=pods, duration=task_s, queue="default")
    h.wait_until(lambda: _running(tracked) == pods, timeout, f"{pods} running tasks", 0.5)
    busy = _live_pod_names(site, pool)
    fault = time.monotonic()
    _force_delete(site, busy)
    settle_s = _settle(tracked, timeout, since=fault)
    accounting = tracked.account()
    if action == "Fail":
        checks = {
            f"the {pods} killed tasks FAILED with WorkerLost": accounting.failed_by_class
            == {WORKER_LOST: pods}
        }
    else:
        checks = {
            f"the {pods} killed tasks ran again and succeeded": accounting.successful == pods,
            "each killed task ran exactly twice": all(o.claims == 2 for o in accounting.outcomes.values()),
        }
    return ScenarioResult(
        f"force_deleted_pods_{action.lower()}",
        accounting,
        settle_s,
        expected_failures=frozenset({WORKER_LOST}) if action == "Fail" else frozenset(),
        requeue=action == "Requeue",
        checks=checks,
        observed={"pods_force_deleted": len(busy), "task_s": task_s},
    )


def random_pod_deletions(
    site: Site,
    tasks: int,
    task_s: float,
    pods: int,
    seed: int,
    every_s: tuple[float, float] | None,
    timeout: float,
) -> ScenarioResult:
    """Random worker pods deleted, gracefully or forced (a coin), every `every_s` (a random span) seconds
    while `tasks` tasks of `task_s` seconds run; orphans (from forced deletions) are requeued. `every_s`
    None: the same load without deletions (the benchmark's baseline)."""
    pool = "churn"
    _create_pool(
        site,
        pool,
        scaling={"minReplicas": pods, "maxReplicas": pods, "pollInterval": "1s"},
        orphans={"action": "Requeue", "gracePeriod": ORPHAN_GRACE},
        worker={"concurrency": 2, "interval": "200ms", **QUICK_SHUTDOWN},
    )
    _wait_ready_pods(site, pool, pods, timeout)
    tracked = TrackedTasks(site.database)
    tracked.enqueue("slow", count=tasks, duration=task_s, queue="default")
    rng = random.Random(seed)
    deletions = {"graceful": 0, "forced": 0}
    fault = time.monotonic()
    deadline = fault + timeout
    while every_s is not None and not tracked.settled() and time.monotonic() < deadline:
        time.sleep(rng.uniform(*every_s))
        live = _live_pod_names(site, pool)
        if not live or tracked.settled():
            continue
        victim = rng.choice(live)
        if rng.random() < 0.5:
            _graceful_delete(site, victim)
            deletions["graceful"] += 1
        else:
            _force_delete(site, [victim])
            deletions["forced"] += 1
    settle_s = _settle(tracked, max(deadline - time.monotonic(), 1), since=fault)
    accounting = tracked.account()
    checks = {"every task succeeded": accounting.successful == tasks}
    if every_s is not None:
        checks["pods were deleted"] = sum(deletions.values()) > 0
    return ScenarioResult(
        "random_pod_deletions",
        accounting,
        settle_s,
        requeue=True,
        checks=checks,
        observed={"deletions": deletions, "pods": pods},
    )


def _database_reachable(site: Site, pool: str) -> dict[str, Any]:
    return h.condition(h.get_pool(site.cluster, site.namespace, pool), "DatabaseReachable")


def _events_with_reason(site: Site, pool: str, reason: str, since_iso: str = "") -> list[dict[str, Any]]:
    return [
        e
        for e in h.events(site.cluster, site.namespace, pool)
        if e["reason"] == reason and (e.get("lastTimestamp") or e.get("eventTime") or "") >= since_iso
    ]


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def database_outage(site: Site, tasks: int, outage_s: float, timeout: float) -> ScenarioResult:
    """PostgreSQL stopped for `outage_s` seconds while a load runs, then started again."""
    pool = "outage"
    replicas = 2
    _create_pool(
        site,
        pool,
        scaling={"minReplicas": replicas, "maxReplicas": replicas, "pollInterval": "1s"},
        worker={"concurrency": 2, "interval": "200ms", **QUICK_SHUTDOWN},
    )
    h.wait_for_condition(site.cluster, site.namespace, pool, "DatabaseReachable", timeout=60, status="True")
    _wait_ready_pods(site, pool, replicas, timeout)
    tracked = TrackedTasks(site.database)
    tracked.enqueue("slow", count=tasks, duration=0.5, queue="default")
    h.wait_until(lambda: _running(tracked) > 0, timeout, "the load to start", 0.5)
    deployment = objects.deployment_name(pool)
    stopped_at = _now_iso()
    fault = time.monotonic()
    seen_replicas: set[int | None] = set()
    with postgres.stopped_server(site.admin_dsn):
        h.wait_until(
            lambda: _database_reachable(site, pool).get("status") == "False",
            60,
            "DatabaseReachable False",
            0.5,
        )
        unreachable = _database_reachable(site, pool)
        while time.monotonic() - fault < outage_s:
            seen_replicas.add(h.spec_replicas(site.cluster, site.namespace, deployment))
            time.sleep(1)
    h.wait_for_condition(site.cluster, site.namespace, pool, "DatabaseReachable", timeout=120, status="True")
    recovered = _database_reachable(site, pool)
    seen_replicas.add(h.spec_replicas(site.cluster, site.namespace, deployment))
    settle_s = _settle(tracked, timeout, since=fault)
    accounting = tracked.account()
    went_down = _events_with_reason(site, pool, str(unreachable["reason"]), stopped_at)
    came_back = _events_with_reason(site, pool, str(recovered["reason"]), stopped_at)
    return ScenarioResult(
        "database_outage",
        accounting,
        settle_s,
        checks={
            "replicas held": seen_replicas == {replicas},
            "one Warning Event for the outage": len(went_down) == 1,
            "one Normal Event for the recovery": len(came_back) == 1,
            "every task succeeded": accounting.successful == tasks,
        },
        observed={
            "outage_s": outage_s,
            "unreachable_reason": unreachable["reason"],
            "replicas_seen": sorted(r for r in seen_replicas if r is not None),
            "events": {"outage": len(went_down), "recovery": len(came_back)},
        },
    )


def _owned(site: Site, path: str, owner_uid: str) -> list[dict[str, Any]]:
    items = site.cluster.rest.get(f"{path}")["items"]
    return [
        i for i in items if any(ref["uid"] == owner_uid for ref in i["metadata"].get("ownerReferences") or [])
    ]


def operator_killed_mid_scale(
    site: Site, kills: int, max_replicas: int, seed: int, timeout: float
) -> ScenarioResult:
    """The operator SIGKILLed `kills` times (and started again) while the pool scales up from zero."""
    pool = "restarts"
    per_replica = 2
    _create_pool(
        site,
        pool,
        scaling={
            "minReplicas": 0,
            "maxReplicas": max_replicas,
            "tasksPerReplica": per_replica,
            "pollInterval": "1s",
            "scaleDownStabilization": "5s",
            "scaleToZeroAfter": "5s",
        },
        worker={"concurrency": 2, "interval": "200ms", **QUICK_SHUTDOWN},
    )
    deployment = objects.deployment_name(pool)
    h.wait_until(lambda: h.spec_replicas(site.cluster, site.namespace, deployment) == 0, 60, "0 replicas")
    tracked = TrackedTasks(site.database)
    # A backlog that needs every replica for a while: each pod runs 2 tasks of 5 s at a time.
    tracked.enqueue("slow", count=4 * max_replicas * per_replica, duration=5, queue="default")
    rng = random.Random(seed)
    fault = time.monotonic()
    for _ in range(kills):
        time.sleep(rng.uniform(0.5, 3))
        site.operator.kill()
        site.operator.start()

    def converged() -> bool:
        expected = _expected_replicas(tracked, per_replica, 0, max_replicas)
        return h.spec_replicas(site.cluster, site.namespace, deployment) == expected

    h.wait_until(converged, 60, "replicas matching the backlog after the restarts", 0.5)
    settle_s = _settle(tracked, timeout, since=fault)
    h.wait_until(
        lambda: h.spec_replicas(site.cluster, site.namespace, deployment) == 0, 120, "the scale back to 0", 1
    )
    # The status is written right after the replicas.
    h.wait_until(
        lambda: h.get_pool(site.cluster, site.namespace, pool).get("status", {}).get("desiredReplicas") == 0,
        60,
        "status.desiredReplicas 0",
        1,
    )
    body = h.get_pool(site.cluster, site.namespace, pool)
    status = body.get("status", {})
    types = [c["type"] for c in status.get("conditions", [])]
    live_deployment = h.get_deployment(site.cluster, site.namespace, deployment)
    assert live_deployment is not None
    deployments = _owned(
        site, f"/apis/apps/v1/namespaces/{site.namespace}/deployments", body["metadata"]["uid"]
    )
    replica_sets = _owned(
        site, f"/apis/apps/v1/namespaces/{site.namespace}/replicasets", live_deployment["metadata"]["uid"]
    )
    accounting = tracked.account()
    return ScenarioResult(
        "operator_killed_mid_scale",
        accounting,
        settle_s,
        checks={
            "one Deployment": len(deployments) == 1,
            "one ReplicaSet": len(replica_sets) == 1,
            "conditions unique": len(types) == len(set(types)),
            "Ready and DatabaseReachable reported": {"Ready", "DatabaseReachable"} <= set(types),
            "status for the current generation": status.get("observedGeneration")
            == body["metadata"]["generation"],
            "every task succeeded": accounting.successful == len(tracked.ids),
        },
        observed={"operator_kills": kills, "max_replicas": max_replicas},
    )


def _now_micro() -> str:
    """Now as a Lease's renewTime (RFC 3339, microseconds, UTC): such strings compare in time order."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _leases_renewed_since(cluster: LocalCluster, since: str) -> bool:
    leases = cluster.rest.get("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases")["items"]
    renewed = {lease["metadata"]["name"] for lease in leases if lease["spec"].get("renewTime", "") > since}
    return set(cluster.node_names) <= renewed


def _wait_quietly(check: Callable[[], bool], timeout: float) -> bool:
    """Whether `check` came true within `timeout` seconds (a promise to record, not a wait to fail)."""
    try:
        return bool(h.wait_until(check, timeout, "a check", 1))
    except AssertionError:
        return False


def _restart_api_server(cluster: LocalCluster, down_s: float) -> None:
    """Stops kube-apiserver (SIGTERM), waits `down_s` seconds and starts it again with the same flags."""
    index = next(i for i, c in enumerate(cluster.components) if c.name == "kube-apiserver")
    old = cluster.components[index]
    argv = [str(arg) for arg in old.proc.args]  # type: ignore[union-attr]
    old.stop()
    time.sleep(down_s)
    separator = argv.index("--")  # setpriv --pdeathsig KILL -- <argv>
    new = Component(old.name, argv[separator + 1 :], old.log_path.parent)
    cluster.components[index] = new

    def ready() -> bool:
        new.assert_alive()
        try:
            return cluster.rest.request("GET", "/readyz") is not None
        except Exception:  # refused, reset or 5xx while it starts: not ready yet
            return False

    h.wait_until(ready, 120, "kube-apiserver /readyz after the restart", 0.5)


def api_server_restart(site: Site, tasks: int, down_s: float, timeout: float) -> ScenarioResult:
    """kube-apiserver restarted while a load runs: the same operator process (no restart) must still see pool
    edits and Deployment deletions (its watches recovered) and the tasks all finish."""
    pool = "apirestart"
    _create_pool(
        site,
        pool,
        scaling={"minReplicas": 1, "maxReplicas": 1, "pollInterval": "1s"},
        worker={"concurrency": 2, "interval": "200ms", **QUICK_SHUTDOWN},
    )
    deployment = objects.deployment_name(pool)
    _wait_ready_pods(site, pool, 1, timeout)
    tracked = TrackedTasks(site.database)
    tracked.enqueue("slow", count=tasks, duration=0.5, queue="default")
    h.wait_until(lambda: _running(tracked) > 0, timeout, "the load to start", 0.5)
    pid = site.operator.pid
    fault = time.monotonic()
    _restart_api_server(site.cluster, down_s)
    restarted_at = _now_micro()
    # A pool edit reaches the Deployment only through the operator's pool watch ...
    site.cluster.rest.patch(
        h.pools_path(site.namespace, pool), {"spec": {"scaling": {"minReplicas": 2, "maxReplicas": 2}}}
    )
    h.wait_until(
        lambda: h.spec_replicas(site.cluster, site.namespace, deployment) == 2,
        120,
        "2 replicas after the edit",
        1,
    )
    # ... and a deleted Deployment comes back only through its Deployment watch.
    old_uid = h.get_deployment(site.cluster, site.namespace, deployment)["metadata"]["uid"]  # type: ignore[index]
    site.cluster.rest.delete(h.deployment_path(site.namespace, deployment))
    h.wait_until(
        lambda: (
            (h.get_deployment(site.cluster, site.namespace, deployment) or {}).get("metadata", {}).get("uid")
            not in (None, old_uid)
        ),
        120,
        "the Deployment created again",
        1,
    )
    settle_s = _settle(tracked, timeout, since=fault)
    accounting = tracked.account()
    assert site.operator.current is not None
    # The nodes' agents renew their Leases again (else the nodes go NotReady and their pods are evicted).
    leases_renewed = _wait_quietly(lambda: _leases_renewed_since(site.cluster, restarted_at), 60)
    return ScenarioResult(
        "api_server_restart",
        accounting,
        settle_s,
        checks={
            "operator never restarted": site.operator.pid == pid
            and site.operator.current.process.poll() is None,
            "every task succeeded": accounting.successful == tasks,
            "node Leases renewed after the restart": leases_renewed,
        },
        observed={"api_server_down_s": down_s},
    )


# -- a lost node -------------------------------------------------------------------------------------------


@contextmanager
def extra_node(cluster: LocalCluster, name: str) -> Iterator[Component]:
    """One more Node, served by a node agent of its own (the launcher's agent serves every other node) on
    its own network slot, so that it can be lost alone. Removed (Node object included) on the way out."""
    lease = network.SlotLease()  # its own bridge and pod subnet: no clash with the other agent's pods
    ready_file = cluster.state_dir / f"node-agent-{name}.ready"
    config = dataclasses.replace(
        NodeAgentConfig.read(cluster.state_dir / "node-agent.json"),
        nodes=(name,),
        slot=lease.slot.index,
        ready_file=ready_file,
    )
    config_path = cluster.state_dir / f"node-agent-{name}.json"
    config.write(config_path)
    agent = Component(
        f"node-agent-{name}",
        [sys.executable, "-m", "devcluster.node_agent", str(config_path)],
        cluster.state_dir / "logs",
        {**os.environ, "PYTHONPATH": str(images.REPO)},
    )
    try:

        def agent_ready() -> bool:
            agent.assert_alive()
            return ready_file.exists()

        h.wait_until(agent_ready, 60, f"the agent of {name}", 0.5)
        h.wait_until(lambda: _node_ready(cluster, name), 60, f"node {name} Ready", 0.5)
        yield agent
    finally:
        agent.stop()  # a lost node's agent is dead already; a live one stops its pods
        with suppress(ApiError):
            cluster.rest.delete(f"/api/v1/nodes/{name}")
        lease.release()


def _node_ready(cluster: LocalCluster, name: str) -> bool:
    node = cluster.rest.get(f"/api/v1/nodes/{name}")
    return any(
        c["type"] == "Ready" and c["status"] == "True" for c in node.get("status", {}).get("conditions", [])
    )


def _lose_node(agent: Component) -> None:
    """The node is gone: its agent (the kubelet) and every pod process SIGKILLed at once. The agent's children
    are the pods' container shims (each in a session of its own, so they would outlive it); a container dies
    with its shim (parent-death signal)."""
    pid = agent.proc.pid
    shims = [
        int(child)
        for task in Path(f"/proc/{pid}/task").iterdir()
        for child in (task / "children").read_text().split()
    ]
    for process in (pid, *shims):
        os.kill(process, signal.SIGKILL)
    agent.proc.wait()


def _cordon(cluster: LocalCluster, name: str, unschedulable: bool) -> None:
    cluster.rest.patch(f"/api/v1/nodes/{name}", {"spec": {"unschedulable": unschedulable}})


def node_lost(
    site: Site, pods: int, action: str, task_s: float, node_lost_timeout_s: int, timeout: float
) -> ScenarioResult:
    """Every worker pod of the pool runs on one node, each in the middle of a task, when that node is lost
    (its agent and its pods' processes SIGKILLed). Kubernetes marks the node not ready after the
    controller-manager's --node-monitor-grace-period, evicts the pods after the pool's
    worker.nodeLostTimeout; the orphan action then decides what becomes of their tasks. Measures each step
    from the loss. If the tasks are not recovered within `timeout`, the Node object is deleted (what a cloud
    provider's node controller does for a deleted VM) and the recovery after that is measured too."""
    pool = "nodelost"
    lost = "node-lost"
    others = list(site.cluster.node_names)
    with extra_node(site.cluster, lost) as agent:
        for name in others:  # the pool's pods all land on the node about to be lost
            _cordon(site.cluster, name, True)
        try:
            _create_pool(
                site,
                pool,
                scaling={"minReplicas": pods, "maxReplicas": pods, "pollInterval": "1s"},
                orphans={"action": action, "gracePeriod": ORPHAN_GRACE},
                worker={
                    "interval": "200ms",
                    "nodeLostTimeout": f"{node_lost_timeout_s}s",
                    **QUICK_SHUTDOWN,
                },
            )
            _wait_ready_pods(site, pool, pods, timeout)
        finally:
            for name in others:
                _cordon(site.cluster, name, False)
        tracked = TrackedTasks(site.database)
        tracked.enqueue("slow", count=pods, duration=task_s, queue="default")
        h.wait_until(lambda: _running(tracked) == pods, timeout, f"{pods} running tasks", 0.5)
        fault = time.monotonic()
        _lose_node(agent)
        observed: dict[str, Any] = {"node_lost_timeout_s": node_lost_timeout_s, "pods": pods}
        h.wait_until(lambda: not _node_ready(site.cluster, lost), timeout, f"{lost} not Ready", 1)
        observed["node_not_ready_after_s"] = round(time.monotonic() - fault, 1)
        h.wait_until(
            lambda: all(
                p["metadata"].get("deletionTimestamp")
                for p in _pods(site, pool)
                if p["spec"].get("nodeName") == lost
            ),
            timeout,
            "the lost node's pods evicted",
            1,
        )
        observed["pods_evicted_after_s"] = round(time.monotonic() - fault, 1)
        # The bound counts from the loss.
        settle_s = _settle(tracked, max(timeout - (time.monotonic() - fault), 1), since=fault)
        total_s = settle_s
        if settle_s is None:
            observed["left_running_while_node_object_existed"] = tracked.statuses().get("RUNNING", 0)
            deleted = time.monotonic()
            site.cluster.rest.delete(f"/api/v1/nodes/{lost}")
            after_delete = _settle(tracked, timeout, since=deleted)
            if after_delete is not None:
                observed["settle_after_node_object_deleted_s"] = round(after_delete, 1)
                total_s = deleted - fault + after_delete
    accounting = tracked.account()
    observed["settle_within_bound_s"] = None if settle_s is None else round(settle_s, 1)
    observed["bound_s"] = timeout
    return ScenarioResult(
        f"node_lost_{action.lower()}",
        accounting,
        total_s,
        expected_failures=frozenset({WORKER_LOST}) if action == "Fail" else frozenset(),
        requeue=action == "Requeue",
        checks={"tasks recovered within the bound, Node object still there": settle_s is not None},
        observed=observed,
    )
