"""One database as the probe sees it: its connections, its tick, its orphan recovery, its errors.

Connections are read-only (`default_transaction_read_only`), carry a server-side statement timeout and a
connect timeout, and run the single statement in autocommit: one round trip per tick. The one write,
`recover_orphans`, uses the same connection in its own short READ WRITE transaction. Errors are classified
into the bounded set of `ProbeError` reasons and their messages never contain the DSN's password.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Self

import psycopg
from psycopg import errors as pg_errors
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from taskpool_operator.probe import rows, sql
from taskpool_operator.probe.depth import MIGRATE_HINT, OrphanRecovery, ProbeError, ProbeTarget, Reading
from taskpool_operator.probe.dsn import describe, first_line

Connections = AsyncConnectionPool[psycopg.AsyncConnection[TupleRow]]
TickReport = Callable[[Mapping[Hashable, Reading], float, ProbeError | None], None]
"""Called once per tick with every interested pool's reading, the query's duration and its error."""


@dataclass(frozen=True)
class Timeouts:
    connect_seconds: float = 5.0
    statement_seconds: float = 5.0

    @property
    def total_seconds(self) -> float:
        """The longest a caller waits for one statement: connecting, then running it."""
        return self.connect_seconds + self.statement_seconds


class Database:
    """One database: its connections (psycopg's pool of at most one), the pools interested in it, and the
    tick in flight, which concurrent callers join."""

    def __init__(self, dsn: str, timeouts: Timeouts, report: TickReport) -> None:
        self.dsn = dsn
        self.interests: dict[Hashable, ProbeTarget] = {}
        self._timeouts = timeouts
        self._report = report
        self._where = describe(dsn)
        self._last_connect_error: BaseException | None = None
        self._connections: Connections | None = None
        self._inflight: asyncio.Task[None] | None = None
        self._inflight_keys: frozenset[Hashable] = frozenset()

    async def tick(self, *, join: bool = True) -> None:
        """Runs the statement for every interested pool and reports their readings; joins a tick in flight
        when it covers every interested pool (with `join=False`, waits for it and runs a new one: a tick that
        started before a notification's commit may not see its rows). Never raises for database trouble: the
        error is the reading."""
        while (inflight := self._inflight) is not None:
            covered = join and self._inflight_keys >= self.interests.keys()
            await asyncio.shield(inflight)
            if covered:
                return
        if not self.interests:
            return
        # A task, shielded: a caller that gives up (a handler cancelled) never cancels the others' tick.
        task = asyncio.get_running_loop().create_task(self._tick(dict(self.interests)))
        self._inflight, self._inflight_keys = task, frozenset(self.interests)
        await asyncio.shield(task)

    async def _tick(self, targets: dict[Hashable, ProbeTarget]) -> None:
        try:
            started = time.monotonic()
            try:
                found = await self._query(targets.values())
            except ProbeError as error:
                self._report(dict.fromkeys(targets, error), time.monotonic() - started, error)
                return
            finished = time.monotonic()
            readings = {key: rows.pool_depth(target, found, finished) for key, target in targets.items()}
            self._report(readings, finished - started, None)
        finally:
            self._inflight = None

    async def _query(self, targets: Iterable[ProbeTarget]) -> rows.Rows:
        params = rows.parameters(targets)
        connections = await self._open()
        try:
            try:
                records = await self._execute(connections, params)
            except psycopg.OperationalError as exc:
                if isinstance(exc, PoolTimeout) or not _connection_lost(exc):
                    raise
                # The connection died between ticks (server restart, failover, a proxy's idle timeout):
                # psycopg replaces it, and one retry keeps that from looking like an outage.
                records = await self._execute(connections, params)
        except PoolTimeout:
            raise self._connect_error() from None
        except TimeoutError:
            raise ProbeError(
                "timeout",
                f"the queue probe on {self._where} got no answer within {self._timeouts.total_seconds:g}s",
            ) from None
        except psycopg.Error as exc:
            raise self._classify(exc) from None
        return rows.collect(records, self._where)

    async def recover_orphans(self, recovery: OrphanRecovery) -> dict[str, str]:
        """Fails or requeues the orphaned rows in one transaction; returns the changed rows' ids with their
        last worker id. Raises `ProbeError`."""
        if not recovery.rows:
            return {}
        statement = sql.FAIL_ORPHANS if recovery.action == "Fail" else sql.REQUEUE_ORPHANS
        params = {
            "backend": recovery.backend,
            "queues": [orphaned.queue for orphaned in recovery.rows],
            "worker_ids": [orphaned.worker_id for orphaned in recovery.rows],
            "tracebacks": [orphaned.traceback for orphaned in recovery.rows],
            "exception_class_path": recovery.exception_class_path,
        }
        connections = await self._open()
        what = "the orphan recovery"
        try:
            async with connections.connection() as conn:
                async with asyncio.timeout(self._timeouts.total_seconds):
                    async with conn.transaction():
                        await conn.execute(sql.READ_WRITE_TRANSACTION)
                        cursor = await conn.execute(statement, params)
                        records = await cursor.fetchall()
        except PoolTimeout:
            raise self._connect_error() from None
        except TimeoutError:
            raise ProbeError("timeout", f"{what} on {self._where} got no answer in time") from None
        except psycopg.Error as exc:
            raise self._classify(exc, what) from None
        return {str(task_id): str(worker_id) for task_id, worker_id in records}

    async def _execute(self, connections: Connections, params: Mapping[str, object]) -> list[TupleRow]:
        async with connections.connection() as conn:
            async with asyncio.timeout(self._timeouts.total_seconds):
                cursor = await conn.execute(sql.QUEUE_DEPTH, params)
                return await cursor.fetchall()

    async def _open(self) -> Connections:
        if self._connections is None:
            connections: Connections = AsyncConnectionPool(
                self.dsn,
                connection_class=_recording_connection_class(self),
                kwargs={
                    "autocommit": True,
                    "connect_timeout": max(1, round(self._timeouts.connect_seconds)),
                    "application_name": "taskpool-operator",
                },
                configure=self._configure,
                min_size=1,
                max_size=1,
                timeout=self._timeouts.connect_seconds,
                num_workers=1,
                open=False,
                name=f"probe {self._where}",
            )
            await connections.open(wait=False)
            self._connections = connections
        return self._connections

    async def _configure(self, conn: psycopg.AsyncConnection[TupleRow]) -> None:
        timeout_ms = str(max(1, round(self._timeouts.statement_seconds * 1000)))
        await conn.execute(sql.CONFIGURE_SESSION, {"statement_timeout": timeout_ms})

    def record_connect_error(self, error: BaseException | None) -> None:
        self._last_connect_error = error

    def _connect_error(self) -> ProbeError:
        cause = self._last_connect_error
        if cause is None:
            return ProbeError(
                "connect",
                f"could not connect to {self._where} within {self._timeouts.connect_seconds:g}s",
            )
        return ProbeError("connect", f"cannot connect to {self._where}: {first_line(cause, self.dsn)}")

    def _classify(self, exc: psycopg.Error, what: str = "the queue probe") -> ProbeError:
        detail = first_line(exc, self.dsn)
        if isinstance(exc, pg_errors.QueryCanceled):
            return ProbeError(
                "timeout",
                f"{what} on {self._where} ran past the statement timeout "
                f"({self._timeouts.statement_seconds:g}s): {detail}",
            )
        if isinstance(exc, pg_errors.UndefinedTable | pg_errors.UndefinedColumn):
            return ProbeError(
                "missing_table",
                f"django-tasks-db's table {sql.TASK_TABLE} is missing or out of date on {self._where} "
                f"({detail}): {MIGRATE_HINT}",
            )
        if isinstance(exc, psycopg.OperationalError):
            return ProbeError("connect", f"lost the connection to {self._where}: {detail}")
        return ProbeError("query", f"{what} failed on {self._where}: {detail}")

    async def close(self) -> None:
        """Cancels the tick in flight and closes the connection."""
        if self._inflight is not None:
            self._inflight.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._inflight
        self._inflight = None
        if self._connections is not None:
            await self._connections.close()
            self._connections = None


def _recording_connection_class(database: Database) -> type[psycopg.AsyncConnection[TupleRow]]:
    """A connection class that tells `database` why its last connection attempt failed: psycopg's pool only
    reports a timeout, and users need the server's reason (wrong password, unknown host...)."""

    class RecordingConnection(psycopg.AsyncConnection[TupleRow]):
        @classmethod
        async def connect(cls, *args: Any, **kwargs: Any) -> Self:
            try:
                conn = await super().connect(*args, **kwargs)
            except psycopg.Error as exc:
                database.record_connect_error(exc)
                raise
            database.record_connect_error(None)
            return conn

    return RecordingConnection


def _connection_lost(exc: psycopg.OperationalError) -> bool:
    """A connection that broke under the query (no SQLSTATE: nothing the server reported), or one the server
    closed on purpose (admin shutdown, terminated backend)."""
    return exc.sqlstate is None or exc.sqlstate.startswith("57P")
