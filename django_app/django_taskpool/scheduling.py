"""The scheduler's Django side: schedules bound to their tasks, and fires recorded and enqueued at once."""

from __future__ import annotations

import dataclasses
import datetime
import logging
from typing import Any

from django.conf import settings
from django.db import IntegrityError, router, transaction
from django.tasks import Task
from django.tasks.exceptions import InvalidTask
from django.utils.module_loading import import_string

from django_taskpool.models import ScheduleFire
from django_taskpool.schedules import FireDecision, Schedule, ScheduleError, parse_schedules

logger = logging.getLogger("django_taskpool.scheduler")

type AnyTask = Task[..., Any]


@dataclasses.dataclass(frozen=True)
class BoundSchedule:
    schedule: Schedule
    task: AnyTask
    """The task with the schedule's queue and priority applied."""


def _bind(schedule: Schedule) -> BoundSchedule:
    def fail(why: str) -> ScheduleError:
        return ScheduleError(f"TASKPOOL_SCHEDULES[{schedule.name!r}]: {why}")

    try:
        task = import_string(schedule.task_path)
    except ImportError as exc:
        raise fail(f"cannot import task {schedule.task_path!r}: {exc}") from None
    if not isinstance(task, Task):
        raise fail(f"{schedule.task_path!r} is not a task (decorate it with django.tasks.task)")
    changes: dict[str, Any] = {}
    if schedule.queue is not None:
        changes["queue_name"] = schedule.queue
    if schedule.priority is not None:
        changes["priority"] = schedule.priority
    try:
        bound = task.using(**changes) if changes else task
        bound.get_backend().validate_task(bound)
    except InvalidTask as exc:
        raise fail(str(exc)) from None
    return BoundSchedule(schedule=schedule, task=bound)


def load_schedules() -> list[BoundSchedule]:
    """settings.TASKPOOL_SCHEDULES, checked and bound to their tasks; ScheduleError names what is wrong."""
    return [_bind(schedule) for schedule in parse_schedules(getattr(settings, "TASKPOOL_SCHEDULES", None))]


def database_alias() -> str:
    return router.db_for_write(ScheduleFire)


def latest_recorded_fire(name: str) -> datetime.datetime | None:
    """The newest fire any scheduler recorded for the schedule (one probe of the unique index)."""
    return (
        ScheduleFire.objects.using(database_alias())
        .filter(schedule=name)
        .order_by("-fire_time")
        .values_list("fire_time", flat=True)
        .first()
    )


def record_fire(bound: BoundSchedule, decision: FireDecision) -> bool:
    """Records the fire and enqueues its task in one transaction; False when another scheduler recorded that
    fire first (the insert waits for that scheduler's transaction, then hits the unique key). A crash before
    the commit leaves neither the fire nor the task, so the fire is tried again."""
    schedule = bound.schedule
    alias = database_alias()
    try:
        with transaction.atomic(using=alias):
            fire = ScheduleFire.objects.using(alias).create(
                schedule=schedule.name, fire_time=decision.fire_time, missed=decision.missed
            )
            if decision.enqueue:
                result = bound.task.enqueue(*schedule.args, **schedule.kwargs)
                fire.task_result_id = str(result.id)
                fire.save(update_fields=["task_result_id"])
    except IntegrityError:
        return False
    return True
