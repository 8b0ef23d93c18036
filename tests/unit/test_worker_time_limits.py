"""Time limits: their checks, which source wins, and the soft limit's alarm (no database, no settings)."""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.tasks import Task

from django_taskpool.exceptions import SoftTimeLimitExceeded
from django_taskpool.heartbeat import Heartbeat
from django_taskpool.time_limits import SoftTimeLimitAlarm, TimeLimits, check_limits, resolve

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("hard", "soft"), [(None, None), (30, None), (None, 5), (30, 25.5), (0.5, 0.25)])
def test_valid_limits(hard: object, soft: object) -> None:
    check_limits(hard, soft)


@pytest.mark.parametrize(
    ("hard", "soft", "message"),
    [
        (0, None, "time_limit must be a positive number"),
        (-1, None, "time_limit must be a positive number"),
        (math.inf, None, "time_limit must be a positive number"),
        (math.nan, None, "time_limit must be a positive number"),
        ("30", None, "time_limit must be a positive number"),
        (True, None, "time_limit must be a positive number"),
        (None, 0, "soft_time_limit must be a positive number"),
        (30, 30, "must be below time_limit"),
        (10, 25, "must be below time_limit"),
    ],
)
def test_invalid_limits_say_what_is_wrong(hard: object, soft: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_limits(hard, soft)


def test_the_task_wins_then_the_setting_then_the_worker_flag() -> None:
    declared = SimpleNamespace(time_limit=30, soft_time_limit=None)
    plain = SimpleNamespace()  # a django.tasks Task of another backend: no limit attributes
    setting = TimeLimits(hard=60, soft=50)
    assert resolve(declared, setting, 120) == TimeLimits(hard=30, soft=50)
    assert resolve(plain, setting, 120) == TimeLimits(hard=60, soft=50)
    assert resolve(plain, TimeLimits(soft=5), 120) == TimeLimits(hard=120, soft=5)
    assert resolve(plain, None, 120) == TimeLimits(hard=120)
    assert resolve(None, None, None) == TimeLimits()


@pytest.fixture
def alarm() -> Iterator[tuple[SoftTimeLimitAlarm, list[str]]]:
    fired: list[str] = []
    previous = signal.getsignal(signal.SIGALRM)
    yield SoftTimeLimitAlarm(lambda: fired.append("fired")), fired
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)


def run_as_task(function: object) -> object:
    """Runs `function` through django.tasks' `Task.call`, as django-tasks-db's worker does."""
    return Task.call(SimpleNamespace(func=function))  # type: ignore[arg-type]


def test_soft_limit_is_raised_inside_the_task(alarm: tuple[SoftTimeLimitAlarm, list[str]]) -> None:
    soft, fired = alarm
    soft.arm(0.05)
    with pytest.raises(SoftTimeLimitExceeded, match=r"soft time limit of 0\.05s"):
        run_as_task(lambda: time.sleep(30))
    assert fired == ["fired"]


def test_a_task_can_catch_the_soft_limit_and_return(alarm: tuple[SoftTimeLimitAlarm, list[str]]) -> None:
    soft, _ = alarm

    def cleans_up() -> str:
        try:
            time.sleep(30)
        except SoftTimeLimitExceeded:
            return "cleaned up"
        return "finished"

    soft.arm(0.05)
    assert run_as_task(cleans_up) == "cleaned up"


def test_an_alarm_after_the_task_returned_is_ignored(alarm: tuple[SoftTimeLimitAlarm, list[str]]) -> None:
    soft, fired = alarm
    soft.arm(0.05)
    assert run_as_task(lambda: "done") == "done"
    time.sleep(0.2)  # the alarm goes off here, while the worker would be storing the result
    assert fired == []


def test_heartbeat_carries_the_hard_deadline(tmp_path: Path) -> None:
    supervisor_side = Heartbeat(tmp_path / "process-0")
    supervisor_side.reset(100.0)
    child_side = Heartbeat(tmp_path / "process-0")
    child_side.busy(106.0, 5000.0)
    assert supervisor_side.read().deadline == 5000.0
    child_side.idle()
    assert supervisor_side.read().deadline == 0.0
    child_side.busy(107.0)  # a task without a hard limit
    assert (supervisor_side.read().busy, supervisor_side.read().deadline) == (True, 0.0)
    child_side.close()
    supervisor_side.close()
