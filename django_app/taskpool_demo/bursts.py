"""Bursts of tasks: what the JSON API and `manage.py enqueue_burst` accept, validated, and enqueued."""

from __future__ import annotations

import datetime
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.tasks import Task
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from taskpool_demo import tasks

MAX_BURST = 10_000
MAX_DURATION_S = 3600.0


class BadRequest(ValueError):
    """The request body names something the API cannot do; the message goes back to the client."""


def _number(body: dict[str, Any], key: str, default: float, low: float, high: float) -> float:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadRequest(f"{key} must be a number")
    if not low <= value <= high:
        raise BadRequest(f"{key} must be between {low:g} and {high:g}, got {value}")
    return float(value)


def _integer(body: dict[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"{key} must be a whole number")
    if not low <= value <= high:
        raise BadRequest(f"{key} must be between {low} and {high}, got {value}")
    return value


def _run_after(body: dict[str, Any]) -> datetime.datetime | None:
    """`run_after` is either seconds from now or an ISO 8601 datetime with a timezone."""
    value = body.get("run_after")
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not 0 <= value <= 366 * 86400 or not math.isfinite(value):
            raise BadRequest("run_after in seconds must be between 0 and one year")
        return timezone.now() + datetime.timedelta(seconds=value)
    if isinstance(value, str):
        parsed = parse_datetime(value)
        if parsed is None or timezone.is_naive(parsed):
            raise BadRequest("run_after must be seconds from now or an ISO 8601 datetime with a timezone")
        return parsed
    raise BadRequest("run_after must be seconds from now or an ISO 8601 datetime with a timezone")


# Each kind: the task, and how to build its arguments (index in the burst, request body).
Arguments = tuple[tuple[Any, ...], dict[str, Any]]
KINDS: dict[str, tuple[Task[Any, Any], Callable[[int, dict[str, Any]], Arguments]]] = {
    "email": (
        tasks.send_welcome_email,
        lambda i, body: ((f"user{i}@example.com", f"User {i}"), {}),
    ),
    "report": (
        tasks.build_report,
        lambda i, body: ((), {"duration": _number(body, "duration", 1.0, 0, MAX_DURATION_S), "seed": i}),
    ),
    "flaky": (
        tasks.flaky,
        lambda i, body: ((), {"failure_rate": _number(body, "failure_rate", 0.3, 0, 1)}),
    ),
    "slow": (
        tasks.slow,
        lambda i, body: ((), {"duration": _number(body, "duration", 5.0, 0, MAX_DURATION_S)}),
    ),
    "bounded": (
        tasks.bounded,
        lambda i, body: ((), {"duration": _number(body, "duration", 5.0, 0, MAX_DURATION_S)}),
    ),
    "fails_first": (
        tasks.fails_first,
        lambda i, body: ((), {"failures": _integer(body, "failures", 2, 0, 10)}),
    ),
    "context": (
        tasks.with_context,
        lambda i, body: ((), {"label": f"burst-{i}"}),
    ),
    "noop": (tasks.noop, lambda i, body: ((), {})),
}


@dataclass(frozen=True)
class Burst:
    task: Task[Any, Any]
    calls: list[Arguments]


def parse_burst(body: object) -> Burst:
    """What to enqueue; BadRequest or InvalidTask (from Django) say what is wrong with the request."""
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    kind = body.get("task", "report")
    if kind not in KINDS:
        raise BadRequest(f"task must be one of {', '.join(KINDS)}")
    task, arguments = KINDS[kind]
    count = _integer(body, "count", 1, 1, MAX_BURST)
    queue = body.get("queue", task.queue_name)
    if not isinstance(queue, str):
        raise BadRequest("queue must be a string")
    configured = task.using(queue_name=queue, priority=_integer(body, "priority", 0, -100, 100))
    run_after = _run_after(body)
    if run_after is not None:
        configured = configured.using(run_after=run_after)
    return Burst(task=configured, calls=[arguments(i, body) for i in range(count)])


def enqueue_burst(burst: Burst) -> list[str]:
    """Enqueues the burst in one transaction (workers see all of it at once; one commit is much faster)."""
    with transaction.atomic():
        return [str(burst.task.enqueue(*args, **kwargs).id) for args, kwargs in burst.calls]
