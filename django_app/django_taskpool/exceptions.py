"""Exceptions that appear in task results written by taskpool rather than by a task's own code.

`WorkerLost` is the `exception_class_path` (`django_taskpool.exceptions.WorkerLost`) of a task whose worker
died while running it: a child process killed inside a live pod (its supervisor marks the row at once, or
at the next start of the container), or a whole pod gone (the taskpool operator marks the row after the
pool's `spec.orphans.gracePeriod`). The operator never imports Django: it writes the path and a one-line
explanation (the `traceback`) straight into the task table, and this class lets
`task_result.errors[0].exception_class` resolve it.

`TimeLimitExceeded` is stored when a task ran past its hard time limit and the supervisor killed its process.
`SoftTimeLimitExceeded` is raised inside a task that ran past its soft time limit, so it can clean up; a task
that lets it propagate is stored FAILED with it, one that catches it and returns is SUCCESSFUL.
"""

from __future__ import annotations


class WorkerLost(Exception):
    """The worker running the task stopped without recording a result; the task may have run partly."""


class TimeLimitExceeded(Exception):
    """The task ran past its hard time limit: its process was killed, and the task may have run partly."""


class SoftTimeLimitExceeded(Exception):
    """Raised inside a task that ran past its soft time limit; the hard limit (if any) still applies."""


def class_path(exception: type[BaseException]) -> str:
    """The `exception_class_path` django-tasks-db stores for an exception of this class."""
    return f"{exception.__module__}.{exception.__qualname__}"
