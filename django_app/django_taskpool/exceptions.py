"""Exceptions that appear in task results written by taskpool rather than by a task.

`WorkerLost` is the `exception_class_path` (`django_taskpool.exceptions.WorkerLost`) of a task the taskpool
operator marked FAILED because the worker running it disappeared (SIGKILL, OOM kill, forced pod deletion, a
lost node) and the pool's `spec.orphans.action` is `Fail`. The operator never imports Django: it writes the
path and a one-line explanation (the `traceback`) straight into the task table, and this class lets
`task_result.errors[0].exception_class` resolve it.
"""

from __future__ import annotations


class WorkerLost(Exception):
    """The worker running the task stopped without recording a result; the task may have run partly."""
