"""Prometheus metrics of the worker runtime (names and labels are a contract: docs/contracts.md).

Worker processes record into prometheus-client's multiprocess files (`PROMETHEUS_MULTIPROC_DIR`, set by the
supervisor before it starts them); the supervisor serves the aggregate together with its own figures.
Labels carry task paths and queue names only, never ids, so the series count stays bounded.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

import django
from django.tasks import TaskResult, TaskResultStatus
from django.tasks.signals import task_finished, task_started
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

import django_taskpool
from django_taskpool import logs

logger = logging.getLogger("django_taskpool")

# From a fraction of a second (no-op and email tasks) to an hour (reports, backlogs after an outage).
SECONDS_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
)  # fmt: skip

TASK_LABELS = ("task", "queue", "backend")
STARTED = "taskpool_worker_tasks_started"
RETRIES = "taskpool_worker_task_retries"
RETRY_OUTCOMES = ("retried", "exhausted")
RETRIES_HELP = (
    "Failed attempts of tasks with a retry policy, by outcome: retried (READY again after a backoff) or "
    "exhausted (no attempt left: stored FAILED)."
)
type AnyTaskResult = TaskResult[..., Any]


class TaskMetrics:
    """The metrics a worker process records. Unregistered: the supervisor collects them from the files."""

    def __init__(self) -> None:
        self.started = Counter(
            STARTED,
            "Tasks this pod's worker processes started.",
            TASK_LABELS,
            registry=None,
        )
        self.finished = Counter(
            "taskpool_worker_tasks_finished",
            "Tasks this pod's worker processes finished, by outcome.",
            (*TASK_LABELS, "outcome"),
            registry=None,
        )
        self.duration = Histogram(
            "taskpool_worker_task_duration_seconds",
            "Run time of finished tasks (finished_at - started_at).",
            (*TASK_LABELS, "outcome"),
            buckets=SECONDS_BUCKETS,
            registry=None,
        )
        self.queue_wait = Histogram(
            "taskpool_worker_task_queue_wait_seconds",
            "Time a task waited to start: started_at - max(enqueued_at, run_after).",
            TASK_LABELS,
            buckets=SECONDS_BUCKETS,
            registry=None,
        )
        self.in_progress = Gauge(
            "taskpool_worker_tasks_in_progress",
            "Tasks running now.",
            ("queue", "backend"),
            multiprocess_mode="livesum",
            registry=None,
        )
        self.soft_time_limits = Counter(
            "taskpool_worker_soft_time_limits",
            "Tasks that ran past their soft time limit (SoftTimeLimitExceeded raised inside them).",
            TASK_LABELS,
            registry=None,
        )
        self.retries = Counter(RETRIES, RETRIES_HELP, (*TASK_LABELS, "outcome"), registry=None)
        self.last_poll = Gauge(
            "taskpool_worker_last_poll_timestamp_seconds",
            "When each live worker loop (process, or process_thread with --threads) last polled the tasks.",
            ("process",),
            multiprocess_mode="livemax",
            registry=None,
        )

        # Labelled children by label values: `labels()` costs a lock and a lookup, and the set is bounded.
        self._per_task: dict[tuple[str, str, str], tuple[Counter, Histogram]] = {}
        self._per_outcome: dict[tuple[str, str, str, str], tuple[Counter, Histogram]] = {}

    def record_started(self, task_result: AnyTaskResult) -> None:
        labels = task_labels(task_result)
        children = self._per_task.get(labels)
        if children is None:
            children = self._per_task[labels] = (
                self.started.labels(*labels),
                self.queue_wait.labels(*labels),
            )
            # From the task's first start, at 0: increase() and rate() then see its first finish of each
            # outcome (the failure ratio) and its first soft limit.
            for outcome in OUTCOMES:
                self.finished.labels(*labels, outcome)
            self.soft_time_limits.labels(*labels)
        started, queue_wait = children
        started.inc()
        wait = queue_wait_seconds(task_result)
        if wait is not None:
            queue_wait.observe(wait)

    def record_finished(self, task_result: AnyTaskResult) -> None:
        outcome = outcome_of(task_result)
        labels = (*task_labels(task_result), outcome)
        children = self._per_outcome.get(labels)
        if children is None:
            children = self._per_outcome[labels] = (
                self.finished.labels(*labels),
                self.duration.labels(*labels),
            )
        finished, duration_histogram = children
        finished.inc()
        duration = run_seconds(task_result)
        if duration is not None:
            duration_histogram.observe(duration)
        logs.log_task(task_result, outcome, duration)


def task_labels(task_result: AnyTaskResult) -> tuple[str, str, str]:
    task = task_result.task
    return task.module_path, task.queue_name, task_result.backend


OUTCOMES = ("successful", "failed", "retried")


def outcome_of(task_result: AnyTaskResult) -> str:
    """`retried`: the attempt failed and the row is READY again for a later one (django_taskpool.retries)."""
    successful, failed, retried = OUTCOMES
    if task_result.status == TaskResultStatus.SUCCESSFUL:
        return successful
    return retried if task_result.status == TaskResultStatus.READY else failed


def _seconds_between(start: datetime.datetime | None, end: datetime.datetime | None) -> float | None:
    if start is None or end is None:
        return None
    # Clocks of the enqueuing and the running host differ slightly; a negative wait is a skew, not a wait.
    return max(0.0, (end - start).total_seconds())


def run_seconds(task_result: AnyTaskResult) -> float | None:
    return _seconds_between(task_result.started_at, task_result.finished_at)


def queue_wait_seconds(task_result: AnyTaskResult) -> float | None:
    """started_at minus the later of enqueued_at and run_after (the task's run_after is None for the
    backend's "no run_after" sentinel, so a task is never counted as waiting until the year 9999)."""
    ready_at = task_result.enqueued_at
    run_after = task_result.task.run_after
    if ready_at is None or (run_after is not None and run_after > ready_at):
        ready_at = run_after
    return _seconds_between(ready_at, task_result.started_at)


class _Receiver(Protocol):
    def __call__(self, sender: Any, task_result: AnyTaskResult, **kwargs: Any) -> None: ...


def _never_raising(record: Callable[[AnyTaskResult], None]) -> _Receiver:
    """Django sends task signals with `send`, not `send_robust`: a receiver that raises fails the task.
    Metrics must never change a task's outcome, so errors are logged and swallowed here."""

    def receiver(sender: Any, task_result: AnyTaskResult, **kwargs: Any) -> None:
        try:
            record(task_result)
        except Exception:
            logger.exception("recording metrics for task %s failed", getattr(task_result, "id", "?"))

    return receiver


def connect_receivers(metrics: TaskMetrics) -> None:
    """Connects the metrics receivers; only worker processes do, so web processes record nothing."""
    started, finished = _never_raising(metrics.record_started), _never_raising(metrics.record_finished)
    task_started.connect(started, weak=False, dispatch_uid="django_taskpool.metrics.started")
    task_finished.connect(finished, weak=False, dispatch_uid="django_taskpool.metrics.finished")


def build_info_labels() -> dict[str, str]:
    return {
        "version": django_taskpool.__version__,
        "django_version": django.get_version(),
        "django_tasks_db_version": importlib.metadata.version("django-tasks-db"),
    }


class SupervisorCollector(Collector):
    """The supervisor's own figures, computed at scrape time from its state (no multiprocess files)."""

    def __init__(self, restarts: Callable[[], int], processes: Callable[[], int]) -> None:
        self._restarts = restarts
        self._processes = processes
        self._build_info = build_info_labels()

    def collect(self) -> Iterable[Metric]:
        restarts = CounterMetricFamily(
            "taskpool_worker_process_restarts", "Worker processes the supervisor restarted after a crash."
        )
        restarts.add_metric([], self._restarts())
        yield restarts
        yield GaugeMetricFamily(
            "taskpool_worker_processes", "Worker processes alive now.", value=self._processes()
        )
        info = GaugeMetricFamily(
            "taskpool_worker_build_info", "Versions of the worker runtime.", labels=list(self._build_info)
        )
        info.add_metric(list(self._build_info.values()), 1)
        yield info


type TaskKey = tuple[str, str, str]  # task, queue, backend
type TaskOutcomeKey = tuple[str, str, str, str]  # task, queue, backend, outcome or action


class WithSupervisorCounts(Collector):
    """The worker processes' metrics with the per-task counters the supervisor keeps: tasks lost and
    time-limit kills, and the retries it decided (tasks of dead processes) added to the processes'
    `taskpool_worker_task_retries` (one family: two of one name are an invalid page).

    Every task this pod has started (`taskpool_worker_tasks_started_total`) has each of these series, at 0
    until its first event: a series born with the value 1 would hide that first event from increase() and
    rate(), and so from the alerts on them."""

    def __init__(
        self,
        processes: Collector,
        *,
        retries: Callable[[], Mapping[TaskOutcomeKey, int]],
        tasks_lost: Callable[[], Mapping[TaskOutcomeKey, int]],
        time_limit_kills: Callable[[], Mapping[TaskKey, int]],
        lost_actions: Iterable[str],
    ) -> None:
        self._processes = processes
        self._retries = retries
        self._tasks_lost = tasks_lost
        self._time_limit_kills = time_limit_kills
        self._lost_actions = tuple(lost_actions)

    def collect(self) -> Iterable[Metric]:
        started: set[TaskKey] = set()
        retries: dict[TaskOutcomeKey, float] = {key: float(count) for key, count in self._retries().items()}
        for metric in self._processes.collect():
            if metric.name == STARTED:
                started.update(_task_key(sample.labels) for sample in metric.samples)
            if metric.name != RETRIES:
                yield metric
                continue
            for sample in metric.samples:
                key = (*_task_key(sample.labels), sample.labels["outcome"])
                retries[key] = retries.get(key, 0.0) + sample.value
        yield _counter(
            RETRIES, RETRIES_HELP, ("outcome",), _seeded(retries, _with_each(started, RETRY_OUTCOMES))
        )
        yield _counter(
            "taskpool_worker_tasks_lost",
            "Tasks whose worker process died while running them, resolved by the supervisor, by action.",
            ("action",),
            _seeded(self._tasks_lost(), _with_each(started, self._lost_actions)),
        )
        yield _counter(
            "taskpool_worker_time_limit_kills",
            "Tasks stopped at their hard time limit (process killed, task stored FAILED TimeLimitExceeded).",
            (),
            _seeded(self._time_limit_kills(), started),
        )


def _task_key(labels: Mapping[str, str]) -> TaskKey:
    task, queue, backend = (labels[name] for name in TASK_LABELS)
    return task, queue, backend


def _with_each(tasks: Iterable[TaskKey], values: Iterable[str]) -> list[TaskOutcomeKey]:
    return [(task, queue, backend, value) for task, queue, backend in tasks for value in values]


def _seeded[K: tuple[str, ...]](counts: Mapping[K, float], zeros: Iterable[K]) -> dict[K, float]:
    """`counts`, with a 0 for each of `zeros` it has no count for yet."""
    return {**dict.fromkeys(zeros, 0.0), **counts}


def _counter[K: tuple[str, ...]](
    name: str, documentation: str, extra_labels: tuple[str, ...], counts: Mapping[K, float]
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=[*TASK_LABELS, *extra_labels])
    for labels, count in counts.items():
        family.add_metric(list(labels), count)
    return family
