"""The demo's tasks: one per kind of work a real project hands to background workers."""

from __future__ import annotations

import hashlib
import random
import time
from typing import Any

from django.core.mail import send_mail
from django.tasks import TaskContext, task

from django_taskpool.exceptions import SoftTimeLimitExceeded


class FlakyTaskError(RuntimeError):
    """Raised on purpose by `flaky` so failures show up in results, logs and metrics."""


@task(queue_name="emails")
def send_welcome_email(recipient: str, name: str) -> int:
    """Sends through the configured email backend (console or locmem in the demo)."""
    return send_mail(
        subject=f"Welcome, {name}",
        message=f"Hello {name}, your account is ready.",
        from_email=None,
        recipient_list=[recipient],
    )


@task(queue_name="reports")
def build_report(duration: float, seed: int = 0) -> dict[str, Any]:
    """Burns CPU for `duration` seconds building a digest over generated rows, like a real report would."""
    deadline = time.monotonic() + duration
    digest = hashlib.sha256(str(seed).encode())
    rows = 0
    total = 0
    while True:
        for _ in range(1000):
            row = f"{seed}:{rows}".encode()
            digest.update(row)
            total += row[-1]
            rows += 1
        if time.monotonic() >= deadline:
            break
    return {"rows": rows, "checksum": total, "digest": digest.hexdigest()}


@task()
def flaky(failure_rate: float = 0.3) -> str:
    """Fails with `FlakyTaskError` for a share `failure_rate` of runs."""
    if random.random() < failure_rate:  # noqa: S311 - not cryptographic, just a coin
        raise FlakyTaskError(f"failed on purpose (failure rate {failure_rate:.0%})")
    return "ok"


@task()
def slow(duration: float) -> float:
    """Waits `duration` seconds without using the CPU (an I/O-bound task: an API call, an upload)."""
    time.sleep(duration)
    return duration


@task(time_limit=10, soft_time_limit=1)
def bounded(duration: float) -> dict[str, Any]:
    """Waits up to `duration` seconds, but stops and cleans up at its soft time limit (1 s; hard: 10 s)."""
    started = time.monotonic()
    try:
        time.sleep(duration)
    except SoftTimeLimitExceeded:
        return {"stopped_early": True, "after_s": round(time.monotonic() - started, 3)}
    return {"stopped_early": False, "after_s": round(time.monotonic() - started, 3)}


class NotYetError(RuntimeError):
    """Raised by `fails_first` on its first attempts."""


@task(takes_context=True, max_attempts=3, retry_backoff=1.0, retry_on=(NotYetError,))
def fails_first(context: TaskContext, failures: int = 2) -> dict[str, Any]:
    """Fails its first `failures` attempts (a webhook that is down for a while), then succeeds; it retries
    up to 3 attempts in all, 1 s then 2 s apart (with jitter: at least half of that)."""
    if context.attempt <= failures:
        raise NotYetError(f"attempt {context.attempt} of the first {failures} fails on purpose")
    return {"attempt": context.attempt, "worker_ids": list(context.task_result.worker_ids)}


@task(takes_context=True)
def with_context(context: TaskContext, label: str) -> dict[str, Any]:
    """Reports what the worker knows about its own run."""
    result = context.task_result
    return {
        "label": label,
        "task_id": str(result.id),
        "attempt": context.attempt,
        "worker_ids": list(result.worker_ids),
    }


@task()
def noop() -> None:
    """Does nothing: measures the worker's own overhead."""
