"""The operator's per-pool gauges: what a scrape shows after each record call, and nothing of a gone pool."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskpool_operator import metrics

ROOT = Path(__file__).resolve().parents[2]
POOL = {"namespace": "shop", "pool": "emails"}


@pytest.fixture(autouse=True)
def forgotten() -> Iterator[None]:
    metrics.forget_pool(*POOL.values())
    yield
    metrics.forget_pool(*POOL.values())


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
