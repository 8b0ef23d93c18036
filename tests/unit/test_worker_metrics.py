"""What the worker records per task, computed from plain task results (no database, no processes)."""

from __future__ import annotations

import datetime
import logging
from collections.abc import Iterable
from types import SimpleNamespace
from typing import Any

import pytest
from django.tasks import TaskResultStatus
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from django_taskpool import metrics

pytestmark = pytest.mark.unit

T0 = datetime.datetime(2026, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)


def result(
    *,
    enqueued: float = 0.0,
    run_after: float | None = None,
    started: float | None = 10.0,
    finished: float | None = 12.5,
    status: TaskResultStatus = TaskResultStatus.SUCCESSFUL,
) -> Any:
    def at(seconds: float | None) -> datetime.datetime | None:
        return None if seconds is None else T0 + datetime.timedelta(seconds=seconds)

    task = SimpleNamespace(module_path="app.tasks.report", queue_name="reports", run_after=at(run_after))
    return SimpleNamespace(
        id="5b0f0b9e-0000-0000-0000-000000000000",
        task=task,
        backend="default",
        status=status,
        enqueued_at=at(enqueued),
        started_at=at(started),
        finished_at=at(finished),
        worker_ids=["pod-0"],
    )


def test_queue_wait_counts_from_enqueue_without_run_after() -> None:
    # The backend's "no run_after" sentinel (year 9999) reaches receivers as None.
    assert metrics.queue_wait_seconds(result(enqueued=1.0, run_after=None, started=4.0)) == 3.0


def test_queue_wait_counts_from_run_after_when_later() -> None:
    assert metrics.queue_wait_seconds(result(enqueued=0.0, run_after=8.0, started=10.0)) == 2.0


def test_queue_wait_ignores_run_after_in_the_past() -> None:
    assert metrics.queue_wait_seconds(result(enqueued=5.0, run_after=1.0, started=10.0)) == 5.0


def test_clock_skew_is_not_a_negative_wait() -> None:
    assert metrics.queue_wait_seconds(result(enqueued=10.5, started=10.0)) == 0.0


def test_run_time_and_outcome() -> None:
    assert metrics.run_seconds(result(started=10.0, finished=12.5)) == 2.5
    assert metrics.run_seconds(result(finished=None)) is None
    assert metrics.outcome_of(result()) == "successful"
    assert metrics.outcome_of(result(status=TaskResultStatus.FAILED)) == "failed"


def test_recorded_series_have_the_contract_names_and_bounded_labels() -> None:
    task_metrics = metrics.TaskMetrics()
    task_metrics.record_started(result())
    task_metrics.record_finished(result(status=TaskResultStatus.FAILED))
    registry = CollectorRegistry()
    for collector in vars(task_metrics).values():
        if isinstance(collector, MetricWrapperBase):
            registry.register(collector)
    families = {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}
    assert set(families) >= {
        "taskpool_worker_tasks_started",
        "taskpool_worker_tasks_finished",
        "taskpool_worker_task_duration_seconds",
        "taskpool_worker_task_queue_wait_seconds",
        "taskpool_worker_tasks_in_progress",
        "taskpool_worker_last_poll_timestamp_seconds",
    }
    finished = [s for s in families["taskpool_worker_tasks_finished"].samples if s.name.endswith("_total")]
    task = {"task": "app.tasks.report", "queue": "reports", "backend": "default"}
    # Every outcome of a started task is a series, at 0 until its first finish of that outcome.
    assert sorted((s.labels["outcome"], s.value) for s in finished if s.labels.items() >= task.items()) == [
        ("failed", 1.0),
        ("retried", 0.0),
        ("successful", 0.0),
    ]
    assert len(finished) == 3
    wait = {s.name: s.value for s in families["taskpool_worker_task_queue_wait_seconds"].samples}
    assert wait["taskpool_worker_task_queue_wait_seconds_sum"] == 10.0


def test_receivers_never_raise(caplog: pytest.LogCaptureFixture) -> None:
    """A raising receiver would fail the task (Django sends task signals with `send`)."""
    task_metrics = metrics.TaskMetrics()
    broken = SimpleNamespace(id="x")  # no task, no timestamps
    receiver = metrics._never_raising(task_metrics.record_finished)
    with caplog.at_level(logging.ERROR, logger="django_taskpool"):
        receiver(sender=None, task_result=broken)
    assert "recording metrics for task x failed" in caplog.text


def test_task_line_carries_id_path_queue_outcome_and_duration(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="django_taskpool"):
        metrics.TaskMetrics().record_finished(result())
    (record,) = caplog.records
    assert record.getMessage() == (
        "task id=5b0f0b9e-0000-0000-0000-000000000000 path=app.tasks.report queue=reports "
        "outcome=successful duration=2.500s"
    )
    assert record.__dict__["worker_id"] == "pod-0"


def samples_of(*collectors: Collector) -> list[Sample]:
    registry = CollectorRegistry()
    for collector in collectors:
        registry.register(collector)
    return [s for f in text_string_to_metric_families(generate_latest(registry).decode()) for s in f.samples]


def test_supervisor_collector() -> None:
    samples = {
        s.name: s for s in samples_of(metrics.SupervisorCollector(restarts=lambda: 2, processes=lambda: 3))
    }
    assert samples["taskpool_worker_process_restarts_total"].value == 2
    assert samples["taskpool_worker_processes"].value == 3
    assert samples["taskpool_worker_build_info"].labels["django_tasks_db_version"] == "0.13.0"


class ProcessMetrics(Collector):
    """What the worker processes' multiprocess files hold: the given task started once, and its retries."""

    def __init__(self, started: list[tuple[str, str, str]], retries: dict[tuple[str, ...], float]) -> None:
        self.started = started
        self.retries = retries

    def collect(self) -> Iterable[Metric]:
        started = CounterMetricFamily(metrics.STARTED, "", labels=list(metrics.TASK_LABELS))
        for labels in self.started:
            started.add_metric(list(labels), 1)
        yield started
        retries = CounterMetricFamily(metrics.RETRIES, "", labels=[*metrics.TASK_LABELS, "outcome"])
        for retry_labels, count in self.retries.items():
            retries.add_metric(list(retry_labels), count)
        yield retries


TASK = ("app.tasks.report", "reports", "default")
OTHER = ("app.tasks.email", "emails", "default")


def per_task_counts(
    processes: Collector,
    lost: dict[tuple[str, str, str, str], int] | None = None,
    kills: dict[tuple[str, str, str], int] | None = None,
    retries: dict[tuple[str, str, str, str], int] | None = None,
) -> dict[tuple[str, tuple[str, ...]], float]:
    collector = metrics.WithSupervisorCounts(
        processes,
        retries=lambda: retries or {},
        tasks_lost=lambda: lost or {},
        time_limit_kills=lambda: kills or {},
        lost_actions=["fail", "requeue"],
    )
    return {
        (s.name, label_values(s.labels)): s.value for s in samples_of(collector) if s.name.endswith("_total")
    }


def label_values(labels: dict[str, str]) -> tuple[str, ...]:
    """task, queue, backend, then the further label (the exposition sorts labels by name)."""
    further = tuple(value for name, value in labels.items() if name not in metrics.TASK_LABELS)
    return tuple(labels[name] for name in metrics.TASK_LABELS) + further


def test_per_task_counters_of_a_started_task_exist_at_zero_before_their_first_event() -> None:
    counts = per_task_counts(ProcessMetrics(started=[TASK], retries={}))
    assert counts == {
        ("taskpool_worker_tasks_started_total", TASK): 1,
        ("taskpool_worker_task_retries_total", (*TASK, "retried")): 0,
        ("taskpool_worker_task_retries_total", (*TASK, "exhausted")): 0,
        ("taskpool_worker_tasks_lost_total", (*TASK, "fail")): 0,
        ("taskpool_worker_tasks_lost_total", (*TASK, "requeue")): 0,
        ("taskpool_worker_time_limit_kills_total", TASK): 0,
    }


def test_per_task_counters_add_the_supervisors_counts_to_the_processes() -> None:
    counts = per_task_counts(
        ProcessMetrics(started=[TASK], retries={(*TASK, "retried"): 2}),
        lost={(*OTHER, "fail"): 4},
        kills={TASK: 1},
        retries={(*TASK, "retried"): 1, (*OTHER, "exhausted"): 1},
    )
    assert counts[("taskpool_worker_task_retries_total", (*TASK, "retried"))] == 3
    assert counts[("taskpool_worker_task_retries_total", (*TASK, "exhausted"))] == 0
    assert counts[("taskpool_worker_task_retries_total", (*OTHER, "exhausted"))] == 1
    assert counts[("taskpool_worker_tasks_lost_total", (*OTHER, "fail"))] == 4
    assert counts[("taskpool_worker_tasks_lost_total", (*TASK, "fail"))] == 0
    assert counts[("taskpool_worker_time_limit_kills_total", TASK)] == 1


def test_a_started_task_has_its_soft_time_limit_series_at_zero() -> None:
    task_metrics = metrics.TaskMetrics()
    assert [s for m in task_metrics.soft_time_limits.collect() for s in m.samples] == []
    task_metrics.record_started(result())
    (soft,) = [
        s for m in task_metrics.soft_time_limits.collect() for s in m.samples if s.name.endswith("_total")
    ]
    assert (soft.labels, soft.value) == (
        {"task": "app.tasks.report", "queue": "reports", "backend": "default"},
        0,
    )
