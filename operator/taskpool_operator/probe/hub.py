"""`ProbeHub`: the one probe every TaskWorkerPool registers with.

Pools register their interest (a key, the DSN from their Secret, and a `ProbeTarget`); pools on the same
database share its connection, and one tick runs ONE statement for the union of their interests, then keeps
each pool's `PoolDepth` (or the `ProbeError` that tick hit). A pool's loop asks `hub.fresh(key, max_age)`: it
ticks the database only when the reading is older than that, and loops of many pools asking together share
one tick.

Pools registered with `notify=True` are also woken by PostgreSQL: the database's `ReadyListener` LISTENs for
the trigger's notifications and, per debounced burst, ticks the database once and sets the `woken(key)` event
of every such pool whose queues got READY rows; the pool's loop then decides at once from that reading.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Hashable, Mapping
from typing import Self

from taskpool_operator.probe.database import Database, Timeouts
from taskpool_operator.probe.depth import OrphanRecovery, ProbeError, ProbeTarget, Reading
from taskpool_operator.probe.dsn import normalize
from taskpool_operator.probe.listener import ReadyListener, ReadyQueues

ProbeObserver = Callable[[float, ProbeError | None], None]
"""Called after every query with its duration in seconds and its error (None on success): metrics hook."""


class ProbeHub:
    """Owns one `Database` per database and the latest reading of every registered pool. Pool keys are any
    hashable value (the operator uses `Pool.key`). Use as an async context manager or call `close()`."""

    def __init__(
        self,
        *,
        connect_timeout_seconds: float = 5.0,
        statement_timeout_seconds: float = 5.0,
        on_probe: ProbeObserver | None = None,
        notify_debounce_seconds: float = 0.02,
        listen_retry_seconds: float = 5.0,
    ) -> None:
        self._timeouts = Timeouts(connect_timeout_seconds, statement_timeout_seconds)
        self._notify_debounce = notify_debounce_seconds
        self._listen_retry = listen_retry_seconds
        self._listeners: dict[str, ReadyListener] = {}
        self._woken: dict[Hashable, asyncio.Event] = {}
        self._on_probe = on_probe
        self._databases: dict[str, Database] = {}
        self._database_of: dict[Hashable, str] = {}
        self._latest: dict[Hashable, Reading] = {}
        self._latest_at: dict[Hashable, float] = {}
        self._closing: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def register(self, key: Hashable, dsn: str, target: ProbeTarget, *, notify: bool = False) -> None:
        """Adds or replaces a pool's interest. Pools with the same database (same connection parameters)
        share its connection and its tick. With `notify`, the pool is also woken by NOTIFY (`woken`).
        Raises `ProbeError("connect")` for a DSN that cannot be parsed
        (the pool's previous registration, if any, is kept). Must be called from the event loop."""
        database_key = normalize(dsn)
        previous = self._database_of.get(key)
        if previous is not None and previous != database_key:
            abandoned = self._forget(key)
            if abandoned is not None and not abandoned.interests:
                # register() is synchronous: the abandoned database's connection closes in the background.
                closing = asyncio.get_running_loop().create_task(abandoned.close())
                self._closing.add(closing)
                closing.add_done_callback(self._closing.discard)
        database = self._databases.get(database_key)
        if database is None:
            database = Database(dsn, self._timeouts, self._record)
            self._databases[database_key] = database
        if database.interests.get(key, target) != target:
            self._latest.pop(key, None)  # measured for the old target
            self._latest_at.pop(key, None)
        unchanged = database.interests.get(key) == target and (key in self._woken) == notify
        database.interests[key] = target
        self._database_of[key] = database_key
        if notify:
            self._woken.setdefault(key, asyncio.Event())
        else:
            self._woken.pop(key, None)
        if not unchanged:  # pools re-register every tick: the listener's channels change rarely
            self._update_listener(database_key)

    def woken(self, key: Hashable) -> asyncio.Event | None:
        """Set when a notification told the hub that the pool's queues got READY rows (its reading is then
        fresh); the pool's loop clears it. None for a pool registered without `notify`."""
        return self._woken.get(key)

    def listener(self, dsn: str) -> ReadyListener | None:
        """The database's LISTEN connection, while a pool on it wants notifications."""
        return self._listeners.get(normalize(dsn))

    def _update_listener(self, database_key: str) -> None:
        database = self._databases.get(database_key)
        backends = frozenset(
            target.backend
            for key, target in (database.interests.items() if database else ())
            if key in self._woken
        )
        listener = self._listeners.get(database_key)
        if listener is None and database is not None and backends:
            listener = ReadyListener(
                database.dsn,
                lambda ready: self._on_ready(database_key, ready),
                connect_timeout_seconds=self._timeouts.connect_seconds,
                debounce_seconds=self._notify_debounce,
                retry_seconds=self._listen_retry,
            )
            self._listeners[database_key] = listener
        if listener is not None:
            listener.listen(backends)
            if not backends:
                del self._listeners[database_key]

    async def _on_ready(self, database_key: str, ready: ReadyQueues) -> None:
        """One burst of notifications: one tick of the database, then wake the pools whose queues got work."""
        database = self._databases.get(database_key)
        if database is None:
            return
        await database.tick(join=False)
        for key, target in list(database.interests.items()):
            event = self._woken.get(key)
            if event is not None and any(target.selects(backend, queue) for backend, queue in ready):
                event.set()

    async def unregister(self, key: Hashable) -> None:
        """Forgets a pool; closes its database's connection when no pool uses it any more."""
        database = self._forget(key)
        if database is not None and not database.interests:
            await database.close()

    def latest(self, key: Hashable) -> Reading | None:
        """The pool's latest reading: its depth, the error of the latest tick, or None before the first."""
        return self._latest.get(key)

    async def fresh(self, key: Hashable, max_age_seconds: float) -> Reading | None:
        """The pool's reading, first ticking its database (or joining a tick in flight) when the latest
        reading, success or error, is older than `max_age_seconds` or missing. None for an unknown key."""
        database_key = self._database_of.get(key)
        if database_key is None:
            return None
        taken_at = self._latest_at.get(key)
        if taken_at is None or time.monotonic() - taken_at > max_age_seconds:
            await self._databases[database_key].tick()
        return self._latest.get(key)

    async def tick(self, dsn: str) -> None:
        """Ticks `dsn`'s database now, for every pool registered on it (joining a tick already in flight
        when it covers every one of them). Never raises for database trouble: the error is stored for each
        of those pools."""
        database = self._databases.get(normalize(dsn))
        if database is not None:
            await database.tick()

    async def recover_orphans(self, key: Hashable, recovery: OrphanRecovery) -> dict[str, str]:
        """Fails or requeues orphaned rows on the registered pool's database, in one transaction; returns
        the ids of the rows it changed, with their last worker id (rows no longer RUNNING under that worker id
        are left alone). Raises `ProbeError`."""
        database_key = self._database_of.get(key)
        if database_key is None:
            raise ProbeError("connect", f"pool {key} has no registered database")
        return await self._databases[database_key].recover_orphans(recovery)

    def databases(self) -> list[str]:
        """The DSNs with registered pools (each as first registered; not for display: it has the password)."""
        return [database.dsn for database in self._databases.values()]

    async def close(self) -> None:
        """Cancels every tick in flight and closes every connection."""
        databases = list(self._databases.values())
        listeners = list(self._listeners.values())
        self._databases.clear()
        self._database_of.clear()
        self._listeners.clear()
        self._woken.clear()
        for listener in listeners:
            await listener.close()
        for database in databases:
            await database.close()
        if self._closing:
            await asyncio.gather(*self._closing)

    def _forget(self, key: Hashable) -> Database | None:
        self._latest.pop(key, None)
        self._latest_at.pop(key, None)
        self._woken.pop(key, None)
        database_key = self._database_of.pop(key, None)
        if database_key is None:
            return None
        database = self._databases[database_key]
        database.interests.pop(key, None)
        if not database.interests:
            del self._databases[database_key]
        self._update_listener(database_key)
        return database

    def _record(
        self, readings: Mapping[Hashable, Reading], duration: float, error: ProbeError | None
    ) -> None:
        """A database's tick report: keeps the readings of pools still registered, then tells the observer."""
        now = time.monotonic()
        for key, reading in readings.items():
            if key in self._database_of:
                self._latest[key] = reading
                self._latest_at[key] = now
        if self._on_probe is not None:
            self._on_probe(duration, error)
