"""Logging of the worker runtime: one line per task, as text or JSON (`--log-format`).

The runtime's loggers get their own stderr handler and stop propagating, so the project's LOGGING settings
neither duplicate nor swallow the per-task lines; everything else keeps the project's configuration.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from django.tasks import TaskResult
from pythonjsonlogger.json import JsonFormatter

LOG_FORMATS = ("text", "json")
_FORMAT = "%(asctime)s %(levelname)s %(processName)s %(name)s %(message)s"
logger = logging.getLogger("django_taskpool")


def configure(log_format: str, verbosity: int) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter(_FORMAT, rename_fields={"levelname": "level", "asctime": "time"}))
    else:
        handler.setFormatter(logging.Formatter(_FORMAT))
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    # django.tasks logs every start and finish at INFO; our per-task line replaces those, while its ERROR
    # line with the traceback of a failed task stays.
    levels = {
        "django_taskpool": level,
        "django_tasks_db": level,
        "django.tasks": level if verbosity >= 2 else max(level, logging.WARNING),
    }
    for name, logger_level in levels.items():
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(logger_level)
        logger.propagate = False


def log_task(task_result: TaskResult[..., Any], outcome: str, duration: float | None) -> None:
    """The one line per finished task (fields also as JSON extras with `--log-format json`)."""
    task = task_result.task
    logger.info(
        "task id=%s path=%s queue=%s outcome=%s duration=%.3fs",
        task_result.id,
        task.module_path,
        task.queue_name,
        outcome,
        duration or 0.0,
        extra={
            "task_id": str(task_result.id),
            "task_path": task.module_path,
            "queue": task.queue_name,
            "backend": task_result.backend,
            "outcome": outcome,
            "duration_s": duration,
            "worker_id": task_result.worker_ids[-1] if task_result.worker_ids else None,
        },
    )
