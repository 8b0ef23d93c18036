"""A worker child process SIGKILLed inside a live pod, on the local cluster, with full task accounting.

The pod stays (so the operator's orphan recovery, which waits for pods to vanish, never fires): the pod's
supervisor resolves the killed process's task at once (FAILED `WorkerLost`, the pool's default
`spec.orphans.action: Fail` passed as `--on-worker-lost=fail`) and restarts the process under a new worker id.
Every task enqueued ends SUCCESSFUL or FAILED `WorkerLost`, exactly one FAILED per kill, none left RUNNING.
"""

from __future__ import annotations

import json
import os
import signal
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from devcluster import operator_harness as h
from devcluster.control_plane import LocalCluster
from devcluster.operator_harness import OperatorProcess
from devdb.demo_project import MigratedDatabase, enqueue, task_rows
from taskpool_operator import objects

pytestmark = pytest.mark.e2e

POOL = "childfaults"
TASKS = 24
KILLS = 3
WORKER_LOST = "django_taskpool.exceptions.WorkerLost"


def worker_pods(cluster: LocalCluster, namespace: str) -> list[dict[str, Any]]:
    return list(
        cluster.rest.get(f"/api/v1/namespaces/{namespace}/pods", labelSelector=objects.selector_string(POOL))[
            "items"
        ]
    )


def health(pod: dict[str, Any]) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://{pod['status']['podIP']}:9100/healthz", timeout=5) as response:
        return dict(json.loads(response.read()))


def polling(pod: dict[str, Any]) -> bool:
    try:
        processes = health(pod)["processes"]
    except OSError:  # not listening yet
        return False
    return len(processes) == 2 and all(p["alive"] for p in processes)


def host_pid(pod_name: str, pid_in_pod: int) -> int | None:
    """The host's pid of a process of the pod (pods have their own PID namespace): the process whose
    environment names the pod and whose innermost namespace pid is `pid_in_pod`."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if f"POD_NAME={pod_name}".encode() not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            status = (entry / "status").read_text()
        except OSError:
            continue
        nspids = next((line.split()[1:] for line in status.splitlines() if line.startswith("NSpid:")), [])
        if nspids and int(nspids[-1]) == pid_in_pod:
            return int(entry.name)
    return None


def test_child_process_sigkilled_inside_a_live_pod(
    cluster: LocalCluster, namespace: str, database: MigratedDatabase, operator: OperatorProcess
) -> None:
    h.create_pool(
        cluster,
        namespace,
        h.pool_manifest(
            POOL,
            "db",
            scaling={"minReplicas": 1, "maxReplicas": 1, "pollInterval": "1s"},
            worker={"concurrency": 2, "interval": "200ms"},
        ),
    )
    (pod,) = h.wait_until(
        lambda: [p for p in worker_pods(cluster, namespace) if p.get("status", {}).get("podIP")] or None,
        180,
        "the worker pod",
    )
    pod_name = pod["metadata"]["name"]
    h.wait_until(lambda: polling(pod), 180, "the pod's two worker processes polling")
    ids = enqueue(database.url, "slow", count=TASKS, duration=1.5)
    killed: dict[str, str] = {}  # task id -> worker id running it when killed

    while len(killed) < KILLS:

        def victim() -> tuple[str, str, int] | None:
            processes = {p["worker_id"]: p for p in health(pod)["processes"] if p["alive"] and p["busy"]}
            for task_id, row in task_rows(database.dsn).items():
                worker = row["worker_ids"][-1] if row["worker_ids"] else None
                if row["status"] == "RUNNING" and task_id not in killed and worker in processes:
                    pid = host_pid(pod_name, processes[worker]["pid"])
                    if pid is not None:
                        return task_id, worker, pid
            return None

        task_id, worker, pid = h.wait_until(victim, 120, f"a running task to kill ({len(killed)} killed)")
        os.kill(pid, signal.SIGKILL)
        killed[task_id] = worker
        h.wait_until(
            lambda task_id=task_id: task_rows(database.dsn)[task_id]["status"] != "RUNNING",
            30,
            f"the supervisor to resolve task {task_id}",
        )

    rows = h.wait_until(
        lambda: (
            (r := task_rows(database.dsn))
            and all(r[i]["status"] in {"SUCCESSFUL", "FAILED"} for i in ids)
            and r
        ),
        300,
        "every task to finish",
    )
    # Full accounting: every task is SUCCESSFUL except exactly the killed ones, FAILED with WorkerLost.
    assert Counter(rows[i]["status"] for i in ids) == {"SUCCESSFUL": TASKS - KILLS, "FAILED": KILLS}
    for task_id, worker in killed.items():
        row = rows[task_id]
        assert (row["status"], row["exception_class_path"]) == ("FAILED", WORKER_LOST)
        assert worker in row["traceback"]
        assert "killed by SIGKILL" in row["traceback"]
    assert len(set(killed.values())) == KILLS  # a restarted process never reuses a killed id
    assert all(worker.startswith(f"{pod_name}-") for worker in killed.values())
    # The same pod ran everything: its container never restarted, and the operator had no orphans to recover.
    (after,) = worker_pods(cluster, namespace)
    assert after["metadata"]["name"] == pod_name
    assert all(c.get("restartCount", 0) == 0 for c in after["status"].get("containerStatuses", []))
    status = h.get_pool(cluster, namespace, POOL).get("status", {})
    assert not status.get("orphansRecovered")
    assert not status.get("orphanedTasks")
    assert {p["alive"] for p in health(after)["processes"]} == {True}
