"""Per-task retry policies: where they come from, and when (and after how long) a failed attempt runs again.

A task's policy, per option, comes from the first of:
1. the task itself: `@task(max_attempts=5, retry_on=(ConnectionError,), retry_backoff=2)` with
   `django_taskpool.backend.DatabaseBackend`;
2. the setting `TASKPOOL_RETRIES = {"<task path>": {"max_attempts": 5, "retry_on": ["builtins.OSError"]}}`
   (exception classes by dotted path);
3. the defaults below: one attempt, so a task that sets nothing behaves exactly as under django-tasks-db.

Options: `max_attempts` (attempts in all, the first included), `retry_on` (exception classes that retry;
default any `Exception`), `retry_backoff` (seconds before the second attempt; each later wait doubles),
`retry_backoff_max` (the cap), `retry_interrupted` (whether a task stopped from outside retries too: over
its hard or soft time limit, its worker process lost, or cut off at the shutdown timeout; default no, since
such a task may have run partly and may stop the same way again).

A retry is the same row going back to READY with `run_after` = now + backoff, written in the same UPDATE as
the attempt's error; the next claim appends a worker id, so `TaskResult.attempts` (`len(worker_ids)`) and
`TaskContext.attempt` count up. Backoff before attempt n+1: `min(cap, retry_backoff * 2**(n-1))`, drawn
uniformly from its upper half (jitter that spreads a burst of failures but never shortens the wait below
half its nominal value).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string

from django_taskpool.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded, WorkerLost

SETTING = "TASKPOOL_RETRIES"
OPTION_NAMES = ("max_attempts", "retry_on", "retry_backoff", "retry_backoff_max", "retry_interrupted")
MAX_ATTEMPTS_LIMIT = 100
# Stopped from outside rather than failed by its own code: retried only with `retry_interrupted`.
# (SystemExit is what django-tasks-db stores for a task cut off at the shutdown timeout.)
INTERRUPTIONS: tuple[type[BaseException], ...] = (
    TimeLimitExceeded,
    SoftTimeLimitExceeded,
    WorkerLost,
    SystemExit,
    KeyboardInterrupt,
)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 1
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    retry_backoff: float = 1.0
    retry_backoff_max: float = 600.0
    retry_interrupted: bool = False

    @property
    def retries(self) -> bool:
        return self.max_attempts > 1

    def retries_on(self, exception: type[BaseException]) -> bool:
        """Whether a failure with this exception class may retry (attempts left or not)."""
        if issubclass(exception, INTERRUPTIONS):
            return self.retry_interrupted
        return issubclass(exception, self.retry_on)

    def delay_after(self, attempts: int, exception: type[BaseException], draw: float) -> float | None:
        """Seconds until the next attempt after `attempts` attempts failed with `exception`, or None when the
        task is done (not retryable, or no attempts left). `draw` in [0, 1) picks the jitter."""
        if attempts >= self.max_attempts or not self.retries_on(exception):
            return None
        nominal = min(self.retry_backoff_max, self.retry_backoff * 2.0 ** max(0, attempts - 1))
        return nominal * (0.5 + draw / 2)


def jitter_draw() -> float:
    return random.random()  # noqa: S311 - spreading retries, not cryptography


def check_options(options: Mapping[str, object]) -> None:
    """ValueError naming the first bad option (`retry_on` must already be exception classes)."""
    unknown = set(options) - set(OPTION_NAMES)
    if unknown:
        raise ValueError(f"unknown retry option(s) {', '.join(sorted(unknown))}")
    attempts = options.get("max_attempts")
    if attempts is not None and (
        isinstance(attempts, bool) or not isinstance(attempts, int) or not 1 <= attempts <= MAX_ATTEMPTS_LIMIT
    ):
        raise ValueError(
            f"max_attempts must be a whole number from 1 to {MAX_ATTEMPTS_LIMIT}, got {attempts!r}"
        )
    for name in ("retry_backoff", "retry_backoff_max"):
        value = options.get(name)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < math.inf
        ):
            raise ValueError(f"{name} must be a number of seconds (0 or more), got {value!r}")
    retry_on = options.get("retry_on")
    if retry_on is not None and (
        not isinstance(retry_on, tuple)
        or not retry_on
        or not all(isinstance(cls, type) and issubclass(cls, BaseException) for cls in retry_on)
    ):
        raise ValueError(f"retry_on must be a non-empty tuple of exception classes, got {retry_on!r}")
    interrupted = options.get("retry_interrupted")
    if interrupted is not None and not isinstance(interrupted, bool):
        raise ValueError(f"retry_interrupted must be True or False, got {interrupted!r}")


def configured_policies() -> dict[str, dict[str, object]]:
    """The `TASKPOOL_RETRIES` setting, checked, with `retry_on` imported; ValueError naming the bad entry."""
    raw = getattr(settings, SETTING, {})
    if not isinstance(raw, Mapping):
        raise ValueError(f"{SETTING} must map task paths to mappings of {', '.join(OPTION_NAMES)}")  # noqa: TRY004
    policies: dict[str, dict[str, object]] = {}
    for path, entry in raw.items():
        if not isinstance(path, str) or not isinstance(entry, Mapping):
            raise ValueError(  # noqa: TRY004 - a bad setting, reported like every other bad entry
                f"{SETTING}[{path!r}] must be a mapping of {', '.join(OPTION_NAMES)}"
            )
        options = dict(entry)
        try:
            if "retry_on" in options:
                options["retry_on"] = _import_exceptions(options["retry_on"])
            check_options(options)
        except ValueError as exc:
            raise ValueError(f"{SETTING}[{path!r}]: {exc}") from None
        policies[path] = options
    return policies


def _import_exceptions(paths: object) -> tuple[type[BaseException], ...]:
    if isinstance(paths, str) or not isinstance(paths, list | tuple):
        raise ValueError(f"retry_on must be a list of exception class paths, got {paths!r}")  # noqa: TRY004
    classes = []
    for path in paths:
        try:
            classes.append(import_string(path))
        except (ImportError, TypeError):
            raise ValueError(f"retry_on: cannot import {path!r}") from None
    return tuple(classes)


def resolve(task: object, configured: Mapping[str, object] | None) -> RetryPolicy:
    """A task's policy: its own options (None when unset or not a taskpool task), then the setting's entry
    for its path, then the defaults."""
    chosen: dict[str, Any] = {}  # checked by check_options (task options) or configured_policies
    for name in OPTION_NAMES:
        value = getattr(task, name, None)
        if value is None and configured is not None:
            value = configured.get(name)
        if value is not None:
            chosen[name] = value
    return RetryPolicy(**chosen)


class Policies:
    """Retry policies by task path, resolved once per path (the task is imported for its own options)."""

    def __init__(self) -> None:
        self._configured = configured_policies()
        self._by_path: dict[str, RetryPolicy] = {}

    def of(self, task_path: str) -> RetryPolicy:
        policy = self._by_path.get(task_path)
        if policy is None:
            try:
                task = import_string(task_path)
            except ImportError:
                task = None  # the task's run fails with the import error; no options of its own
            policy = self._by_path[task_path] = resolve(task, self._configured.get(task_path))
        return policy
