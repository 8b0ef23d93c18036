"""The operator's per-pool series: counters at 0 before their first event, the scheduler's ready pods only for
pools that run one, and nothing left of a pool the operator forgot."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from taskpool_operator import kube, metrics
from taskpool_operator.handlers import memory, scheduler
from taskpool_operator.handlers.indexes import WorkerDeployment
from taskpool_operator.pool import Pool
from tests.unit.operator_samples import body
from tests.unit.test_operator_scaling import FakeHub, Recorder, depth, run_tick

KEY = ("shop", "emails")


@pytest.fixture(autouse=True)
def forgotten() -> Iterator[None]:
    yield
    metrics.forget_pool(*KEY)
    memory.forget(KEY)


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
