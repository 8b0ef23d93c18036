"""The scheduler process: fires periodic tasks exactly once and prunes finished rows (`taskpool_scheduler`).

One loop thread fires schedules every `interval` seconds; a second thread, with its own database connection,
prunes, so a long prune never delays a fire. Any number of schedulers may run against one database: the
fires table's unique key decides which of them enqueues a fire.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import threading
import time
from collections.abc import Callable, Sequence

from django.db import DatabaseError, connections
from prometheus_client import CollectorRegistry, Counter, Gauge

from django_taskpool import retention
from django_taskpool.schedules import FireDecision, decide
from django_taskpool.scheduling import BoundSchedule, database_alias, latest_recorded_fire, record_fire

logger = logging.getLogger("django_taskpool.scheduler")

type Clock = Callable[[], datetime.datetime]


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class SchedulerMetrics:
    """Names and labels are a contract (docs/contracts.md); `schedule` is a name from settings."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.last_fire = Gauge(
            "taskpool_schedule_last_fire_timestamp_seconds",
            "The latest fire recorded for the schedule (by any scheduler), Unix time; 0 before the first.",
            ("schedule",),
            registry=registry,
        )
        self.next_fire = Gauge(
            "taskpool_schedule_next_fire_timestamp_seconds",
            "When the schedule fires next, as a Unix time.",
            ("schedule",),
            registry=registry,
        )
        self.period = Gauge(
            "taskpool_schedule_period_seconds",
            "The gap between the schedule's next two fires.",
            ("schedule",),
            registry=registry,
        )
        self.last_tick = Gauge(
            "taskpool_scheduler_last_tick_timestamp_seconds",
            "When this scheduler last looked at every schedule (its heartbeat), as a Unix time.",
            registry=registry,
        )
        self.fires = Counter(
            "taskpool_schedule_fires",
            "Fires this scheduler enqueued (summed over schedulers: every fire once).",
            ("schedule",),
            registry=registry,
        )
        self.misfires = Counter(
            "taskpool_schedule_misfires",
            "Fires given up because no scheduler ran at their instant (missed-fire policy).",
            ("schedule",),
            registry=registry,
        )
        self.rows_pruned = Counter(
            "taskpool_retention_rows_pruned",
            "Finished task rows deleted by retention.",
            ("status",),
            registry=registry,
        )
        self.oldest_finished_age = Gauge(
            "taskpool_retention_oldest_finished_age_seconds",
            "Age of the oldest finished row in the pool's queues; 0 when none.",
            ("status",),
            registry=registry,
        )


@dataclasses.dataclass
class _State:
    last_fire: datetime.datetime | None
    next_fire: datetime.datetime


class Scheduler:
    def __init__(
        self,
        schedules: Sequence[BoundSchedule],
        policy: retention.RetentionPolicy,
        *,
        interval: float,
        misfire_grace: datetime.timedelta,
        prune_interval: float,
        prune_duty: float,
        registry: CollectorRegistry,
        clock: Clock = utc_now,
    ) -> None:
        self.schedules = list(schedules)
        self.policy = policy
        self.interval = interval
        self.misfire_grace = misfire_grace
        self.prune_interval = prune_interval
        self.prune_duty = prune_duty
        self.metrics = SchedulerMetrics(registry)
        self.clock = clock
        self.stopping = threading.Event()
        self._states: dict[str, _State] = {}
        self._last_tick = time.monotonic()
        for bound in self.schedules:
            name = bound.schedule.name
            self.metrics.fires.labels(name)
            self.metrics.misfires.labels(name)
        for status in retention.FINISHED_STATUSES:
            self.metrics.rows_pruned.labels(status.lower())

    def seconds_since_tick(self) -> float:
        return time.monotonic() - self._last_tick

    def run(self) -> None:
        """Fires schedules until `stopping` is set; prunes in a thread of its own meanwhile."""
        pruner = threading.Thread(target=self._prune_loop, name="taskpool-retention", daemon=True)
        if self.policy.enabled:
            pruner.start()
        try:
            while not self.stopping.is_set():
                try:
                    self.tick()
                except DatabaseError as exc:
                    logger.warning("cannot reach the database: %s", str(exc).strip().splitlines()[0])
                    connections[database_alias()].close()
                self.stopping.wait(self.interval)
        finally:
            if pruner.is_alive():
                pruner.join(timeout=30)
            connections[database_alias()].close()

    def tick(self) -> None:
        """Records every due fire (enqueueing its task unless the policy skips it)."""
        now = self.clock()
        for bound in self.schedules:
            self._tick_schedule(bound, now)
        self._last_tick = time.monotonic()
        self.metrics.last_tick.set(now.timestamp())

    def _tick_schedule(self, bound: BoundSchedule, now: datetime.datetime) -> None:
        schedule = bound.schedule
        state = self._states.get(schedule.name)
        if state is None:
            last = latest_recorded_fire(schedule.name)
            state = self._states[schedule.name] = _State(last, schedule.next_fire(last or now))
        if state.next_fire <= now:
            # Another scheduler may have recorded fires meanwhile: decide from what the table holds.
            state.last_fire = latest_recorded_fire(schedule.name)
            while (decision := decide(schedule, state.last_fire, now, self.misfire_grace)) is not None:
                if record_fire(bound, decision):
                    self._count(bound, decision)
                state.last_fire = decision.fire_time
            state.next_fire = schedule.next_fire(max(now, state.last_fire or now))
        if state.last_fire is not None:
            self.metrics.last_fire.labels(schedule.name).set(state.last_fire.timestamp())
        else:
            self.metrics.last_fire.labels(schedule.name).set(0)
        self.metrics.next_fire.labels(schedule.name).set(state.next_fire.timestamp())
        self.metrics.period.labels(schedule.name).set(schedule.period(now).total_seconds())

    def _count(self, bound: BoundSchedule, decision: FireDecision) -> None:
        name = bound.schedule.name
        if decision.missed:
            self.metrics.misfires.labels(name).inc(decision.missed)
            logger.warning(
                "schedule %s missed %d fire(s)%s",
                name,
                decision.missed,
                "" if decision.enqueue else f"; skipped the latest ({decision.fire_time.isoformat()})",
            )
        if decision.enqueue:
            self.metrics.fires.labels(name).inc()
            logger.info(
                "schedule %s fired %s (fire time %s)",
                name,
                bound.task.module_path,
                decision.fire_time.isoformat(),
            )

    def _prune_loop(self) -> None:
        alias = database_alias()
        try:
            while not self.stopping.is_set():
                try:
                    self.prune()
                except DatabaseError as exc:
                    logger.warning("retention paused: %s", str(exc).strip().splitlines()[0])
                    connections[alias].close()
                self.stopping.wait(self.prune_interval)
        finally:
            connections[alias].close()

    def prune(self) -> int:
        """Deletes batches until nothing the policy expires is left (or the scheduler stops); the rows
        deleted. Then measures the oldest finished row."""
        alias = database_alias()
        queues = retention.queues_to_prune(self.policy, alias)
        deleted = 0
        for queue in queues:
            for status in retention.FINISHED_STATUSES:
                while not self.stopping.is_set():
                    started = time.monotonic()
                    batch = retention.prune_batch(self.policy, alias, queue, status, self.clock())
                    self.metrics.rows_pruned.labels(status.lower()).inc(batch)
                    deleted += batch
                    if batch < self.policy.batch_size:
                        break
                    # Pausing in proportion keeps deleting to `prune_duty` of the time: the database's CPU
                    # and disk stay with the workers (a backlog of a million rows takes minutes, not hours).
                    self.stopping.wait((time.monotonic() - started) * (1 / self.prune_duty - 1))
        while not self.stopping.is_set() and retention.prune_fires(self.policy, alias, self.clock()):
            pass
        for status, age in retention.oldest_finished_age(self.policy, alias, queues).items():
            self.metrics.oldest_finished_age.labels(status.lower()).set(age)
        if deleted:
            logger.info("retention deleted %d finished task row(s)", deleted)
        return deleted
