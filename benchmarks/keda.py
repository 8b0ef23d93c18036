"""Side by side with KEDA in the same cluster: one worker Deployment scaled by a TaskWorkerPool, then by KEDA.

One local cluster (devcluster) runs KEDA's operator and metrics adapter as pods (devcluster/keda.py) and one
embedded PostgreSQL with pg_stat_statements serves every run. Three runs, one after the other, each in a
fresh namespace with the same Secret, the same worker Deployment spec (the one our operator built, copied
for KEDA) and the same burst (BURST `slow` tasks of TASK_S seconds on queue `default`):

- `taskpool`: a TaskWorkerPool (our operator as a local process), pollInterval 5 s, scale-down window 30 s,
  scale to zero after 30 s;
- `keda_defaults`: a ScaledObject at KEDA's defaults (pollingInterval 30 s, cooldownPeriod 300 s, the HPA's
  300 s scale-down window);
- `keda_tuned`: the same ScaledObject tuned like our pool (pollingInterval 5 s, cooldownPeriod 30 s, HPA
  scale-down window 30 s).

The ScaledObject's trigger is what a user would write for django-tasks-db: the postgresql scaler counting
READY tasks of the queue with django-tasks-db's run_after rule (`benchmarks.probe.NAIVE_COUNT`), target 1
task per replica (our pool: tasksPerReplica 1), connection from the worker container's DATABASE_URL.

Each side takes BURSTS bursts in a row in its namespace, each from zero replicas and pods (the next burst
waits for the previous one's way back to zero) on an emptied task table. Per burst: burst -> first replica
(spec.replicas > 0), -> first task started, -> full capacity (MAX_REPLICAS pods ready), drain (last task
finished), back to zero replicas (the first zero after the first replica, even before the drain; waited for
at most ZERO_CAP_S after the drain), busy pods deleted during scale-in (a pod whose worker held a RUNNING task
when it got its deletionTimestamp) and SQL statements per minute at the database under load (burst to drain;
pg_stat_statements, every statement of the benchmark database except the benchmark's own role). Per side each
timing is reported as min/median/max over the bursts, busy pods deleted as a total (per burst in `bursts`),
tasks by status summed, and `incomplete_bursts` names every burst that missed a figure, did not start from
zero or did not finish all its tasks successfully. Statements per minute while idle at zero replicas are
measured once per side, before its first burst. The goal compares medians. Then each side's query cost at
FINISHED_ROWS finished + READY_ROWS ready rows: EXPLAIN ANALYZE execution time of our probe statement and of
the KEDA query, and their wall times (min/median/max) on warm connections (benchmarks.probe).

    QUICK=1 python -m benchmarks.keda   (one burst per side, shorter idle window, 60 s cap on the way back
                                         to zero, 100 k rows)
Writes benchmarks/results/keda.json and benchmarks/results/keda.png.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
from matplotlib.figure import Figure
from psycopg import sql as pgsql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from benchmarks.common import QUICK, RESULTS, clear_tasks, spread, write_result
from benchmarks.probe import INSERT_FINISHED, INSERT_READY, NAIVE_COUNT, load, naive_samples, probe_samples
from devcluster import keda
from devcluster import operator_harness as h
from devcluster.control_plane import RESTRICTED, LocalCluster
from devcluster.rest import ApiError
from devdb import demo_project, postgres
from taskpool_operator.probe import rows, sql
from taskpool_operator.probe.depth import ProbeTarget, ready_cap

MAX_REPLICAS = 4
BURST = 8
# QUICK: one burst. Its 60 s cap on the way back to zero is far below KEDA defaults' ~360 s (cooldownPeriod
# 300 s after the last READY task), so a second burst would not start from zero.
BURSTS = 1 if QUICK else 3
TASK_S = 30.0
IDLE_S = 20.0 if QUICK else 60.0
ZERO_CAP_S = 60.0 if QUICK else 420.0
DRAIN_CAP_S = 600.0
NAMESPACE_GONE_CAP_S = 420.0
FINISHED_ROWS = 100_000 if QUICK else 1_000_000
READY_ROWS = 10_000 if QUICK else 100_000
SAMPLE_S = 0.5
TUNED = {"poll_s": 5, "scale_down_window_s": 30, "to_zero_s": 30}
POOL = "bench"
DEPLOYMENT = f"{POOL}-workers"
OBSERVER = "bench_observer"  # the benchmark's own role: its statements are not counted
SERVER_SETTINGS = {"shared_preload_libraries": "pg_stat_statements"}
TARGET = ProbeTarget(backend="default", queues=("default",), cap=ready_cap(MAX_REPLICAS, 1))
TIMINGS = ("first_replica_s", "first_task_started_s", "full_capacity_s", "drain_s", "back_to_zero_s")
GOAL = (
    "the TaskWorkerPool reaches full capacity sooner (median of its bursts) and deletes no busy pod, with"
    " all its bursts complete, in the same run as KEDA"
)


def scaled_object(tuned: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "scaleTargetRef": {"name": DEPLOYMENT},
        "minReplicaCount": 0,
        "maxReplicaCount": MAX_REPLICAS,
        "triggers": [
            {
                "type": "postgresql",
                "metadata": {
                    "connectionFromEnv": "DATABASE_URL",
                    "query": " ".join(NAIVE_COUNT.split()),
                    "targetQueryValue": "1",
                },
            }
        ],
    }
    if tuned:
        spec["pollingInterval"] = TUNED["poll_s"]
        spec["cooldownPeriod"] = TUNED["to_zero_s"]
        spec["advanced"] = {
            "horizontalPodAutoscalerConfig": {
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": TUNED["scale_down_window_s"]}}
            }
        }
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": POOL},
        "spec": spec,
    }


def pool_manifest() -> dict[str, Any]:
    return h.pool_manifest(
        POOL,
        "db",
        scaling={
            "minReplicas": 0,
            "maxReplicas": MAX_REPLICAS,
            "tasksPerReplica": 1,
            "pollInterval": f"{TUNED['poll_s']}s",
            "scaleDownStabilization": f"{TUNED['scale_down_window_s']}s",
            "scaleToZeroAfter": f"{TUNED['to_zero_s']}s",
        },
        worker={"concurrency": 1},
    )


# --- the database side ----------------------------------------------------------------------------------
def as_role(dsn: str, role: str) -> str:
    params = {k: v for k, v in conninfo_to_dict(dsn).items() if v is not None}
    params["user"] = role
    params.pop("password", None)
    return make_conninfo(**params)  # type: ignore[arg-type]


def prepare_statistics(dsn: str) -> str:
    """Creates pg_stat_statements and the benchmark's own role; returns the DSN of that role."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        libraries = conn.execute("SHOW shared_preload_libraries").fetchone()
        if not libraries or "pg_stat_statements" not in str(libraries[0]):
            raise RuntimeError(
                "the server does not preload pg_stat_statements: unset DATABASE_URL (the embedded server "
                "is started with it) or add it to shared_preload_libraries"
            )
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        conn.execute(pgsql.SQL("CREATE ROLE {} SUPERUSER LOGIN").format(pgsql.Identifier(OBSERVER)))
    return as_role(dsn, OBSERVER)


def reset_statements(observer: str) -> None:
    with psycopg.connect(observer, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_statements_reset()")


def statements(observer: str) -> int:
    """Statements run on this database since the last reset, by everyone but the benchmark itself."""
    with psycopg.connect(observer, autocommit=True) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(s.calls), 0) FROM pg_stat_statements AS s"
            " JOIN pg_roles AS r ON r.oid = s.userid"
            " WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND r.rolname <> %s",
            (OBSERVER,),
        ).fetchone()
    assert row is not None
    return int(row[0])


def task_counts(conn: psycopg.Connection[Any]) -> tuple[int, int, int]:
    """(ready, running, finished) tasks."""
    row = conn.execute(
        f"SELECT count(*) FILTER (WHERE status = 'READY'), count(*) FILTER (WHERE status = 'RUNNING'),"
        f" count(*) FILTER (WHERE status IN ('SUCCESSFUL', 'FAILED')) FROM {sql.TASK_TABLE}"
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


# --- watching one run -------------------------------------------------------------------------------------
@dataclass
class Sampler:
    """Samples the Deployment, its pods and the task table every SAMPLE_S seconds in a thread."""

    cluster: LocalCluster
    namespace: str
    observer: str
    started: float = field(default_factory=time.time)
    samples: list[dict[str, float]] = field(default_factory=list)
    deleting: dict[str, bool] = field(default_factory=dict)  # pod -> was busy when deletion began
    stopped: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join()

    def _run(self) -> None:
        with psycopg.connect(self.observer, autocommit=True) as conn:
            while not self.stopped.wait(SAMPLE_S):
                self._try_sample(conn)
            # The state when the run ended (the drain may have come after the last periodic sample).
            self._try_sample(conn)

    def _try_sample(self, conn: psycopg.Connection[Any]) -> None:
        try:
            self._sample(conn)
        except Exception as exc:  # a slow API server on a loaded machine: sample again
            print(f"sample failed: {exc}", file=sys.stderr)

    def _sample(self, conn: psycopg.Connection[Any]) -> None:
        deployment = h.get_deployment(self.cluster, self.namespace, DEPLOYMENT) or {}
        pods = self.cluster.rest.get(f"/api/v1/namespaces/{self.namespace}/pods")["items"]
        for pod in pods:
            name = pod["metadata"]["name"]
            if pod["metadata"].get("deletionTimestamp") and name not in self.deleting:
                busy = conn.execute(
                    f"SELECT count(*) FROM {sql.TASK_TABLE}"
                    " WHERE status = 'RUNNING' AND worker_ids ->> -1 LIKE %s",
                    (f"{name}-%",),
                ).fetchone()
                self.deleting[name] = bool(busy and busy[0])
        ready, running, finished = task_counts(conn)
        self.samples.append(
            {
                "t": round(time.time() - self.started, 2),
                "replicas": float(deployment.get("spec", {}).get("replicas", 0)),
                "ready_replicas": float(deployment.get("status", {}).get("readyReplicas", 0) or 0),
                "ready": float(ready),
                "running": float(running),
                "finished": float(finished),
            }
        )

    def first(self, since: float, test: Callable[[dict[str, float]], bool]) -> float | None:
        """Seconds from `since` (epoch) to the first sample passing `test`, None if none did."""
        offset = since - self.started
        for sample in list(self.samples):
            if sample["t"] >= offset and test(sample):
                return round(sample["t"] - offset, 2)
        return None


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(SAMPLE_S)
    print(f"gave up waiting for {what} after {timeout:g} s", file=sys.stderr)
    return False


# --- one run -------------------------------------------------------------------------------------------
@dataclass
class Database:
    dsn: str
    url: str
    observer: str

    @property
    def observer_url(self) -> str:
        return postgres.to_url(self.observer)


def idle_statements_per_min(cluster: LocalCluster, namespace: str, db: Database) -> float:
    """Statements per minute at zero replicas: the scaler's own."""
    # Idle means no worker pod at all: a terminating one still polls the task table.
    at_zero(cluster, namespace)
    reset_statements(db.observer)
    time.sleep(IDLE_S)
    return round(statements(db.observer) / (IDLE_S / 60), 1)


def at_zero(cluster: LocalCluster, namespace: str) -> bool:
    """Waits (capped) for zero replicas and no pod; whether they came."""

    def no_pods() -> bool:
        return not cluster.rest.get(f"/api/v1/namespaces/{namespace}/pods")["items"]

    return wait_for(
        lambda: h.spec_replicas(cluster, namespace, DEPLOYMENT) == 0 and no_pods(),
        120,
        "zero replicas and pods before a burst",
    )


def measure_burst(cluster: LocalCluster, namespace: str, db: Database) -> dict[str, Any]:
    """One burst on an empty task table until drained and back at zero (capped)."""
    started_from_zero = at_zero(cluster, namespace)
    clear_tasks(db.observer)
    sampler = Sampler(cluster, namespace, db.observer)
    reset_statements(db.observer)
    demo_project.enqueue(db.observer_url, "slow", count=BURST, duration=TASK_S)
    burst_at = h.last_enqueued_at(db.observer)

    def drained() -> bool:
        with psycopg.connect(db.observer, autocommit=True) as conn:
            return task_counts(conn)[2] >= BURST

    drained_in_time = wait_for(drained, DRAIN_CAP_S, "the burst to drain")
    drained_at = time.time()
    under_load = statements(db.observer)
    wait_for(lambda: h.spec_replicas(cluster, namespace, DEPLOYMENT) == 0, ZERO_CAP_S, "zero replicas")
    sampler.stop()
    with psycopg.connect(db.observer, autocommit=True) as conn:
        counts: dict[str, int] = dict(
            conn.execute(f"SELECT status, count(*) FROM {sql.TASK_TABLE} GROUP BY status").fetchall()
        )
    load_minutes = (drained_at - burst_at) / 60
    first_replica = sampler.first(burst_at, lambda s: s["replicas"] > 0)
    back_to_zero = None
    if first_replica is not None:
        # Even before the drain: KEDA scales on READY tasks, and running ones are not READY.
        zero_after = sampler.first(burst_at + first_replica, lambda s: s["replicas"] == 0)
        back_to_zero = None if zero_after is None else round(first_replica + zero_after, 2)
    return {
        "started_from_zero": started_from_zero,
        "first_replica_s": first_replica,
        "first_task_started_s": sampler.first(burst_at, lambda s: s["running"] + s["finished"] > 0),
        "full_capacity_s": sampler.first(burst_at, lambda s: s["ready_replicas"] >= MAX_REPLICAS),
        "drain_s": round(drained_at - burst_at, 2) if drained_in_time else None,
        "back_to_zero_s": back_to_zero,
        "busy_pods_deleted": sum(sampler.deleting.values()),
        "pods_seen_terminating": len(sampler.deleting),
        "tasks_by_status": {str(k): int(v) for k, v in counts.items()},
        "statements_per_min_under_load": round(under_load / load_minutes, 1),
        "timeline": [{**s, "t": round(s["t"] - (burst_at - sampler.started), 2)} for s in sampler.samples],
    }


def measure(cluster: LocalCluster, namespace: str, db: Database) -> dict[str, Any]:
    """The idle window, then BURSTS bursts in a row, summarised."""
    idle = idle_statements_per_min(cluster, namespace, db)
    return summarise([measure_burst(cluster, namespace, db) for _ in range(BURSTS)], idle)


def summarise(bursts: list[dict[str, Any]], idle_per_min: float) -> dict[str, Any]:
    """A side's figures over its bursts: each timing's spread over the bursts that reached it, and which
    bursts missed something; the first burst's timeline for the plot."""
    incomplete = []
    for number, burst in enumerate(bursts, start=1):
        missing = [] if burst["started_from_zero"] else ["started_from_zero"]
        missing += [name for name in TIMINGS if burst[name] is None]
        if burst["tasks_by_status"] != {"SUCCESSFUL": BURST}:
            missing.append("all_tasks_successful")
        if missing:
            incomplete.append({"burst": number, "missing": missing})
    tasks_by_status: dict[str, int] = {}
    for burst in bursts:
        for status, count in burst["tasks_by_status"].items():
            tasks_by_status[status] = tasks_by_status.get(status, 0) + count
    timings: dict[str, Any] = {}
    for name in TIMINGS:
        reached = [burst[name] for burst in bursts if burst[name] is not None]
        timings[name] = spread(reached, 2) if reached else None
    return {
        **timings,
        "back_to_zero_cap_s": ZERO_CAP_S,
        "busy_pods_deleted": sum(burst["busy_pods_deleted"] for burst in bursts),
        "pods_seen_terminating": sum(burst["pods_seen_terminating"] for burst in bursts),
        "tasks_by_status": tasks_by_status,
        "statements_per_min_idle": idle_per_min,
        "statements_per_min_under_load": spread([b["statements_per_min_under_load"] for b in bursts], 1),
        "incomplete_bursts": incomplete,
        "bursts": [{k: v for k, v in burst.items() if k != "timeline"} for burst in bursts],
        "timeline": bursts[0]["timeline"],
    }


@contextlib.contextmanager
def fresh_namespace(cluster: LocalCluster, db: Database, name: str) -> Iterator[str]:
    clear_tasks(db.observer)
    namespace = cluster.create_namespace(f"{name}-", labels=RESTRICTED)
    h.create_dsn_secret(cluster, namespace, "db", db.url)
    try:
        yield namespace
    finally:
        cluster.delete_namespace(namespace)
        # The next run's idle window must not count this run's terminating workers (they finish their task
        # within the Deployment's grace period).
        path = f"/api/v1/namespaces/{namespace}"
        wait_for(lambda: gone(cluster, path), NAMESPACE_GONE_CAP_S, f"namespace {namespace} to go")


def gone(cluster: LocalCluster, path: str) -> bool:
    try:
        cluster.rest.get(path)
    except ApiError as exc:
        if exc.status == 404:
            return True
        raise
    return False


def run_taskpool(cluster: LocalCluster, db: Database) -> tuple[dict[str, Any], dict[str, Any]]:
    """The TaskWorkerPool run; also returns the Deployment our operator built (KEDA's runs reuse it)."""
    with contextlib.ExitStack() as stack:
        namespace = stack.enter_context(fresh_namespace(cluster, db, "taskpool"))
        stack.enter_context(h.running_operator(cluster, namespace, "--log-level", "warning"))
        h.create_pool(cluster, namespace, pool_manifest())
        deployment = h.wait_until(
            lambda: h.get_deployment(cluster, namespace, DEPLOYMENT), 60, "the pool's Deployment"
        )
        assert deployment is not None
        result = measure(cluster, namespace, db)
        # kopf's finalizer is on the pool: delete it while the operator runs, or the namespace never goes.
        cluster.rest.delete(h.pools_path(namespace, POOL))
        wait_for(lambda: gone(cluster, h.pools_path(namespace, POOL)), 60, "the pool to be deleted")
        return result, deployment


def run_keda(cluster: LocalCluster, db: Database, built: dict[str, Any], tuned: bool) -> dict[str, Any]:
    with fresh_namespace(cluster, db, "keda-tuned" if tuned else "keda-defaults") as namespace:
        spec = copy.deepcopy(built["spec"])
        spec["replicas"] = 0
        deployment = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": DEPLOYMENT, "labels": built["metadata"].get("labels", {})},
            "spec": spec,
        }
        cluster.rest.create(f"/apis/apps/v1/namespaces/{namespace}/deployments", deployment)
        cluster.rest.create(
            f"/apis/keda.sh/v1alpha1/namespaces/{namespace}/scaledobjects", scaled_object(tuned)
        )

        def ready() -> bool:
            found = cluster.rest.get(f"/apis/keda.sh/v1alpha1/namespaces/{namespace}/scaledobjects/{POOL}")
            conditions = found.get("status", {}).get("conditions") or []
            return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

        h.wait_until(ready, 120, "the ScaledObject to be Ready", interval=1)
        return measure(cluster, namespace, db)


# --- query cost -------------------------------------------------------------------------------------------
def explain_ms(dsn: str, statement: str, params: dict[str, Any] | None = None) -> float:
    """EXPLAIN ANALYZE's execution time of a statement (third run: caches warm)."""
    times = []
    # Client-side binding: EXPLAIN takes no bind parameters.
    with psycopg.connect(dsn, autocommit=True, cursor_factory=psycopg.ClientCursor) as conn:
        for _ in range(3):
            row = conn.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}", params).fetchone()
            assert row is not None
            times.append(float(row[0][0]["Execution Time"]))
    return round(times[-1], 3)


def query_cost(dsn: str) -> dict[str, Any]:
    clear_tasks(dsn)
    load(dsn, INSERT_FINISHED, FINISHED_ROWS)
    load(dsn, INSERT_READY, READY_ROWS)
    probe_ms, _ = asyncio.run(probe_samples(dsn, TARGET))
    naive_ms, count = asyncio.run(naive_samples(dsn))
    return {
        "finished_rows": FINISHED_ROWS,
        "ready_rows": READY_ROWS,
        "ready_counted_by_keda_query": count,
        "taskpool_probe": {
            "explain_analyze_ms": explain_ms(dsn, sql.QUEUE_DEPTH, rows.parameters([TARGET])),
            "wall_ms": spread(probe_ms),
        },
        "keda_query": {
            "explain_analyze_ms": explain_ms(dsn, NAIVE_COUNT),
            "wall_ms": spread(naive_ms),
        },
    }


# --- results --------------------------------------------------------------------------------------------
def plot(runs: dict[str, dict[str, Any]]) -> None:
    figure = Figure(figsize=(5 * len(runs), 6), tight_layout=True)
    axes = figure.subplots(2, len(runs), sharex=True, squeeze=False)
    for column, (name, run) in enumerate(runs.items()):
        timeline = run["timeline"]
        t = [s["t"] for s in timeline]
        top, bottom = axes[0][column], axes[1][column]
        top.plot(t, [s["ready"] for s in timeline], label="ready")
        top.plot(t, [s["running"] for s in timeline], label="running")
        deleted = [burst["busy_pods_deleted"] for burst in run["bursts"]]
        top.set_title(f"{name}, first of {len(deleted)} bursts\nbusy pods deleted per burst: {deleted}")
        top.set_ylabel("tasks")
        top.legend(loc="upper right")
        bottom.step(t, [s["replicas"] for s in timeline], where="post", label="spec.replicas")
        bottom.step(t, [s["ready_replicas"] for s in timeline], where="post", label="ready pods")
        bottom.set_xlabel("seconds since the burst")
        bottom.set_ylabel("pods")
        bottom.legend(loc="upper right")
    figure.savefig(RESULTS / "keda.png", dpi=90)


def main() -> None:
    images = keda.extra_images()  # fails at once, naming `make keda-binaries`, when KEDA is not built
    with demo_project.standalone_migrated_database("taskpool_bench", SERVER_SETTINGS) as migrated:
        db = Database(migrated.dsn, migrated.url, prepare_statistics(migrated.dsn))
        with LocalCluster.start(nodes=1, extra_images=images) as cluster:
            h.install_crd(cluster)
            keda.install(cluster)
            runs: dict[str, dict[str, Any]] = {}
            runs["taskpool"], built = run_taskpool(cluster, db)
            runs["keda_defaults"] = run_keda(cluster, db, built, tuned=False)
            runs["keda_tuned"] = run_keda(cluster, db, built, tuned=True)
        cost = query_cost(db.observer)
    plot(runs)
    ours, theirs = runs["taskpool"], [runs["keda_defaults"], runs["keda_tuned"]]
    goal_met = (
        not ours["incomplete_bursts"]
        and all(
            r["full_capacity_s"] is None or ours["full_capacity_s"]["median"] < r["full_capacity_s"]["median"]
            for r in theirs
        )
        and ours["busy_pods_deleted"] == 0
    )
    write_result(
        "keda",
        {
            "benchmark": "keda",
            "keda_version": keda.version(),
            "burst": {"tasks": BURST, "task_s": TASK_S, "queue": "default", "max_replicas": MAX_REPLICAS},
            "bursts_per_side": BURSTS,
            "idle_window_s": IDLE_S,
            "tuned": TUNED,
            "keda_query": " ".join(NAIVE_COUNT.split()),
            "runs": runs,
            "query_cost": cost,
            "goal": GOAL,
            "goal_met": goal_met,
            "note": (
                f"{BURSTS} burst(s) per side, timings as min/median/max over them; on a shared 2-core machine"
                " loaded by other builds and tests"
            ),
        },
    )
    print(json.dumps({k: {m: v for m, v in r.items() if m != "timeline"} for k, r in runs.items()}, indent=1))


if __name__ == "__main__":
    main()
