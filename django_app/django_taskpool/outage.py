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
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Final

from django.db import DatabaseError, InterfaceError, OperationalError, connections

logger = logging.getLogger("django_taskpool")

DATABASE_GONE: Final = (OperationalError, InterfaceError)
FIRST_BACKOFF_S: Final = 0.5
MAX_BACKOFF_S: Final = 5.0


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


class Backoff:
    """Waits between attempts: FIRST_BACKOFF_S, doubling up to MAX_BACKOFF_S. `pause` is what waiting
    does (a sleep that also keeps the caller's heartbeat)."""

    def __init__(self, pause: Callable[[float], None]) -> None:
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
    committed."""
    backoff: Backoff | None = None
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
