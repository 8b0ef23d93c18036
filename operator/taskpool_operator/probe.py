"""Queue depth straight from django-tasks-db's task table: the only module that talks to the database.

One `ProbeHub` serves every TaskWorkerPool. Pools register their interest (a key, the DSN from their Secret,
and a `ProbeTarget`); pools on the same database share one pooled connection, and one tick runs ONE statement
(`sql.QUEUE_DEPTH`) for the union of their interests, then stores each pool's `PoolDepth` (or the
`ProbeError` that tick hit). A pool's timer asks `hub.fresh(key, max_age)`: it ticks the database only when
the reading is older than that, and timers of many pools firing together share one tick.

Connections are read-only (`default_transaction_read_only`), carry a server-side statement timeout and a
connect timeout, and run the single statement in autocommit: one round trip per tick per database. Errors
are classified into a bounded set of reasons and their messages never contain the DSN's password.

The one write, `recover_orphans` (fail or requeue the RUNNING rows of workers whose pod is gone), uses the
same pooled connection in its own short READ WRITE transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Self, get_args
from urllib.parse import quote, quote_plus

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from taskpool_operator import sql

ErrorReason = Literal["connect", "timeout", "missing_table", "missing_index", "query"]
ERROR_REASONS: Final[tuple[ErrorReason, ...]] = get_args(ErrorReason)
ALL_QUEUES: Final = "*"
MIGRATE_HINT: Final = (
    "run `python manage.py migrate` with this database (INSTALLED_APPS needs 'django_tasks_db' and "
    "'django_taskpool')"
)
# django-tasks-db's queue_name and backend_name columns are varchar(32).
NAME_MAX_LENGTH: Final = 32


class ProbeError(Exception):
    """A probe that could not read the queue depth. `reason` is one of `ERROR_REASONS` (a metric label):

    - `connect`: the DSN is invalid, or the server refused or did not answer (the message says which);
    - `timeout`: the query ran past the statement timeout;
    - `missing_table`: django-tasks-db's table (or one of its columns) is absent: migrations not applied;
    - `missing_index`: the `django_taskpool` migration that creates the probe's indexes is not applied;
    - `query`: anything else the server rejected (e.g. permission denied).

    The message is meant for users (events, status conditions) and never contains the password.
    """

    def __init__(self, reason: ErrorReason, message: str) -> None:
        super().__init__(message)
        self.reason: ErrorReason = reason
        self.message = message

    def __repr__(self) -> str:
        return f"ProbeError({self.reason!r}, {self.message!r})"


@dataclass(frozen=True)
class ProbeTarget:
    """What one pool wants counted.

    `queues` lists queue names, or is `("*",)` for every queue of the backend except `exclude_queues` (the
    same rules as `db_worker --queue-name/--exclude-queues`). `cap` bounds the ready count: the most this pool
    can use, `ready_cap(max_replicas, tasks_per_replica)`.
    """

    backend: str = "default"
    queues: tuple[str, ...] = ("default",)
    exclude_queues: tuple[str, ...] = ()
    cap: int = 1

    def __post_init__(self) -> None:
        if not self.queues:
            raise ValueError("queues must name at least one queue, or be ['*'] for every queue")
        if ALL_QUEUES in self.queues and len(self.queues) > 1:
            raise ValueError("'*' (every queue) cannot be combined with queue names")
        if self.exclude_queues and not self.all_queues:
            raise ValueError("exclude_queues can only be used with queues ['*']")
        for name in (self.backend, *self.queues, *self.exclude_queues):
            if not name or len(name) > NAME_MAX_LENGTH:
                raise ValueError(
                    f"backend and queue names must be 1 to {NAME_MAX_LENGTH} characters: {name!r}"
                )
        if self.cap < 1:
            raise ValueError(f"cap must be at least 1, got {self.cap}")

    @property
    def all_queues(self) -> bool:
        return self.queues == (ALL_QUEUES,)

    def selects(self, backend: str, queue: str) -> bool:
        """Whether a task on this backend and queue is one this pool's workers would claim."""
        if backend != self.backend:
            return False
        if self.all_queues:
            return queue not in self.exclude_queues
        return queue in self.queues


def ready_cap(max_replicas: int, tasks_per_replica: int) -> int:
    """The ready count beyond which a pool's decision cannot change: every slot busy, plus one."""
    return max_replicas * tasks_per_replica + 1


@dataclass(frozen=True)
class QueueDepth:
    """One queue as seen by one tick. `ready` is capped at the pool's cap."""

    backend: str
    queue: str
    ready: int
    running: int
    oldest_ready_age_seconds: float


@dataclass(frozen=True)
class WorkerTasks:
    """RUNNING rows of one queue whose last claim was by `worker_id` (None if the row has no worker id).

    Worker ids are `f"{pod_name}-{index}"` with characters dropped from the start past 64 (docs/contracts.md);
    rows whose pod no longer exists are orphans.
    """

    backend: str
    queue: str
    worker_id: str | None
    running: int


@dataclass(frozen=True)
class PoolDepth:
    """One pool's view of a tick: its queues (those it names; with `*`, every queue not excluded that has
    READY rows, due or not, or RUNNING rows), its RUNNING rows per worker id, and totals. `ready` is capped
    at the target's cap; `oldest_ready_age_seconds` is 0 when nothing is ready. `probed_at` is
    `time.monotonic()` at the end of the query, to judge staleness; ages come from the database clock."""

    queues: tuple[QueueDepth, ...]
    running_by_worker: tuple[WorkerTasks, ...]
    ready: int
    running: int
    oldest_ready_age_seconds: float
    cap: int
    probed_at: float

    @property
    def ready_capped(self) -> bool:
        """True when the true ready count may be higher than `ready`."""
        return self.ready >= self.cap


@dataclass(frozen=True)
class OrphanedRows:
    """RUNNING rows of `queue` whose last worker id is `worker_id`, to recover; `traceback` is what a failed
    row gets."""

    queue: str
    worker_id: str
    traceback: str


@dataclass(frozen=True)
class OrphanRecovery:
    """One batch of orphaned rows of a backend: `Fail` marks them FAILED with `exception_class_path`,
    `Requeue` makes them READY again."""

    action: Literal["Fail", "Requeue"]
    backend: str
    rows: tuple[OrphanedRows, ...]
    exception_class_path: str


ProbeObserver = Callable[[float, ProbeError | None], None]
"""Called after every query with its duration in seconds and its error (None on success): metrics hook."""


@dataclass(frozen=True)
class _Rows:
    """The raw result of one statement, keyed for distribution to pools."""

    ready: dict[tuple[str, str], tuple[int, float]] = field(default_factory=dict)
    running: dict[tuple[str, str, str | None], int] = field(default_factory=dict)


class ProbeHub:
    """Owns one connection pool per database and the latest reading of every registered pool.

    Readings come on demand: `fresh(key, max_age_seconds)` ticks the pool's database only when the pool's
    reading is older than `max_age_seconds`, and concurrent ticks of one database share one statement, so any
    number of pool timers on a database cost one query per `max_age_seconds` at most. With `interval_seconds`
    set, each database also gets a background task that ticks every interval (the first tick at once).
    Use as an async context manager or call `close()`.
    """

    def __init__(
        self,
        *,
        interval_seconds: float | None = None,
        connect_timeout_seconds: float = 5.0,
        statement_timeout_seconds: float = 5.0,
        on_probe: ProbeObserver | None = None,
    ) -> None:
        self.interval_seconds = interval_seconds
        self.connect_timeout_seconds = connect_timeout_seconds
        self.statement_timeout_seconds = statement_timeout_seconds
        self._on_probe = on_probe
        self._databases: dict[str, _Database] = {}
        self._database_of: dict[str, str] = {}
        self._latest: dict[str, PoolDepth | ProbeError] = {}
        self._latest_at: dict[str, float] = {}
        self._closing: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def register(self, key: str, dsn: str, target: ProbeTarget) -> None:
        """Adds or replaces a pool's interest. Pools with the same database (same connection parameters)
        share its connection and its tick. Raises `ProbeError("connect")` for a DSN that cannot be parsed
        (the pool's previous registration, if any, is kept). Must be called from the event loop."""
        database_key = _normalized(dsn)
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
            database = _Database(dsn, self)
            self._databases[database_key] = database
            if self.interval_seconds is not None:
                database.start(self.interval_seconds)
        if database.interests.get(key, target) != target:
            self._latest.pop(key, None)  # measured for the old target
            self._latest_at.pop(key, None)
        database.interests[key] = target
        self._database_of[key] = database_key

    async def unregister(self, key: str) -> None:
        """Forgets a pool; closes its database's connection when no pool uses it any more."""
        database = self._forget(key)
        if database is not None and not database.interests:
            await database.close()

    def latest(self, key: str) -> PoolDepth | ProbeError | None:
        """The pool's latest reading: its depth, the error of the latest tick, or None before the first."""
        return self._latest.get(key)

    async def fresh(self, key: str, max_age_seconds: float) -> PoolDepth | ProbeError | None:
        """The pool's reading, first ticking its database (or joining a tick in flight) when the latest
        reading, success or error, is older than `max_age_seconds` or missing. None for an unknown key."""
        database_key = self._database_of.get(key)
        if database_key is None:
            return None
        taken_at = self._latest_at.get(key)
        if taken_at is None or time.monotonic() - taken_at > max_age_seconds:
            await self._databases[database_key].tick()
        return self._latest.get(key)

    async def recover_orphans(self, key: str, recovery: OrphanRecovery) -> dict[str, str]:
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

    async def tick(self, dsn: str) -> None:
        """Runs the one statement for every pool registered on `dsn`'s database and stores their readings
        (joining a tick already in flight when it covers every registered pool). Never raises for database
        trouble: the error is stored for each of those pools."""
        database = self._databases.get(_normalized(dsn))
        if database is not None:
            await database.tick()

    async def close(self) -> None:
        """Stops every background tick and closes every connection."""
        databases = list(self._databases.values())
        self._databases.clear()
        self._database_of.clear()
        for database in databases:
            await database.close()
        if self._closing:
            await asyncio.gather(*self._closing)

    def _forget(self, key: str) -> _Database | None:
        self._latest.pop(key, None)
        self._latest_at.pop(key, None)
        database_key = self._database_of.pop(key, None)
        if database_key is None:
            return None
        database = self._databases[database_key]
        database.interests.pop(key, None)
        if not database.interests:
            del self._databases[database_key]
        return database

    def _store(self, readings: Mapping[str, PoolDepth | ProbeError]) -> None:
        now = time.monotonic()
        for key, reading in readings.items():
            if key in self._database_of:
                self._latest[key] = reading
                self._latest_at[key] = now

    def _observe(self, duration: float, error: ProbeError | None) -> None:
        if self._on_probe is not None:
            self._on_probe(duration, error)


class _Database:
    """One database: its connection pool, the pools interested in it, its background tick."""

    def __init__(self, dsn: str, hub: ProbeHub) -> None:
        self.dsn = dsn
        self.hub = hub
        self.interests: dict[str, ProbeTarget] = {}
        self._where = _describe(dsn)
        self._last_connect_error: BaseException | None = None
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[TupleRow]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._inflight: asyncio.Task[None] | None = None
        self._inflight_keys: frozenset[str] = frozenset()

    def start(self, interval: float) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(interval), name=f"probe {self._where}")

    async def _run(self, interval: float) -> None:
        while True:
            await self.tick()
            await asyncio.sleep(interval)

    async def tick(self) -> None:
        while (inflight := self._inflight) is not None:
            covered = self._inflight_keys >= self.interests.keys()
            await asyncio.shield(inflight)
            if covered:
                return
        if not self.interests:
            return
        # A task, shielded: a caller that gives up (a handler cancelled) never cancels the others' tick.
        task = asyncio.get_running_loop().create_task(self._tick(dict(self.interests)))
        self._inflight, self._inflight_keys = task, frozenset(self.interests)
        await asyncio.shield(task)

    async def _tick(self, targets: dict[str, ProbeTarget]) -> None:
        try:
            started = time.monotonic()
            try:
                rows = await self._query(targets.values())
            except ProbeError as error:
                self.hub._observe(time.monotonic() - started, error)
                self.hub._store(dict.fromkeys(targets, error))
                return
            finished = time.monotonic()
            self.hub._observe(finished - started, None)
            self.hub._store({key: _pool_depth(target, rows, finished) for key, target in targets.items()})
        finally:
            self._inflight = None

    async def _query(self, targets: Iterable[ProbeTarget]) -> _Rows:
        params = _parameters(targets)
        pool = await self._open_pool()
        try:
            try:
                records = await self._execute(pool, params)
            except psycopg.OperationalError as exc:
                if isinstance(exc, PoolTimeout) or not _connection_lost(exc):
                    raise
                # The pooled connection died between ticks (server restart, failover, a proxy's idle
                # timeout): the pool replaces it, and one retry keeps that from looking like an outage.
                records = await self._execute(pool, params)
        except PoolTimeout:
            raise self._connect_error() from None
        except TimeoutError:
            raise ProbeError(
                "timeout",
                f"the queue probe on {self._where} got no answer within "
                f"{self.hub.statement_timeout_seconds + self.hub.connect_timeout_seconds:g}s",
            ) from None
        except psycopg.Error as exc:
            raise self._classify(exc) from None
        return _collect(records, self._where)

    async def recover_orphans(self, recovery: OrphanRecovery) -> dict[str, str]:
        if not recovery.rows:
            return {}
        statement = sql.FAIL_ORPHANS if recovery.action == "Fail" else sql.REQUEUE_ORPHANS
        params = {
            "backend": recovery.backend,
            "queues": [rows.queue for rows in recovery.rows],
            "worker_ids": [rows.worker_id for rows in recovery.rows],
            "tracebacks": [rows.traceback for rows in recovery.rows],
            "exception_class_path": recovery.exception_class_path,
        }
        pool = await self._open_pool()
        what = "the orphan recovery"
        try:
            async with pool.connection() as conn:
                async with asyncio.timeout(
                    self.hub.statement_timeout_seconds + self.hub.connect_timeout_seconds
                ):
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

    async def _execute(
        self, pool: AsyncConnectionPool[psycopg.AsyncConnection[TupleRow]], params: Mapping[str, object]
    ) -> list[TupleRow]:
        async with pool.connection() as conn:
            async with asyncio.timeout(self.hub.statement_timeout_seconds + self.hub.connect_timeout_seconds):
                cursor = await conn.execute(sql.QUEUE_DEPTH, params)
                return await cursor.fetchall()

    async def _open_pool(self) -> AsyncConnectionPool[psycopg.AsyncConnection[TupleRow]]:
        if self._pool is None:
            pool: AsyncConnectionPool[psycopg.AsyncConnection[TupleRow]] = AsyncConnectionPool(
                self.dsn,
                connection_class=_recording_connection_class(self),
                kwargs={
                    "autocommit": True,
                    "connect_timeout": max(1, round(self.hub.connect_timeout_seconds)),
                    "application_name": "taskpool-operator",
                },
                configure=self._configure,
                min_size=1,
                max_size=1,
                timeout=self.hub.connect_timeout_seconds,
                num_workers=1,
                open=False,
                name=f"probe {self._where}",
            )
            await pool.open(wait=False)
            self._pool = pool
        return self._pool

    async def _configure(self, conn: psycopg.AsyncConnection[TupleRow]) -> None:
        timeout_ms = str(max(1, round(self.hub.statement_timeout_seconds * 1000)))
        await conn.execute(sql.CONFIGURE_SESSION, {"statement_timeout": timeout_ms})

    def record_connect_error(self, error: BaseException | None) -> None:
        self._last_connect_error = error

    def _connect_error(self) -> ProbeError:
        cause = self._last_connect_error
        if cause is None:
            return ProbeError(
                "connect",
                f"could not connect to {self._where} within {self.hub.connect_timeout_seconds:g}s",
            )
        return ProbeError("connect", f"cannot connect to {self._where}: {_first_line(cause, self.dsn)}")

    def _classify(self, exc: psycopg.Error, what: str = "the queue probe") -> ProbeError:
        detail = _first_line(exc, self.dsn)
        if isinstance(exc, pg_errors.QueryCanceled):
            return ProbeError(
                "timeout",
                f"{what} on {self._where} ran past the statement timeout "
                f"({self.hub.statement_timeout_seconds:g}s): {detail}",
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
        for task in (self._task, self._inflight):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._inflight = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


def _recording_connection_class(
    database: _Database,
) -> type[psycopg.AsyncConnection[TupleRow]]:
    """A connection class that tells `database` why its last connection attempt failed: the pool only
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


def _parameters(targets: Iterable[ProbeTarget]) -> dict[str, list[str] | list[int]]:
    listed: dict[tuple[str, str], int] = {}
    wild: dict[str, int] = {}
    for target in targets:
        if target.all_queues:
            wild[target.backend] = max(wild.get(target.backend, 0), target.cap)
        else:
            for queue in target.queues:
                pair = (target.backend, queue)
                listed[pair] = max(listed.get(pair, 0), target.cap)
    backends = sorted({backend for backend, _ in listed} | set(wild))
    return {
        "listed_backends": [backend for backend, _ in listed],
        "listed_queues": [queue for _, queue in listed],
        "listed_caps": list(listed.values()),
        "wild_backends": list(wild),
        "wild_caps": list(wild.values()),
        "backends": backends,
    }


def _collect(records: list[TupleRow], where: str) -> _Rows:
    rows = _Rows()
    for kind, backend, queue, worker_id, tasks, oldest_age in records:
        if kind == "missing_index":
            raise ProbeError(
                "missing_index",
                f"the queue probe's indexes ({sql.READY_INDEX}, {sql.RUNNING_INDEX}) are missing on {where}: "
                f"{MIGRATE_HINT}",
            )
        if kind == "ready":
            rows.ready[backend, queue] = (int(tasks), max(0.0, float(oldest_age or 0.0)))
        else:
            rows.running[backend, queue, worker_id] = int(tasks)
    return rows


def _pool_depth(target: ProbeTarget, rows: _Rows, probed_at: float) -> PoolDepth:
    ready: dict[str, tuple[int, float]] = {}
    if not target.all_queues:
        ready.update(dict.fromkeys(target.queues, (0, 0.0)))
    for (backend, queue), counts in rows.ready.items():
        if target.selects(backend, queue):
            ready[queue] = counts
    running: dict[str, int] = {}
    by_worker: list[WorkerTasks] = []
    for (backend, queue, worker_id), tasks in sorted(rows.running.items(), key=_running_order):
        if target.selects(backend, queue):
            running[queue] = running.get(queue, 0) + tasks
            by_worker.append(WorkerTasks(backend, queue, worker_id, tasks))
    queues = tuple(
        QueueDepth(
            backend=target.backend,
            queue=queue,
            ready=min(ready.get(queue, (0, 0.0))[0], target.cap),
            running=running.get(queue, 0),
            oldest_ready_age_seconds=ready.get(queue, (0, 0.0))[1],
        )
        for queue in sorted(ready.keys() | running.keys())
    )
    return PoolDepth(
        queues=queues,
        running_by_worker=tuple(by_worker),
        ready=min(sum(q.ready for q in queues), target.cap),
        running=sum(q.running for q in queues),
        oldest_ready_age_seconds=max((q.oldest_ready_age_seconds for q in queues), default=0.0),
        cap=target.cap,
        probed_at=probed_at,
    )


def _running_order(item: tuple[tuple[str, str, str | None], int]) -> tuple[str, str, str]:
    (backend, queue, worker_id), _ = item
    return backend, queue, worker_id or ""


async def probe_once(
    dsn: str,
    targets: Mapping[str, ProbeTarget],
    *,
    connect_timeout_seconds: float = 5.0,
    statement_timeout_seconds: float = 5.0,
) -> dict[str, PoolDepth]:
    """One probe of one database for the named targets (the CLI's `probe` command): the same statement the
    operator runs. Raises `ProbeError`."""
    async with ProbeHub(
        interval_seconds=None,
        connect_timeout_seconds=connect_timeout_seconds,
        statement_timeout_seconds=statement_timeout_seconds,
    ) as hub:
        for key, target in targets.items():
            hub.register(key, dsn, target)
        await hub.tick(dsn)
        results: dict[str, PoolDepth] = {}
        for key in targets:
            reading = hub.latest(key)
            if isinstance(reading, ProbeError):
                raise reading
            if reading is None:  # pragma: no cover - tick always stores a reading for every key
                raise ProbeError("query", "the probe returned no reading")
            results[key] = reading
        return results


def format_table(results: Mapping[str, PoolDepth]) -> str:
    """A plain-text table of probe results, one line per (target, queue), for terminals."""
    header = ("TARGET", "BACKEND", "QUEUE", "READY", "RUNNING", "OLDEST READY")
    lines: list[tuple[str, ...]] = [header]
    for name, depth in results.items():
        if not depth.queues:
            lines.append((name, "-", "-", "0", "0", "-"))
        for queue in depth.queues:
            capped = queue.ready >= depth.cap
            lines.append(
                (
                    name,
                    queue.backend,
                    queue.queue,
                    f"{queue.ready}+" if capped else str(queue.ready),
                    str(queue.running),
                    _format_age(queue.oldest_ready_age_seconds) if queue.ready else "-",
                )
            )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    rendered = [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)) for line in lines
    ]
    footnote = (
        "READY is capped at what the pool can use (max replicas x tasks per replica + 1); '+' marks a cap."
    )
    return "\n".join([*(line.rstrip() for line in rendered), footnote])


def _format_age(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _normalized(dsn: str) -> str:
    """The DSN as sorted key=value pairs: the same database spelled as a URL or as key=value is one key."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise ProbeError("connect", f"invalid database URL: {_first_line(exc, dsn)}") from None
    # libpq checks ports only when connecting, and its message would quote the value: in a URL whose
    # password was not percent-encoded, that value can be a piece of the password.
    if not all(port.strip().isdigit() for port in str(params.get("port") or "0").split(",")):
        raise ProbeError(
            "connect", "invalid database URL: the port is not a number (percent-encode the password)"
        )
    return make_conninfo("", **{name: params[name] for name in sorted(params) if params[name] is not None})


def _describe(dsn: str) -> str:
    """Where a DSN points, for messages: `user@host:port/dbname`, never the password."""
    params = conninfo_to_dict(dsn)
    user = str(params.get("user") or "")
    host = str(params.get("host") or "localhost")
    port = params.get("port")
    dbname = params.get("dbname") or user
    location = f"{host}:{port}" if port else host
    return f"database {dbname} at {user + '@' if user else ''}{location}"


_PASSWORD_PATTERNS: Final = (
    re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE),
    re.compile(r"(://[^:/@\s]*:)([^@\s]*)(@)"),
)


def redact(text: str, dsn: str) -> str:
    """`text` with the DSN's password removed, whatever its spelling (plain, URL-encoded, in a key=value
    or URL DSN echoed back by libpq)."""
    secrets: set[str] = set()
    with contextlib.suppress(psycopg.ProgrammingError):
        password = conninfo_to_dict(dsn).get("password")
        if password:
            secrets.update({str(password), quote(str(password), safe=""), quote_plus(str(password))})
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    text = _PASSWORD_PATTERNS[0].sub(r"\1***", text)
    return _PASSWORD_PATTERNS[1].sub(r"\1***\3", text)


def _first_line(exc: BaseException, dsn: str) -> str:
    message = str(exc).strip()
    first = message.splitlines()[0].strip() if message else type(exc).__name__
    return redact(first, dsn)


__all__ = [
    "ALL_QUEUES",
    "ERROR_REASONS",
    "ErrorReason",
    "OrphanRecovery",
    "OrphanedRows",
    "PoolDepth",
    "ProbeError",
    "ProbeHub",
    "ProbeObserver",
    "ProbeTarget",
    "QueueDepth",
    "WorkerTasks",
    "format_table",
    "probe_once",
    "ready_cap",
    "redact",
]
