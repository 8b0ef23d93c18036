"""200 pools on one database: statements per probe tick, and the memory of a process holding them.

A child process imports every module of the operator (kopf, the Kubernetes client, the handlers, metrics,
the probe and the policy), registers 200 pools on one database (named queues and `*` with excludes, on two
backends), and runs a timer per pool for DURATION seconds the way the scaling handler does: every POLL
seconds, a reading no older than POLL / 2 (`ProbeHub.fresh`), then a policy decision. Timers start at random
phases, as they do in a real operator.

Statements are counted on the server, not by the client: each depth statement scans the probe's RUNNING
index exactly once, so the index's `idx_scan` counter (flushed when the child's connection closes) counts
them. The naive baseline is one query per pool per poll (a KEDA ScaledObject per pool).

Then the real thing: `taskpool-operator run` on the local control plane with 200 TaskWorkerPools (one
Deployment each, no worker pods) on the same database; after SETTLE seconds its resident memory is read from
/proc and its probe rate from its own metrics. `operator_rss_mb` is that process; `probe_hub_rss_mb` is the
probe-and-policy process above, `operator_idle_rss_mb` the operator before any pool exists.

    QUICK=1 python -m benchmarks.many_pools   (10 s instead of 60 s)
Writes benchmarks/results/many_pools.json.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import pkgutil
import random
import re
import subprocess
import sys
import time

import psycopg

import taskpool_operator
from benchmarks.common import QUICK, migrated_database, write_result
from devcluster import operator_harness as h
from devcluster.control_plane import RESTRICTED, LocalCluster
from taskpool_operator.policy import Observation, PolicyState, ScalingSpec, decide
from taskpool_operator.probe import sql
from taskpool_operator.probe.depth import PoolDepth, ProbeTarget, ready_cap
from taskpool_operator.probe.hub import ProbeHub

POOLS = 200
POLL = 1.0
DURATION = 10.0 if QUICK else 60.0
SETTLE = 20.0 if QUICK else 60.0
QUEUES = [f"queue-{n}" for n in range(20)]
BACKENDS = ["default", "bulk"]
TARGET_QUERIES_PER_TICK = 1
TARGET_RSS_MB = 150

LOAD = f"""
INSERT INTO {sql.TASK_TABLE} (id, status, args_kwargs, priority, task_path, queue_name, backend_name,
    run_after, enqueued_at, exception_class_path, traceback, worker_ids)
SELECT gen_random_uuid(), CASE WHEN g % 500 = 0 THEN 'RUNNING' ELSE 'READY' END, '{{}}', 0, 't',
       'queue-' || (g % 20), CASE WHEN g % 2 = 0 THEN 'default' ELSE 'bulk' END,
       '{sql.RUN_AFTER_SENTINEL}'::timestamptz, now() - make_interval(secs => g / 100.0), '', '',
       CASE WHEN g % 500 = 0 THEN jsonb_build_array('pool-workers-abc-' || (g % 7) || '-0') ELSE '[]' END
FROM generate_series(1, 20000) AS g
"""


def running_index_scans(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelname = %s", [sql.RUNNING_INDEX]
        ).fetchone()
    assert row is not None
    return int(row[0])


def rss_mb(pid: int | str = "self") -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS in /proc/{pid}/status")


def probes_done(metrics_text: str) -> float:
    match = re.search(r"^taskpool_probe_duration_seconds_count (\S+)$", metrics_text, re.MULTILINE)
    assert match is not None, "the operator exposes no taskpool_probe_duration_seconds"
    return float(match.group(1))


def real_operator(database_url: str) -> dict[str, float]:
    """The operator process on the local control plane, with POOLS pools on one database."""
    with LocalCluster.start(nodes=1) as cluster:
        h.install_crd(cluster)
        namespace = cluster.create_namespace("bench-", labels=RESTRICTED)
        h.create_dsn_secret(cluster, namespace, "db", database_url)
        with h.running_operator(cluster, namespace, "--log-level", "warning") as operator:
            idle_rss = rss_mb(operator.process.pid)
            for n in range(POOLS):
                queues = ["*"] if n % 4 == 0 else [QUEUES[n % 20]]
                manifest = h.pool_manifest(
                    f"pool-{n}",
                    "db",
                    backend=BACKENDS[n % 2],
                    queues=queues,
                    scaling={"minReplicas": 0, "maxReplicas": 5 + n % 20, "pollInterval": f"{POLL:g}s"},
                    # No worker runs: the image maps to nothing on the local node agent, and min is 0.
                    worker={"image": "registry.invalid/no-worker:bench"},
                )
                h.create_pool(cluster, namespace, manifest)
            h.wait_until(
                lambda: (
                    len(cluster.rest.get(f"/apis/apps/v1/namespaces/{namespace}/deployments")["items"])
                    == POOLS
                ),
                300,
                f"{POOLS} worker Deployments",
            )
            time.sleep(SETTLE)
            started, before = time.monotonic(), probes_done(operator.metrics())
            time.sleep(SETTLE / 3)
            probes_per_s = (probes_done(operator.metrics()) - before) / (time.monotonic() - started)
            return {
                "rss_mb": rss_mb(operator.process.pid),
                "idle_rss_mb": idle_rss,
                "probes_per_s": probes_per_s,
            }


async def child_main(dsn: str) -> dict[str, float]:
    for module in pkgutil.walk_packages(taskpool_operator.__path__, "taskpool_operator."):
        importlib.import_module(module.name)

    rss_after_imports = rss_mb()
    rng = random.Random(1)
    ticks = 0
    decisions = 0
    errors: list[object] = []

    def observe(_seconds: float, error: object) -> None:
        nonlocal ticks
        ticks += 1
        if error is not None:
            errors.append(error)

    async def pool_timer(hub: ProbeHub, key: str, spec: ScalingSpec) -> None:
        nonlocal decisions
        await asyncio.sleep(rng.uniform(0, POLL))
        state, current = PolicyState(), spec.min_replicas
        while True:
            reading = await hub.fresh(key, POLL / 2)
            assert isinstance(reading, PoolDepth), reading
            decision = decide(
                spec, Observation(reading.ready, reading.running, current, time.monotonic()), state
            )
            state, current = decision.state, decision.replicas
            decisions += 1
            await asyncio.sleep(POLL)

    async with ProbeHub(on_probe=observe) as hub:
        timers = []
        for n in range(POOLS):
            spec = ScalingSpec(min_replicas=0, max_replicas=5 + n % 20, tasks_per_replica=1 + n % 4)
            cap = ready_cap(spec.max_replicas, spec.tasks_per_replica)
            backend = BACKENDS[n % 2]
            if n % 4 == 0:
                target = ProbeTarget(backend, ("*",), (QUEUES[n % 20],), cap=cap)
            else:
                target = ProbeTarget(backend, tuple(rng.sample(QUEUES, 1 + n % 3)), cap=cap)
            hub.register(f"namespace-{n % 10}/pool-{n}", dsn, target)
            timers.append(asyncio.create_task(pool_timer(hub, f"namespace-{n % 10}/pool-{n}", spec)))
        await asyncio.sleep(DURATION)
        rss_end = rss_mb()
        for timer in timers:
            timer.cancel()
        await asyncio.gather(*timers, return_exceptions=True)
    if errors:
        raise RuntimeError(f"{len(errors)} probe ticks failed, first: {errors[0]!r}")
    return {
        "ticks": ticks,
        "decisions": decisions,
        "rss_after_imports_mb": rss_after_imports,
        "rss_mb": rss_end,
    }


def main() -> None:
    with migrated_database() as db:
        with psycopg.connect(db.dsn, autocommit=True) as conn:
            conn.execute(LOAD)
            conn.execute(f"VACUUM ANALYZE {sql.TASK_TABLE}")
        before = running_index_scans(db.dsn)
        completed = subprocess.run(
            [sys.executable, "-m", "benchmarks.many_pools", "--child", db.dsn],
            capture_output=True,
            text=True,
            timeout=DURATION + 120,
            check=False,
        )
        if completed.returncode != 0:
            raise RuntimeError(f"child failed:\n{completed.stderr[-4000:]}")
        child = json.loads(completed.stdout.strip().splitlines()[-1])
        # The child's backend flushes its statistics when it exits, shortly after the child closes it.
        statements, deadline = 0, time.monotonic() + 30
        while time.monotonic() < deadline:
            statements = running_index_scans(db.dsn) - before
            if statements >= child["ticks"]:
                break
            time.sleep(0.5)
        operator = real_operator(db.url)
    polls = DURATION / POLL
    write_result(
        "many_pools",
        {
            "pools": POOLS,
            "databases": 1,
            "poll_interval_s": POLL,
            "duration_s": DURATION,
            "probe_ticks": child["ticks"],
            "probe_statements": statements,
            "probe_queries_per_tick": round(statements / child["ticks"], 3),
            "probe_queries_per_poll_interval": round(statements / polls, 2),
            "naive_queries_per_poll_interval": POOLS,
            "decisions": child["decisions"],
            "operator_rss_mb": round(operator["rss_mb"], 1),
            "operator_idle_rss_mb": round(operator["idle_rss_mb"], 1),
            "operator_probes_per_s": round(operator["probes_per_s"], 2),
            "probe_hub_rss_mb": round(child["rss_mb"], 1),
            "rss_after_imports_mb": round(child["rss_after_imports_mb"], 1),
            "measured_process": "operator_rss_mb: taskpool-operator run on the local cluster with 200 pools; "
            "probe_hub_rss_mb: probe hub + policy for 200 pools with every operator module imported",
            "target_queries_per_tick": TARGET_QUERIES_PER_TICK,
            "target_rss_mb": TARGET_RSS_MB,
        },
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        print(json.dumps(asyncio.run(child_main(sys.argv[2]))))
    else:
        main()
