"""Retry policies: their checks, which source wins, when a failure retries and after how long (pure)."""

from __future__ import annotations

import math
import threading
import time
from types import SimpleNamespace

import pytest
from django.tasks import Task
from hypothesis import given
from hypothesis import strategies as st

from django_taskpool.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded, WorkerLost
from django_taskpool.retries import RetryPolicy, check_options, resolve
from django_taskpool.time_limits import ThreadSoftTimeLimit

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_attempts": 0}, "max_attempts must be a whole number from 1 to 100"),
        ({"max_attempts": 101}, "max_attempts must be a whole number"),
        ({"max_attempts": 2.5}, "max_attempts must be a whole number"),
        ({"max_attempts": True}, "max_attempts must be a whole number"),
        ({"retry_backoff": -1}, "retry_backoff must be a number of seconds"),
        ({"retry_backoff_max": math.inf}, "retry_backoff_max must be a number of seconds"),
        ({"retry_on": ValueError}, "retry_on must be a non-empty tuple of exception classes"),
        ({"retry_on": ()}, "retry_on must be a non-empty tuple"),
        ({"retry_on": (ValueError, "builtins.OSError")}, "retry_on must be a non-empty tuple"),
        ({"retry_interrupted": "yes"}, "retry_interrupted must be True or False"),
        ({"retries": 3}, "unknown retry option(s) retries"),
    ],
)
def test_bad_options_are_refused_with_their_name(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_options(options)


def test_valid_options_pass() -> None:
    check_options({"max_attempts": 5, "retry_on": (OSError,), "retry_backoff": 0, "retry_interrupted": True})
    check_options({name: None for name in ("max_attempts", "retry_on", "retry_backoff")})


def test_the_task_wins_over_the_setting_then_the_defaults() -> None:
    task = SimpleNamespace(max_attempts=5, retry_on=None, retry_backoff=None)
    policy = resolve(task, {"max_attempts": 2, "retry_backoff": 7, "retry_on": (OSError,)})
    assert policy == RetryPolicy(max_attempts=5, retry_on=(OSError,), retry_backoff=7)
    assert resolve(None, None) == RetryPolicy()  # not a taskpool task, no setting: one attempt
    assert not RetryPolicy().retries


def test_which_failures_retry() -> None:
    policy = RetryPolicy(max_attempts=3, retry_on=(OSError,))
    assert policy.retries_on(ConnectionError)  # a subclass
    assert not policy.retries_on(ValueError)
    for interruption in (TimeLimitExceeded, SoftTimeLimitExceeded, WorkerLost, SystemExit):
        assert not RetryPolicy(max_attempts=3).retries_on(interruption)
        assert RetryPolicy(max_attempts=3, retry_interrupted=True).retries_on(interruption)


def test_no_retry_past_the_last_attempt_or_for_other_errors() -> None:
    policy = RetryPolicy(max_attempts=3)
    assert policy.delay_after(2, ValueError, 0.0) is not None
    assert policy.delay_after(3, ValueError, 0.0) is None
    assert policy.delay_after(1, KeyboardInterrupt, 0.0) is None


@given(
    base=st.floats(min_value=0, max_value=3600),
    cap=st.floats(min_value=0, max_value=86400),
    attempts=st.integers(min_value=1, max_value=99),
    draw=st.floats(min_value=0, max_value=1, exclude_max=True),
)
def test_backoff_doubles_within_its_cap_and_jitters_in_the_upper_half(
    base: float, cap: float, attempts: int, draw: float
) -> None:
    policy = RetryPolicy(max_attempts=100, retry_backoff=base, retry_backoff_max=cap)
    delay = policy.delay_after(attempts, ValueError, draw)
    assert delay is not None
    nominal = min(cap, base * 2.0 ** (attempts - 1))
    assert nominal / 2 <= delay <= nominal


def test_the_threaded_soft_limit_fires_only_inside_a_task() -> None:
    """Outside a task's function (here: a plain sleep loop) the timer fires but raises nothing."""
    fired: list[bool] = []
    limit = ThreadSoftTimeLimit(lambda: fired.append(True))
    done = threading.Event()

    def outside_a_task() -> None:
        limit.arm(0.05)
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            time.sleep(0.01)
        limit.disarm()
        done.set()

    worker = threading.Thread(target=outside_a_task)
    worker.start()
    worker.join()
    assert done.is_set()
    assert fired == []


def test_the_threaded_soft_limit_is_raised_inside_a_task_in_its_thread() -> None:
    fired: list[bool] = []
    limit = ThreadSoftTimeLimit(lambda: fired.append(True))
    outcome: list[str] = []

    def task_body() -> None:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # Python instructions: the exception lands at once
            time.sleep(0.01)

    def worker() -> None:
        limit.arm(0.05)
        try:
            Task.call(SimpleNamespace(func=task_body))  # type: ignore[arg-type]
        except SoftTimeLimitExceeded:
            outcome.append("raised")
        finally:
            limit.disarm()

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert outcome == ["raised"]
    assert fired == [True]
