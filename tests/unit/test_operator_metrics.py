"""The operator's per-pool series: what a scrape shows after each record call, counters at 0 before their
first event, the scheduler's ready pods only for pools that run one, and nothing left of a pool the operator
forgot."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskpool_operator import kube, metrics
from taskpool_operator.handlers import memory, scheduler
from taskpool_operator.handlers.indexes import WorkerDeployment
from taskpool_operator.pool import Pool
from tests.unit.operator_samples import body
from tests.unit.test_operator_scaling import FakeHub, Recorder, depth, run_tick

ROOT = Path(__file__).resolve().parents[2]
KEY = ("shop", "emails")
POOL = {"namespace": "shop", "pool": "emails"}


@pytest.fixture(autouse=True)
def forgotten() -> Iterator[None]:
    metrics.forget_pool(*KEY)
    yield
    metrics.forget_pool(*KEY)
    memory.forget(KEY)


def sample(name: str, **labels: str) -> float | None:
    return metrics.REGISTRY.get_sample_value(name, {**POOL, **labels})


def test_queue_gauges_follow_the_latest_reading_and_drop_gone_queues() -> None:
    metrics.record_queues("shop", "emails", ready={"a": 3, "b": 1}, running={"a": 2}, oldest_age_s={"a": 4.5})
    assert sample("taskpool_queue_ready_tasks", queue="a") == 3
    assert sample("taskpool_queue_running_tasks", queue="a") == 2
    assert sample("taskpool_queue_oldest_ready_age_seconds", queue="a") == 4.5
    assert sample("taskpool_queue_running_tasks", queue="b") == 0
    metrics.record_queues("shop", "emails", ready={"a": 0}, running={}, oldest_age_s={})
    assert sample("taskpool_queue_ready_tasks", queue="a") == 0
    assert sample("taskpool_queue_ready_tasks", queue="b") is None


def test_condition_gauges_are_one_for_the_current_status_only() -> None:
    metrics.record_conditions(
        "shop",
        "emails",
        [{"type": "DatabaseReachable", "status": "False"}, {"type": "Ready", "status": "True"}],
    )
    assert sample("taskpool_pool_condition", condition="DatabaseReachable", status="False") == 1
    assert sample("taskpool_pool_condition", condition="DatabaseReachable", status="True") == 0
    assert sample("taskpool_pool_condition", condition="DatabaseReachable", status="Unknown") == 0
    assert sample("taskpool_pool_condition", condition="Ready", status="True") == 1
    assert sample("taskpool_pool_database_reachable") == 0
    metrics.record_conditions("shop", "emails", [{"type": "DatabaseReachable", "status": "True"}])
    assert sample("taskpool_pool_database_reachable") == 1
    assert sample("taskpool_pool_condition", condition="Ready", status="True") == 1


def test_a_forgotten_pool_has_no_series_left() -> None:
    metrics.record_queues("shop", "emails", ready={"a": 1}, running={}, oldest_age_s={})
    metrics.record_replicas("shop", "emails", desired=2, current=1, ready=1, minimum=0, maximum=5)
    metrics.record_orphaned("shop", "emails", 1)
    metrics.record_conditions("shop", "emails", [{"type": "Ready", "status": "True"}])
    metrics.scale_events.labels("shop", "emails", "up").inc()
    assert sample("taskpool_pool_desired_replicas") == 2
    assert sample("taskpool_pool_max_replicas") == 5
    assert sample("taskpool_pool_orphaned_tasks") == 1
    metrics.forget_pool("shop", "emails")
    exposed = [
        s for family in metrics.REGISTRY.collect() for s in family.samples if s.labels.get("pool") == "emails"
    ]
    assert exposed == []


def test_every_per_pool_gauge_comes_from_the_one_collector_of_plain_numbers() -> None:
    """docs/operator.md: no prometheus_client object per series (that cost ~31 MB at 1,000 pools)."""
    names = {family.name for family in metrics.pool_gauges.describe()}
    contract = (ROOT / "docs" / "contracts.md").read_text()
    assert names == set(re.findall(r"`(taskpool_(?:pool|queue)_\w+)`", contract))


def scale_events(direction: str) -> float | None:
    return metrics.REGISTRY.get_sample_value(
        "taskpool_scale_events_total", {"namespace": "shop", "pool": "emails", "direction": direction}
    )


def scheduler_ready() -> float | None:
    return metrics.REGISTRY.get_sample_value(
        "taskpool_pool_scheduler_ready_replicas", {"namespace": "shop", "pool": "emails"}
    )


def test_a_pools_scale_counters_exist_at_zero_before_its_first_scale(monkeypatch: pytest.MonkeyPatch) -> None:
    metrics.forget_pool(*KEY)  # whatever other tests of this pool left
    assert scale_events("up") is None
    Recorder(monkeypatch)
    run_tick(body(), FakeHub(depth(ready=0)), [], WorkerDeployment(0, 0, 0))  # a round that does not scale
    assert (scale_events("up"), scale_events("down")) == (0, 0)
    metrics.forget_pool(*KEY)
    assert (scale_events("up"), scale_events("down")) == (None, None)


def test_the_schedulers_ready_pods_are_a_series_only_while_the_pool_runs_a_scheduler(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    written: dict[str, Any] = {}

    def create(manifest: dict[str, Any]) -> dict[str, Any]:
        written.update(manifest, status={"replicas": 1, "readyReplicas": 0})
        return written

    monkeypatch.setattr(kube, "read_deployment", lambda namespace, name: written or None)
    monkeypatch.setattr(kube, "create_deployment", create)
    monkeypatch.setattr(kube, "delete_deployment", lambda namespace, name: written.clear())
    scheduler.apply(Pool.from_body(body(scheduler={"enabled": True})))
    assert scheduler_ready() == 0  # TaskpoolSchedulerDown reads this

    patched: list[dict[str, Any]] = []
    monkeypatch.setattr(kube, "patch_pool_status", lambda namespace, name, status: patched.append(status))
    ready = {**written, "status": {"replicas": 1, "readyReplicas": 1}}
    scheduler.on_event({"type": "MODIFIED", "object": ready})
    assert scheduler_ready() == 1
    assert patched == [{"scheduler": {"deployment": "emails-scheduler", "replicas": 1, "readyReplicas": 1}}]

    scheduler.apply(Pool.from_body(body()))  # turned off: the Deployment and the series go
    assert written == {}
    assert scheduler_ready() is None
