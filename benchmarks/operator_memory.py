"""Where the operator's per-pool memory goes: tracemalloc and live-object counts of the real operator.

Runs `taskpool-operator run` on the local control plane with `benchmarks/memory_probe/sitecustomize.py` on
its PYTHONPATH (tracemalloc on, a dump on SIGUSR2), takes a dump with no pool and one with POOLS pools (the
many_pools shapes: named queues and `*`, two backends, pollInterval 1s, no worker pods), and reports the
growth between them: Python allocations by package and by source line, live objects by type, threads, and
the process RSS (which tracemalloc's own bookkeeping inflates: compare the breakdown, not the RSS, with
`benchmarks/results/many_pools.json`).

    QUICK=1 python -m benchmarks.operator_memory   (50 pools instead of 200)
Writes benchmarks/results/operator_memory.json.
"""

from __future__ import annotations

import os
import tempfile
import time
import tracemalloc
from collections import Counter
from pathlib import Path

from benchmarks.common import QUICK, migrated_database, write_result
from benchmarks.many_pools import (
    PROBE_DIR,
    MemoryDump,
    memory_dump,
    object_growth_by_type,
    pool_manifest,
    rss_mb,
)
from devcluster import operator_harness as h
from devcluster.control_plane import RESTRICTED, LocalCluster

POOLS = 50 if QUICK else 200
SETTLE_S = 20.0 if QUICK else 60.0
PACKAGES = ("kopf", "kubernetes", "aiohttp", "prometheus_client", "psycopg", "taskpool_operator", "asyncio")


def package_of(filename: str) -> str:
    for package in PACKAGES:
        if f"/{package}/" in filename:
            return package
    return "other: " + "/".join(filename.split("/")[-2:])


def dump(pid: int, base: Path, number: int) -> tuple[tracemalloc.Snapshot, MemoryDump]:
    counts = memory_dump(pid, base, number)
    return tracemalloc.Snapshot.load(f"{base}.{number}.snapshot"), counts


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="tp-memory-"))
    base = folder / "dump"
    os.environ.update(PYTHONPATH=str(PROBE_DIR), TASKPOOL_MEMORY_DUMP=str(base), TASKPOOL_MEMORY_FRAMES="8")
    with migrated_database() as db, LocalCluster.start(nodes=1) as cluster:
        h.install_crd(cluster)
        namespace = cluster.create_namespace("bench-", labels=RESTRICTED)
        h.create_dsn_secret(cluster, namespace, "db", db.url)
        with h.running_operator(cluster, namespace, "--log-level", "warning") as operator:
            pid = operator.process.pid
            time.sleep(10)
            idle_rss = rss_mb(pid)
            idle, idle_counts = dump(pid, base, 1)
            for n in range(POOLS):
                h.create_pool(cluster, namespace, pool_manifest(n))
            h.wait_until(
                lambda: (
                    len(cluster.rest.get(f"/apis/apps/v1/namespaces/{namespace}/deployments")["items"])
                    == POOLS
                ),
                600,
                f"{POOLS} worker Deployments",
            )
            time.sleep(SETTLE_S)
            loaded_rss = rss_mb(pid)
            loaded, loaded_counts = dump(pid, base, 2)
    by_file = loaded.compare_to(idle, "filename")
    by_package: Counter[str] = Counter()
    for stat in by_file:
        by_package[package_of(str(stat.traceback[0].filename))] += stat.size_diff
    by_line = loaded.compare_to(idle, "lineno")[:25]
    traced_growth = sum(stat.size_diff for stat in by_file)
    write_result(
        "operator_memory",
        {
            "pools": POOLS,
            "rss_mb": {"idle": round(idle_rss, 1), "loaded": round(loaded_rss, 1)},
            "rss_growth_per_pool_kb": round((loaded_rss - idle_rss) * 1024 / POOLS, 1),
            "traced_growth_mb": round(traced_growth / 2**20, 2),
            "traced_growth_per_pool_kb": round(traced_growth / 1024 / POOLS, 1),
            "traced_growth_by_package_mb": {
                name: round(size / 2**20, 2) for name, size in by_package.most_common(15)
            },
            "traced_growth_top_lines": [
                {
                    "where": str(stat.traceback[0]),
                    "kb": round(stat.size_diff / 1024, 1),
                    "count": stat.count_diff,
                }
                for stat in by_line
            ],
            "object_growth_by_type": object_growth_by_type(idle_counts, loaded_counts, 30),
            "threads": {"idle": idle_counts["threads"], "loaded": loaded_counts["threads"]},
            # glibc's heap: `free_mb` is memory freed by the process but kept by malloc (fragmentation,
            # per-thread arenas); it counts in the RSS while tracemalloc sees none of it.
            "heap_mb": {"idle": idle_counts["heap"], "loaded": loaded_counts["heap"]},
            "note": "tracemalloc on: RSS includes its bookkeeping; Python allocations only (no C buffers)",
        },
    )


if __name__ == "__main__":
    main()
