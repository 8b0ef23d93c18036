"""Waiting out a database outage inside a worker loop, instead of exiting.

A worker process that loses the database keeps what only it knows: the result of the task it just ran
(stored once the database answers again, `store_until_done`), and its place in the pool (its claim loop
waits for the database, `wait_until_reachable`). Both retry with a doubling backoff capped at
`MAX_BACKOFF_S`, so a restarted server sees every worker back within a few seconds, and log one line when
the outage starts and one when it ends: the first line of the driver's message, which names the server but
never its password.

"Gone" is Django's `OperationalError` (server unreachable, connection cut, statement cancelled) and
`InterfaceError` (a connection the driver already closed). Any other error (a constraint, a value the
database refuses) is not an outage: it is raised at once.

A process that starts while the database is gone waits the same way (`wait_at_start`), so a pod does not
crash-loop into Kubernetes' growing restart delays through an outage. Except for what waiting cannot fix,
which `needs_a_human` tells apart: a refused login (wrong password or user, no pg_hba.conf entry, no
password given, a role that may not log in), a database that does not exist, no CONNECT privilege. Those are
also `OperationalError`s; libpq gives no SQLSTATE for a failed connection, so they are recognised by
PostgreSQL's (English) messages. A server whose `lc_messages` is another language gets them waited out
like an outage (and logged as one).

A stop (the shutdown cut-off's SystemExit) that lands while a result waits for the database abandons the
write: `WriteAbandoned`, which the worker logs and exits with, leaving the row as it is (RUNNING).
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Callable
from typing import Final

from django.db import DatabaseError, InterfaceError, OperationalError, connections

logger = logging.getLogger("django_taskpool")

DATABASE_GONE: Final = (OperationalError, InterfaceError)
FIRST_BACKOFF_S: Final = 0.5
MAX_BACKOFF_S: Final = 5.0
# Connection failures that no wait fixes (PostgreSQL's and libpq's wording).
NEEDS_A_HUMAN: Final = re.compile(
    r"authentication failed|no pg_hba\.conf entry|no password supplied|is not permitted to log in"
    r'|(role|database) ".*" does not exist|permission denied for database'
)


class WriteAbandoned(SystemExit):
    """The process was told to exit while a write waited for the database: the write did not happen.
    A SystemExit (the code the stop asked for), so nothing on the way out stores anything instead."""

    def __init__(self, code: int | str | None, waited_s: float) -> None:
        super().__init__(code)
        self.waited_s = waited_s


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def needs_a_human(exc: BaseException) -> bool:
    """True for a connection failure that waiting does not fix (credentials, a missing database)."""
    return isinstance(exc, DATABASE_GONE) and NEEDS_A_HUMAN.search(str(exc)) is not None


class Backoff:
    """Waits between attempts: FIRST_BACKOFF_S, doubling up to MAX_BACKOFF_S. `pause` is what waiting
    does (a sleep that also keeps the caller's heartbeat)."""

    def __init__(self, pause: Callable[[float], object]) -> None:
        self._pause = pause
        self._next_s = FIRST_BACKOFF_S
        self.started = time.monotonic()

    def wait(self) -> None:
        self._pause(self._next_s)
        self._next_s = min(self._next_s * 2, MAX_BACKOFF_S)

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started


def drop_connection(alias: str) -> None:
    """Closes this thread's connection, broken or not, so that the next query opens a new one."""
    with contextlib.suppress(DatabaseError):
        connections[alias].close()


def store_until_done(
    write: Callable[[], None], alias: str, what: str, pause: Callable[[float], None]
) -> None:
    """Calls `write` until it succeeds, waiting out database outages; `what` names the write in the log.
    `write` must be safe to repeat (an UPDATE by primary key): a write whose reply was lost may have
    committed. A SystemExit during the wait becomes `WriteAbandoned`."""
    backoff: Backoff | None = None
    try:
        while True:
            try:
                write()
            except DATABASE_GONE as exc:
                drop_connection(alias)
                if backoff is None:
                    backoff = Backoff(pause)
                    logger.warning(
                        "database unavailable, keeping %s until it is back (retrying every %.1f-%.0fs): %s",
                        what,
                        FIRST_BACKOFF_S,
                        MAX_BACKOFF_S,
                        first_line(exc),
                    )
                else:
                    logger.debug("database still unavailable for %s: %s", what, first_line(exc))
                backoff.wait()
                continue
            if backoff is not None:
                logger.warning("database back after %.1fs: stored %s", backoff.elapsed_s, what)
            return
    except SystemExit as stop:
        if backoff is None:
            raise  # stopped in the middle of a write the database was answering: upstream's case
        raise WriteAbandoned(stop.code, backoff.elapsed_s) from None


def wait_until_reachable(
    alias: str, cause: BaseException, pause: Callable[[float], None], keep_waiting: Callable[[], bool]
) -> bool:
    """After `cause` (the database went away), waits until `SELECT 1` answers: True; False as soon as
    `keep_waiting()` is False (the worker is stopping: there is nothing left to claim)."""
    drop_connection(alias)
    backoff = Backoff(pause)
    logger.warning(
        "database unavailable, waiting for it before claiming again (retrying every %.1f-%.0fs): %s",
        FIRST_BACKOFF_S,
        MAX_BACKOFF_S,
        first_line(cause),
    )
    while keep_waiting():
        backoff.wait()
        try:
            with connections[alias].cursor() as cursor:
                cursor.execute("SELECT 1")
        except DATABASE_GONE as exc:
            drop_connection(alias)
            logger.debug("database still unavailable: %s", first_line(exc))
            continue
        logger.warning("database back after %.1fs: claiming again", backoff.elapsed_s)
        return True
    return False


def wait_at_start(
    check: Callable[[], None], pause: Callable[[float], object], keep_waiting: Callable[[], bool]
) -> bool:
    """Calls `check` (the start-up's first use of the database) until it gets through an outage: True;
    False as soon as `keep_waiting()` is False (stopped before starting). Other errors propagate, so do
    outages that `needs_a_human`. `check` closes its connection itself."""
    backoff: Backoff | None = None
    while True:
        try:
            check()
        except DATABASE_GONE as exc:
            if needs_a_human(exc):
                raise
            if backoff is None:
                backoff = Backoff(pause)
                logger.warning(
                    "database unavailable, waiting for it before starting (retrying every %.1f-%.0fs): %s",
                    FIRST_BACKOFF_S,
                    MAX_BACKOFF_S,
                    first_line(exc),
                )
            else:
                logger.debug("database still unavailable: %s", first_line(exc))
            if not keep_waiting():
                return False
            backoff.wait()
            if not keep_waiting():
                return False
            continue
        if backoff is not None:
            logger.warning("database back after %.1fs: starting", backoff.elapsed_s)
        return True
