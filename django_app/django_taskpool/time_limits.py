"""Per-task time limits: where they come from, and the soft limit's alarm inside a worker process.

A task's limits, per limit (hard `time_limit`, soft `soft_time_limit`, in seconds), come from the first of:
1. the task itself: `@task(time_limit=30, soft_time_limit=25)` with `django_taskpool.backend.DatabaseBackend`;
2. the setting `TASKPOOL_TIME_LIMITS = {"<task module path>": {"time_limit": 30, "soft_time_limit": 25}}`;
3. the worker's flag `--time-limit` (hard only: the pool's default, `spec.worker.timeLimit`).
No limit from any of them: the task runs exactly as under django-tasks-db's own worker.

The hard limit is enforced by the supervisor (it kills the process; a task stuck in C code or a blocking call
cannot ignore that). The soft limit is a SIGALRM timer in the worker process: its handler raises
`SoftTimeLimitExceeded` only while the task's function is on the main thread's stack, so an alarm that lands
after the task returned (while its result is being stored) is ignored and the timer is disarmed right after.
With `--threads` (signals reach only the main thread) a timer thread raises the exception asynchronously in
the task's thread instead, with the same check of the task's stack; it lands at the task's next Python
instruction, so a task blocked inside one long C call (a `sleep`, a socket read) sees it when that returns.
"""

from __future__ import annotations

import ctypes
import math
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import CodeType, FrameType
from typing import Protocol

from django.conf import settings
from django.tasks import Task

from django_taskpool.exceptions import SoftTimeLimitExceeded

SETTING = "TASKPOOL_TIME_LIMITS"
LIMIT_NAMES = ("time_limit", "soft_time_limit")
# The frame that runs a task's function: django-tasks-db's worker calls `Task.call`, and a task class that
# overrides `call` still reaches it through `super()`.
_TASK_CALL_CODE: CodeType = Task.call.__code__


@dataclass(frozen=True)
class TimeLimits:
    hard: float | None = None
    soft: float | None = None


def check_limits(time_limit: object, soft_time_limit: object) -> None:
    """ValueError unless each is None or positive finite seconds, and the soft limit is below the hard one."""
    for name, value in zip(LIMIT_NAMES, (time_limit, soft_time_limit), strict=True):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
            raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
    if (
        isinstance(time_limit, int | float)
        and isinstance(soft_time_limit, int | float)
        and soft_time_limit >= time_limit
    ):
        raise ValueError(
            f"soft_time_limit ({soft_time_limit:g}s) must be below time_limit ({time_limit:g}s): "
            "the hard limit kills the process before a later soft limit could fire"
        )


def configured_limits() -> dict[str, TimeLimits]:
    """The `TASKPOOL_TIME_LIMITS` setting, checked; ValueError naming the bad entry."""
    raw = getattr(settings, SETTING, {})
    if not isinstance(raw, Mapping):
        raise ValueError(  # noqa: TRY004 - a bad setting, reported like every other bad entry
            f"{SETTING} must map task paths to {{'time_limit': s, 'soft_time_limit': s}}"
        )
    limits = {}
    for path, entry in raw.items():
        if not isinstance(path, str) or not isinstance(entry, Mapping) or set(entry) - set(LIMIT_NAMES):
            raise ValueError(
                f"{SETTING}[{path!r}] must be a mapping with the keys time_limit and/or soft_time_limit"
            )
        try:
            check_limits(entry.get("time_limit"), entry.get("soft_time_limit"))
        except ValueError as exc:
            raise ValueError(f"{SETTING}[{path!r}]: {exc}") from None
        limits[path] = TimeLimits(hard=entry.get("time_limit"), soft=entry.get("soft_time_limit"))
    return limits


def resolve(task: object, configured: TimeLimits | None, default_hard: float | None) -> TimeLimits:
    """A task's limits: its own attributes (None when unset or not a taskpool task), then the setting's
    entry for its path, then the worker's default hard limit."""
    own_hard = getattr(task, "time_limit", None)
    own_soft = getattr(task, "soft_time_limit", None)
    hard = own_hard if own_hard is not None else (configured.hard if configured else None)
    soft = own_soft if own_soft is not None else (configured.soft if configured else None)
    return TimeLimits(hard=hard if hard is not None else default_hard, soft=soft)


class SoftTimeLimitAlarm:
    """The soft limit of the task the process is running: armed when it starts, disarmed when it ends."""

    def __init__(self, on_fire: Callable[[], None]) -> None:
        self._on_fire = on_fire
        self._seconds = 0.0
        signal.signal(signal.SIGALRM, self._on_alarm)

    def arm(self, seconds: float) -> None:
        self._seconds = seconds
        signal.setitimer(signal.ITIMER_REAL, seconds)

    def disarm(self) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)

    def _on_alarm(self, signum: int, frame: FrameType | None) -> None:
        while frame is not None:
            if frame.f_code is _TASK_CALL_CODE:
                self._on_fire()
                raise SoftTimeLimitExceeded(f"the task ran past its soft time limit of {self._seconds:g}s")
            frame = frame.f_back


class SoftLimit(Protocol):
    def arm(self, seconds: float) -> None: ...
    def disarm(self) -> None: ...


def raise_in_thread(thread_id: int, exception: type[BaseException]) -> bool:
    """Raises `exception` in another thread at its next Python instruction; whether the thread exists."""
    return bool(
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(exception))
    )


def runs_task(thread_id: int) -> bool:
    """Whether a task's function is on the stack of thread `thread_id` now."""
    frame: FrameType | None = sys._current_frames().get(thread_id)
    while frame is not None:
        if frame.f_code is _TASK_CALL_CODE:
            return True
        frame = frame.f_back
    return False


class ThreadSoftTimeLimit:
    """The soft limit of the task one worker thread is running (`--threads`): a timer thread that raises
    `SoftTimeLimitExceeded` in it, only while the task's function is on its stack."""

    def __init__(self, on_fire: Callable[[], None]) -> None:
        self._on_fire = on_fire
        self._lock = threading.Lock()  # arm/disarm and firing never interleave
        self._timer: threading.Timer | None = None

    def arm(self, seconds: float) -> None:
        thread_id = threading.get_ident()
        with self._lock:
            self._timer = threading.Timer(seconds, self._fire, args=(thread_id,))
            self._timer.daemon = True
            self._timer.start()

    def disarm(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    def _fire(self, thread_id: int) -> None:
        with self._lock:
            if self._timer is None or not runs_task(thread_id):
                return
            self._timer = None
            self._on_fire()
            raise_in_thread(thread_id, SoftTimeLimitExceeded)
