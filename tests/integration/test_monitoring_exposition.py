"""The worker runtime's real exposition passes `promtool check metrics` and carries every series the
dashboards and rules read (names from docs/contracts.md, via monitoring.config)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest
from prometheus_client.parser import text_string_to_metric_families

from devdb.demo_project import MigratedDatabase, enqueue, task_rows, wait_until
from monitoring import config
from tests.support.django_db import WorkerRun

pytestmark = pytest.mark.integration

WORKER_SERIES = {
    config.STARTED: {"task", "queue", "backend"},
    config.FINISHED: {"task", "queue", "backend", "outcome"},
    config.DURATION + "_bucket": {"task", "queue", "backend", "outcome", "le"},
    config.QUEUE_WAIT + "_bucket": {"task", "queue", "backend", "le"},
    config.IN_PROGRESS: {"queue", "backend"},
    config.PROCESS_RESTARTS: set(),
    config.PROCESSES: set(),
}


def promtool_check_metrics(exposition: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["promtool", "check", "metrics"], input=exposition, capture_output=True, text=True, check=False
    )


def test_worker_exposition_passes_promtool_and_has_the_series_we_query(
    migrated_database: MigratedDatabase, worker_runs: Callable[..., WorkerRun]
) -> None:
    db = migrated_database
    ids = enqueue(db.url, "flaky", count=6, failure_rate=0.5) + enqueue(
        db.url, "slow", count=2, duration=0.05
    )
    worker = worker_runs(db.url, "--queue-name=*", "--concurrency=2")
    worker.wait_ready(processes=2)
    wait_until(
        lambda: all(task_rows(db.dsn)[i]["status"] in {"SUCCESSFUL", "FAILED"} for i in ids), 60, "tasks done"
    )

    status, exposition = worker.get("/metrics")
    assert status == 200
    checked = promtool_check_metrics(exposition)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.strip() == "", checked.stdout  # no lint findings at all

    samples = [s for family in text_string_to_metric_families(exposition) for s in family.samples]
    for name, labels in WORKER_SERIES.items():
        found = [s for s in samples if s.name == name]
        assert found, f"{name} missing from the worker's /metrics"
        assert set(found[0].labels) == labels, name
    assert sum(s.value for s in samples if s.name == config.FINISHED) == len(ids)
    assert {s.labels["outcome"] for s in samples if s.name == config.FINISHED and s.value} <= {
        "successful",
        "failed",
    }
    # The per-task counters alerts read with increase() exist at 0 for every started task before their first
    # event (none happened here), so that first event counts.
    started = {(s.labels["task"], s.labels["queue"]) for s in samples if s.name == config.STARTED}
    assert len(started) == 2
    for name in (config.TIME_LIMIT_KILLS, config.TASKS_LOST, config.SOFT_TIME_LIMITS):
        zero = {(s.labels["task"], s.labels["queue"]) for s in samples if s.name == name and s.value == 0}
        assert zero == started, name
    exhausted = {
        (s.labels["task"], s.labels["queue"])
        for s in samples
        if s.name == config.RETRIES and s.labels["outcome"] == "exhausted"
    }
    assert exhausted == started
