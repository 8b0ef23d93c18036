"""Which database errors a start-up waits out, and how it waits (django_taskpool.outage; plain data, no
database: the real server's messages are in tests/integration/test_worker_database_at_start.py)."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, IntegrityError, OperationalError

from django_taskpool.outage import FIRST_BACKOFF_S, MAX_BACKOFF_S, needs_a_human, wait_at_start

pytestmark = pytest.mark.unit

SOCKET = 'connection failed: connection to server on socket "/run/pg/.s.PGSQL.5432" failed: '


@pytest.mark.parametrize(
    "message",
    [
        'FATAL:  password authentication failed for user "shop"',
        'FATAL:  Peer authentication failed for user "shop"',
        'FATAL:  no pg_hba.conf entry for host "10.0.0.7", user "shop", database "shop", no encryption',
        "fe_sendauth: no password supplied",
        'FATAL:  role "shop" is not permitted to log in',
        'FATAL:  role "shop" does not exist',
        'FATAL:  database "shop" does not exist',
        'FATAL:  permission denied for database "shop"',
    ],
)
def test_what_a_human_must_fix_is_not_waited_out(message: str) -> None:
    assert needs_a_human(OperationalError(SOCKET + message))


@pytest.mark.parametrize(
    "error",
    [
        OperationalError(SOCKET + "No such file or directory\n\tIs the server running locally?"),
        OperationalError('connection failed: connection to server at "10.0.0.5", port 5432 failed: refused'),
        OperationalError('connection failed: could not translate host name "db" to address: Name unknown'),
        OperationalError(SOCKET + "FATAL:  the database system is starting up"),
        OperationalError(SOCKET + "FATAL:  sorry, too many clients already"),
        OperationalError(SOCKET + 'FATAL:  database "shop" is not currently accepting connections'),
        OperationalError("terminating connection due to administrator command"),
        OperationalError("consuming input failed: server closed the connection unexpectedly"),
    ],
)
def test_an_outage_is_waited_out(error: DatabaseError) -> None:
    assert not needs_a_human(error)


def test_a_database_error_that_is_no_outage_is_not_one_to_classify() -> None:
    # Not an outage at all: `wait_at_start` lets it through without asking.
    assert not needs_a_human(IntegrityError('role "x" does not exist'))


class Script:
    """A start-up check failing with `errors` in turn, then passing; the pauses it was given."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.pauses: list[float] = []
        self.calls = 0

    def check(self) -> None:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)

    def pause(self, seconds: float) -> None:
        self.pauses.append(seconds)


def test_start_waits_with_a_doubling_backoff_until_the_check_passes() -> None:
    script = Script(*(OperationalError("refused") for _ in range(6)))
    assert wait_at_start(script.check, script.pause, lambda: True)
    assert script.calls == 7
    assert script.pauses == [FIRST_BACKOFF_S, 1.0, 2.0, 4.0, MAX_BACKOFF_S, MAX_BACKOFF_S]


def test_start_that_gets_through_at_once_does_not_pause() -> None:
    script = Script()
    assert wait_at_start(script.check, script.pause, lambda: True)
    assert (script.calls, script.pauses) == (1, [])


def test_a_stop_while_waiting_ends_the_wait_without_checking_again() -> None:
    script = Script(*(OperationalError("refused") for _ in range(5)))
    stops = iter([True, False])  # asked before and after each pause: stopped during the first pause
    assert not wait_at_start(script.check, script.pause, lambda: next(stops))
    assert (script.calls, script.pauses) == (1, [FIRST_BACKOFF_S])


@pytest.mark.parametrize(
    "error",
    [
        OperationalError(SOCKET + 'FATAL:  password authentication failed for user "shop"'),
        IntegrityError("not an outage"),
        ValueError("not a database error"),
    ],
)
def test_an_error_waiting_cannot_fix_ends_the_start_at_once(error: Exception) -> None:
    script = Script(error)
    with pytest.raises(type(error)):
        wait_at_start(script.check, script.pause, lambda: True)
    assert (script.calls, script.pauses) == (1, [])
