"""`ReadyListener`: a worker process's LISTEN connection, which ends its idle sleep when a task becomes READY.

The `0004_ready_notify_trigger` migration notifies `taskpool_ready.<backend>` with the queue name whenever a
READY row is inserted or a row is made READY again. The worker waits on that instead of sleeping its whole
`--interval`; the interval stays the longest wait, so a missed notification, an absent trigger or a lost
connection cost at most what polling costs. A lost connection is reopened (and LISTEN issued again) at the
next wait, never more than once per interval.

LISTEN needs a session that stays on one server connection: behind a transaction-pooling PgBouncer the
notifications never arrive, so do not pass `--notify` there (polling is the only mode).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection
from typing import Any

import psycopg
from django.db import connections
from psycopg import sql

logger = logging.getLogger("django_taskpool")

CHANNEL_PREFIX = "taskpool_ready."


def channel(backend_name: str) -> str:
    """The channel the trigger notifies for a backend's READY rows (a contract with the migration)."""
    return CHANNEL_PREFIX + backend_name


class ReadyListener:
    """LISTENs for READY rows of one backend's queues (`*`: all but `excluded`) on its own connection."""

    def __init__(
        self, database_alias: str, backend_name: str, queues: Collection[str], excluded: Collection[str]
    ) -> None:
        self._alias = database_alias
        self._channel = channel(backend_name)
        self._queues = None if "*" in queues else frozenset(queues)
        self._excluded = frozenset(excluded)
        self._connection: psycopg.Connection[tuple[object, ...]] | None = None
        self._retry_at = 0.0

    def wait(self, timeout: float) -> bool:
        """Returns when a task of these queues became READY (True) or after `timeout` seconds (False).
        Notifications that arrived while the worker was busy end the wait at once: a task may be waiting."""
        deadline = time.monotonic() + timeout
        connection = self._connect()
        if connection is None:
            time.sleep(timeout)
            return False
        woken = False
        try:
            while not woken and (left := deadline - time.monotonic()) > 0:
                # Exhausted, never left early: the generator holds the connection's lock until it ends.
                for notify in connection.notifies(timeout=left, stop_after=1):
                    woken = woken or self.wants(notify.payload)
            if woken:
                self._drain(connection)
        except psycopg.Error as exc:
            logger.warning("lost the LISTEN connection (%s): polling until it is back", _first_line(exc))
            self.close()
            self._retry_at = deadline
            time.sleep(max(0.0, deadline - time.monotonic()))
        return woken

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def wants(self, queue: str) -> bool:
        """Whether a READY row of this queue is one this worker would claim."""
        return queue not in self._excluded and (self._queues is None or queue in self._queues)

    def _drain(self, connection: psycopg.Connection[tuple[object, ...]]) -> None:
        """Consumes notifications already received, so the next idle wait starts clean (psycopg's
        `timeout=0` means no timeout: a millisecond is the shortest wait)."""
        for _ in connection.notifies(timeout=0.001):
            pass

    def _connect(self) -> psycopg.Connection[tuple[object, ...]] | None:
        if self._connection is not None and not self._connection.closed:
            return self._connection
        if time.monotonic() < self._retry_at:
            return None
        wrapper = connections[self._alias]
        try:
            connection: psycopg.Connection[tuple[object, ...]] = psycopg.connect(
                **_psycopg_params(wrapper.get_connection_params()), autocommit=True
            )
            connection.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
        except psycopg.Error as exc:
            logger.warning("cannot LISTEN for ready tasks (%s): polling meanwhile", _first_line(exc))
            self._retry_at = time.monotonic() + 30.0
            return None
        self._connection = connection
        return connection


def _psycopg_params(params: dict[str, Any]) -> dict[str, Any]:
    """Django's connection parameters without the ones only Django's own connection uses."""
    return {key: value for key, value in params.items() if key not in {"cursor_factory", "context"}}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
