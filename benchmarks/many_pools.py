"""Many pools on one database: statements per probe tick, and the operator's resident memory at 200 and 1,000.

A child process imports every module of the operator (kopf, the handlers, metrics, the probe and the policy),
registers the pools on one database (named queues and `*` with excludes, on two backends), and runs a timer
per pool for DURATION seconds the way the scaling handler does: every POLL seconds, a reading no older than
POLL / 2 (`ProbeHub.fresh`), then a policy decision. Timers start at random phases, as they do in a real
operator.

Statements are counted on the server, not by the client: each depth statement scans the probe's RUNNING
index exactly once, so the index's `idx_scan` counter (flushed when the child's connection closes) counts
them. The naive baseline is one query per pool per poll (a KEDA ScaledObject per pool).

Then the real thing: `taskpool-operator run` on the local control plane, installed as the operator image
installs it (its own packages only: the dev venv has more, e.g. the kubernetes client, which kopf imports
whenever it is installed) and with the image's malloc settings, first with no pool (the baseline, same run),
then with 200 and then 1,000 TaskWorkerPools on the same database (one Deployment each, scaled by the queue:
its pods exist but run nothing). After SETTLE seconds at each count its resident memory is read from /proc
SAMPLES times over a further SETTLE / 3 seconds (min, median, max; the budget holds for the max) and its probe
rate from its own metrics; then benchmarks/memory_probe (on the operator's PYTHONPATH, tracemalloc off)
reports where the memory is: the Python allocator's live blocks, glibc's heap (in use, and free but kept),
threads, and which object types grew from 0 to 1,000 pools.

The cluster phase waits for the machine's cluster lock (`benchmarks.common.cluster_lock`): run the benchmark
without `flock` around it.

    QUICK=1 python -m benchmarks.many_pools   (10 s instead of 60 s per phase)
Writes benchmarks/results/many_pools.json.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import pkgutil
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TypedDict

import psycopg

import taskpool_operator
from benchmarks.common import QUICK, cluster_lock, migrated_database, write_result
from devcluster import images
from devcluster import operator_harness as h
from devcluster.control_plane import RESTRICTED, LocalCluster
from devcluster.dockerfile_build import LocalBuild
from taskpool_operator.policy import Observation, PolicyState, ScalingSpec, decide
from taskpool_operator.probe import sql
from taskpool_operator.probe.depth import PoolDepth, ProbeTarget, ready_cap
from taskpool_operator.probe.hub import ProbeHub

# Pool count -> the operator's resident memory budget (MB).
BUDGET_MB = {200: 150, 1000: 300}
POLL = 1.0
DURATION = 10.0 if QUICK else 60.0
SETTLE = 20.0 if QUICK else 60.0
QUEUES = [f"queue-{n}" for n in range(20)]
BACKENDS = ["default", "bulk"]
TARGET_QUERIES_PER_TICK = 1
SAMPLES = 5

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


PROBE_DIR = Path(__file__).resolve().parent / "memory_probe"


class MemoryDump(TypedDict):
    """The JSON file benchmarks/memory_probe/sitecustomize.py writes on SIGUSR2."""

    types: list[tuple[str, int]]  # [type name, live objects] pairs (JSON arrays), the most numerous first
    threads: int
    heap: dict[str, float]  # glibc's: in_use_mb, free_mb, mmap_mb
    python_blocks: int


def memory_dump(pid: int, base: Path, number: int) -> MemoryDump:
    """Asks the operator (with benchmarks/memory_probe on its PYTHONPATH) for dump `number`: live objects by
    type, the Python allocator's live blocks, glibc's heap, threads."""
    os.kill(pid, signal.SIGUSR2)
    counts = Path(f"{base}.{number}.json")
    h.wait_until(counts.exists, 300, "the operator's memory dump")
    loaded: MemoryDump = json.loads(counts.read_text())
    return loaded


def object_growth_by_type(idle: MemoryDump, loaded: MemoryDump, top: int) -> dict[str, int]:
    """Live objects gained per type from one dump to a later one: the `top` largest gains, largest first."""
    idle_types = dict(idle["types"])
    growth = {name: count - idle_types.get(name, 0) for name, count in loaded["types"]}
    return dict(sorted(growth.items(), key=lambda item: -item[1])[:top])


def breakdown(dump: MemoryDump) -> dict[str, object]:
    heap = dump["heap"]
    return {
        "python_live_blocks": dump["python_blocks"],
        "c_heap_in_use_mb": round(heap["in_use_mb"], 1),
        "c_heap_free_kept_mb": round(heap["free_mb"], 1),
        "threads": dump["threads"],
    }


def image_malloc_env(image: LocalBuild) -> dict[str, str]:
    """The image's glibc malloc settings (its Dockerfile's ENV), for the operator process run here."""
    return {k: v for k, v in image.env.items() if k.startswith("MALLOC_")}


def pool_manifest(n: int) -> dict[str, object]:
    return h.pool_manifest(
        f"pool-{n}",
        "db",
        backend=BACKENDS[n % 2],
        queues=["*"] if n % 4 == 0 else [QUEUES[n % 20]],
        scaling={"minReplicas": 0, "maxReplicas": 5 + n % 20, "pollInterval": f"{POLL:g}s"},
        # No worker runs: the image maps to nothing on the local node agent, and min is 0.
        worker={"image": "registry.invalid/no-worker:bench"},
    )


def spread(samples: list[float]) -> dict[str, float]:
    return {
        "min": round(min(samples), 1),
        "median": round(statistics.median(samples), 1),
        "max": round(max(samples), 1),
    }


def rss_samples(pid: int, seconds: float) -> list[float]:
    samples = []
    for _ in range(SAMPLES):
        samples.append(rss_mb(pid))
        time.sleep(seconds / SAMPLES)
    return samples


def real_operator(database_url: str, binary: Path, dumps: Path) -> dict[str, object]:
    """The operator process on the local control plane: with no pool, then with each count of pools. After
    the RSS samples of each phase, a memory dump (`dumps`: its files' prefix) says where the memory is."""
    with LocalCluster.start(nodes=1) as cluster:
        h.install_crd(cluster)
        namespace = cluster.create_namespace("bench-", labels=RESTRICTED)
        h.create_dsn_secret(cluster, namespace, "db", database_url)
        deployments = f"/apis/apps/v1/namespaces/{namespace}/deployments"
        with h.running_operator(cluster, namespace, "--log-level", "warning", binary=binary) as operator:
            pid = operator.process.pid
            time.sleep(SETTLE / 3)
            idle_rss = spread(rss_samples(pid, SETTLE / 3))
            idle = memory_dump(pid, dumps, 1)
            phases: dict[str, object] = {"0": {"rss_mb": idle_rss, **breakdown(idle)}}
            created, loaded = 0, idle
            for pools in BUDGET_MB:
                for n in range(created, pools):
                    h.create_pool(cluster, namespace, pool_manifest(n))
                created = pools
                h.wait_until(
                    lambda: len(cluster.rest.get(deployments)["items"]) == pools,  # noqa: B023 - called here
                    900,
                    f"{pools} worker Deployments",
                )
                time.sleep(SETTLE)
                started, before = time.monotonic(), probes_done(operator.metrics())
                samples = rss_samples(pid, SETTLE / 3)
                probes_per_s = (probes_done(operator.metrics()) - before) / (time.monotonic() - started)
                loaded = memory_dump(pid, dumps, len(phases) + 1)
                phases[str(pools)] = {
                    "rss_mb": spread(samples),
                    "probes_per_s": round(probes_per_s, 2),
                    **breakdown(loaded),
                }
            phases["object_growth_by_type"] = object_growth_by_type(idle, loaded, 20)
            return phases


async def child_main(dsn: str, pools: int) -> dict[str, float]:
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
        for n in range(pools):
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


def statement_count(dsn: str, pools: int) -> dict[str, float]:
    """The probe hub and policy for `pools` pools in a child process: ticks, statements, decisions, RSS."""
    before = running_index_scans(dsn)
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.many_pools", "--child", dsn, str(pools)],
        capture_output=True,
        text=True,
        timeout=DURATION + 120,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"child failed:\n{completed.stderr[-4000:]}")
    child: dict[str, float] = json.loads(completed.stdout.strip().splitlines()[-1])
    # The child's backend flushes its statistics when it exits, shortly after the child closes it.
    statements, deadline = 0, time.monotonic() + 30
    while time.monotonic() < deadline:
        statements = running_index_scans(dsn) - before
        if statements >= child["ticks"]:
            break
        time.sleep(0.5)
    polls = DURATION / POLL
    return {
        "probe_ticks": child["ticks"],
        "probe_statements": statements,
        "probe_queries_per_tick": round(statements / child["ticks"], 3),
        "probe_queries_per_poll_interval": round(statements / polls, 2),
        "naive_queries_per_poll_interval": pools,
        "decisions": child["decisions"],
        "probe_hub_rss_mb": round(child["rss_mb"], 1),
        "rss_after_imports_mb": round(child["rss_after_imports_mb"], 1),
    }


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="tp-many-pools-") as folder, migrated_database() as db:
        image = images.operator_image(print)  # built as the Dockerfile builds it, cached
        binary = Path(image.container_command()[0])  # its ENTRYPOINT, taskpool-operator
        with psycopg.connect(db.dsn, autocommit=True) as conn:
            conn.execute(LOAD)
            conn.execute(f"VACUUM ANALYZE {sql.TASK_TABLE}")
        probe = {str(pools): statement_count(db.dsn, pools) for pools in BUDGET_MB}
        dumps = Path(folder) / "dump"
        # The memory probe with tracemalloc off (frames 0): it answers dumps and costs nothing else.
        os.environ.update(
            PYTHONPATH=str(PROBE_DIR), TASKPOOL_MEMORY_DUMP=str(dumps), TASKPOOL_MEMORY_FRAMES="0"
        )
        os.environ.update(image_malloc_env(image))
        with cluster_lock():
            operator = real_operator(db.url, binary, dumps)
    budgets = {
        str(pools): {
            "budget_mb": budget,
            "rss_max_mb": operator[str(pools)]["rss_mb"]["max"],  # type: ignore[index]
            "goal_met": operator[str(pools)]["rss_mb"]["max"] <= budget,  # type: ignore[index]
        }
        for pools, budget in BUDGET_MB.items()
    }
    one_statement = all(p["probe_queries_per_tick"] <= TARGET_QUERIES_PER_TICK for p in probe.values())
    write_result(
        "many_pools",
        {
            "databases": 1,
            "poll_interval_s": POLL,
            "duration_s": DURATION,
            "settle_s": SETTLE,
            "probe_by_pools": probe,
            "operator_by_pools": operator,
            "memory_budgets": budgets,
            "measured_process": "operator_by_pools: taskpool-operator run (installed with the image's "
            "packages only) on the local cluster, RSS with 0 (baseline), 200 and 1,000 pools in one run; "
            "probe_by_pools: probe hub + policy for that many pools with every operator module imported",
            "target_queries_per_tick": TARGET_QUERIES_PER_TICK,
            "operator_malloc_env": image_malloc_env(image),
            "goal_met": one_statement and all(b["goal_met"] for b in budgets.values()),
        },
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        print(json.dumps(asyncio.run(child_main(sys.argv[2], int(sys.argv[3])))))
    else:
        main()
