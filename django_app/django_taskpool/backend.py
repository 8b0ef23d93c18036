"""django-tasks-db's backend with taskpool's per-task options, declared the Django way.

Django's `@task(**kwargs)` hands keyword arguments it does not know to the backend's `task_class`
(django/tasks/base.py, `task()`), so with `"BACKEND": "django_taskpool.backend.DatabaseBackend"`:

    @task(time_limit=30, soft_time_limit=25)
    def build_report(...): ...

Each option is a field of `TaskpoolTask` with its check in `DatabaseBackend.validate_task` (Django calls it
when the task is declared, so a bad value fails at import). Further options (retries) are added the same way.
Rows, queues and the worker loop are django-tasks-db's: switching the backend class changes nothing stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.tasks import Task
from django.tasks.exceptions import InvalidTask
from django_tasks_db.backend import DatabaseBackend as DjangoTasksDatabaseBackend

from django_taskpool.time_limits import check_limits


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskpoolTask(Task[Any, Any]):
    """A task with taskpool's options; `using()` and pickling keep them (they are dataclass fields)."""

    time_limit: float | None = None
    """Hard limit in seconds: past it the worker process is killed and the task stored FAILED
    (`django_taskpool.exceptions.TimeLimitExceeded`)."""
    soft_time_limit: float | None = None
    """Soft limit in seconds (below `time_limit`): `SoftTimeLimitExceeded` is raised inside the task."""


class DatabaseBackend(DjangoTasksDatabaseBackend):
    task_class = TaskpoolTask

    def validate_task(self, task: Task[Any, Any]) -> None:
        super().validate_task(task)
        if isinstance(task, TaskpoolTask):
            try:
                check_limits(task.time_limit, task.soft_time_limit)
            except ValueError as exc:
                raise InvalidTask(f"{task.module_path}: {exc}") from None
