"""`ReadyListener`: one database's LISTEN connection, for the pools that opted into wake-up on NOTIFY.

It LISTENs on the channels of the backends those pools use (`sql.READY_CHANNEL_PREFIX` + backend) and, on a
notification, waits `debounce_seconds` for the rest of a burst, then hands the set of (backend, queue) that
got READY rows to its callback once. A lost connection is reopened after `retry_seconds`; meanwhile, and
whenever the trigger is absent, the pools simply keep polling. A change of the channel set reconnects (a
LISTEN cannot be sent while the connection waits for notifications).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import psycopg
from psycopg import sql as pgsql

from taskpool_operator.probe import sql
from taskpool_operator.probe.dsn import describe, first_line

logger = logging.getLogger(__name__)

ReadyQueues = frozenset[tuple[str, str]]
"""(backend, queue) pairs that got READY rows."""
OnReady = Callable[[ReadyQueues], Awaitable[None]]


class ReadyListener:
    def __init__(
        self,
        dsn: str,
        on_ready: OnReady,
        *,
        connect_timeout_seconds: float,
        debounce_seconds: float,
        retry_seconds: float,
    ) -> None:
        self._dsn = dsn
        self._where = describe(dsn)
        self._on_ready = on_ready
        self._connect_timeout = max(1, round(connect_timeout_seconds))
        self._debounce = debounce_seconds
        self._retry = retry_seconds
        self._backends: frozenset[str] = frozenset()
        self._task: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()
        """Set while LISTEN is in effect (tests and benchmarks wait for it)."""

    def listen(self, backends: frozenset[str]) -> None:
        """Listens for these backends' READY rows (none: stops). Must be called from the event loop."""
        if backends == self._backends and (self._task is not None or not backends):
            return
        self._backends = backends
        self._stop()
        if backends:
            self._task = asyncio.get_running_loop().create_task(self._run(backends))

    async def close(self) -> None:
        task = self._task
        self._stop()
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _stop(self) -> None:
        self.listening.clear()
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self, backends: frozenset[str]) -> None:
        while True:
            try:
                await self._listen(backends)
            except (psycopg.Error, OSError) as exc:
                logger.warning(
                    "LISTEN on %s failed (%s): polling only, retrying in %gs",
                    self._where,
                    first_line(exc, self._dsn),
                    self._retry,
                )
            except Exception:  # a bug must not end the wake-ups for good: polling covers, and it retries
                logger.exception(
                    "LISTEN on %s failed: polling only, retrying in %gs", self._where, self._retry
                )
            self.listening.clear()
            await asyncio.sleep(self._retry)

    async def _listen(self, backends: frozenset[str]) -> None:
        async with await psycopg.AsyncConnection.connect(
            self._dsn,
            autocommit=True,
            connect_timeout=self._connect_timeout,
            application_name="taskpool-operator-listen",
        ) as conn:
            for backend in sorted(backends):
                channel = pgsql.Identifier(sql.READY_CHANNEL_PREFIX + backend)
                await conn.execute(pgsql.SQL("LISTEN {}").format(channel))
            self.listening.set()
            prefix_length = len(sql.READY_CHANNEL_PREFIX)
            while True:
                ready: set[tuple[str, str]] = set()
                async for notify in conn.notifies(stop_after=1):
                    ready.add((notify.channel[prefix_length:], notify.payload))
                # The rest of a burst: one decision (and one probe query) for all of it.
                async for notify in conn.notifies(timeout=self._debounce):
                    ready.add((notify.channel[prefix_length:], notify.payload))
                await self._on_ready(frozenset(ready))
