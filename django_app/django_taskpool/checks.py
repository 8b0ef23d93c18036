"""`manage.py check` (and every command that runs checks) reports a bad TASKPOOL_SCHEDULES entry."""

from __future__ import annotations

from typing import Any

from django.core import checks

from django_taskpool.schedules import ScheduleError


@checks.register(checks.Tags.compatibility)
def check_schedules(app_configs: Any = None, **_: Any) -> list[checks.CheckMessage]:
    from django_taskpool.scheduling import load_schedules  # noqa: PLC0415 - imports the project's tasks

    try:
        load_schedules()
    except ScheduleError as exc:
        return [checks.Error(str(exc), id="django_taskpool.E001")]
    return []
