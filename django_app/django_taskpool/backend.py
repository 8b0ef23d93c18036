"""django-tasks-db's backend with taskpool's per-task options, declared the Django way.

Django's `@task(**kwargs)` hands keyword arguments it does not know to the backend's `task_class`
(django/tasks/base.py, `task()`), so with `"BACKEND": "django_taskpool.backend.DatabaseBackend"`:

    @task(time_limit=30, soft_time_limit=25)
    def build_report(...): ...

    @task(max_attempts=5, retry_on=(ConnectionError,), retry_backoff=2)
    def call_webhook(...): ...

Each option is a field of `TaskpoolTask` with its check in `DatabaseBackend.validate_task` (Django calls it
when the task is declared, so a bad value fails at import): time limits (django_taskpool.time_limits) and
retries (django_taskpool.retries).
Rows, queues and the worker loop are django-tasks-db's: switching the backend class changes nothing stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.tasks import Task
from django.tasks.exceptions import InvalidTask
from django_tasks_db.backend import DatabaseBackend as DjangoTasksDatabaseBackend

from django_taskpool.retries import OPTION_NAMES as RETRY_OPTIONS
from django_taskpool.retries import check_options
from django_taskpool.time_limits import check_limits


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskpoolTask(Task[Any, Any]):
    """A task with taskpool's options; `using()` and pickling keep them (they are dataclass fields)."""

    time_limit: float | None = None
    """Hard limit in seconds: past it the worker process is killed and the task stored FAILED
    (`django_taskpool.exceptions.TimeLimitExceeded`)."""
    soft_time_limit: float | None = None
    """Soft limit in seconds (below `time_limit`): `SoftTimeLimitExceeded` is raised inside the task."""
    max_attempts: int | None = None
    """Attempts in all, the first included (default 1: no retries)."""
    retry_on: tuple[type[BaseException], ...] | None = None
    """Exception classes that retry (default: any `Exception`)."""
    retry_backoff: float | None = None
    """Seconds before the second attempt (default 1); each later wait doubles, with jitter."""
    retry_backoff_max: float | None = None
    """The longest wait between attempts (default 600 s)."""
    retry_interrupted: bool | None = None
    """Whether a task stopped from outside (time limit, lost worker, shutdown cut-off) retries (no)."""


class DatabaseBackend(DjangoTasksDatabaseBackend):
    task_class = TaskpoolTask

    def validate_task(self, task: Task[Any, Any]) -> None:
        super().validate_task(task)
        if isinstance(task, TaskpoolTask):
            try:
                check_limits(task.time_limit, task.soft_time_limit)
                check_options({name: getattr(task, name) for name in RETRY_OPTIONS})
            except ValueError as exc:
                raise InvalidTask(f"{task.module_path}: {exc}") from None
