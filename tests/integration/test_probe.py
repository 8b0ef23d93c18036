"""The queue probe against a real PostgreSQL migrated by the demo project's `manage.py migrate`.

The reference for every count is django-tasks-db's own ORM (`DBTaskResult.objects.ready()` and
`.running()`), run in a Django subprocess: the operator never imports Django, the test may.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql as pgsql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from devdb import demo_project, postgres
from taskpool_operator import cli
from taskpool_operator.probe import dsn as probe_dsn
from taskpool_operator.probe import sql
from taskpool_operator.probe.depth import PoolDepth, ProbeError, ProbeTarget
from taskpool_operator.probe.hub import ProbeHub

pytestmark = pytest.mark.integration

SENTINEL = datetime(9999, 1, 1, tzinfo=UTC)
STATUSES = ("READY", "RUNNING", "SUCCESSFUL", "FAILED")
QUEUES = ("default", "emails", "reports", "q-3", "a" * 32)
BACKENDS = ("default", "other")
BIG_CAP = 100_000


@dataclass(frozen=True)
class Task:
    status: str
    backend: str
    queue: str
    priority: int
    enqueued_at: datetime
    run_after: datetime
    worker_ids: tuple[str, ...]


def random_tasks(rng: random.Random, now: datetime, count: int) -> list[Task]:
    """Tasks of every status, on several backends and queues, with run_after in the past, in the future
    (never within two minutes of now, so the ORM's clock and the database's agree) or the sentinel."""
    tasks = []
    for _ in range(count):
        status = rng.choice(STATUSES)
        enqueued_at = now - timedelta(seconds=rng.uniform(1, 7200))
        run_after = rng.choice(
            [
                SENTINEL,
                now - timedelta(seconds=rng.uniform(120, 10_000)),
                now + timedelta(seconds=rng.uniform(120, 86_400)),
            ]
        )
        workers = tuple(f"pod-{rng.randrange(4)}-{i}" for i in range(rng.randrange(3)))
        tasks.append(
            Task(
                status=status,
                backend=rng.choice(BACKENDS),
                queue=rng.choice(QUEUES),
                priority=rng.randint(-100, 100),
                enqueued_at=enqueued_at,
                run_after=run_after,
                worker_ids=workers if status != "READY" else (),
            )
        )
    return tasks


def insert(dsn: str, tasks: list[Task]) -> None:
    columns = (
        "id, status, args_kwargs, priority, task_path, queue_name, backend_name, run_after, enqueued_at, "
        "started_at, finished_at, return_value, exception_class_path, traceback, worker_ids"
    )
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        with cur.copy(f"COPY {sql.TASK_TABLE} ({columns}) FROM STDIN") as copy:
            for task in tasks:
                copy.write_row(
                    (
                        uuid.uuid4(),
                        task.status,
                        '{"args": [], "kwargs": {}}',
                        task.priority,
                        "taskpool_demo.tasks.noop",
                        task.queue,
                        task.backend,
                        task.run_after,
                        task.enqueued_at,
                        None,
                        None,
                        None,
                        "",
                        "",
                        json.dumps(list(task.worker_ids)),
                    )
                )
        conn.execute(f"ANALYZE {sql.TASK_TABLE}")


ORM_SCRIPT = """
import json
from django.db.models import Count
from django_tasks_db.models import DBTaskResult, get_date_max

sentinel = get_date_max()
ready = {}
for row in DBTaskResult.objects.ready().values("backend_name", "queue_name").annotate(n=Count("id")):
    ready[row["backend_name"] + "/" + row["queue_name"]] = row["n"]
oldest = {}
for task in DBTaskResult.objects.ready():
    key = task.backend_name + "/" + task.queue_name
    since = task.enqueued_at if task.run_after == sentinel else max(task.enqueued_at, task.run_after)
    oldest[key] = min(oldest.get(key, since), since)
running = {}
for task in DBTaskResult.objects.running():
    key = task.backend_name + "/" + task.queue_name + "/" + (task.worker_ids[-1] if task.worker_ids else "")
    running[key] = running.get(key, 0) + 1
active = sorted(
    {b + "/" + q for b, q in DBTaskResult.objects.filter(status__in=["READY", "RUNNING"])
        .values_list("backend_name", "queue_name").distinct()}
)
print(json.dumps({
    "ready": ready,
    "oldest": {key: value.timestamp() for key, value in oldest.items()},
    "running": running,
    "active": active,
}))
"""


def orm_view(database: demo_project.MigratedDatabase) -> dict[str, Any]:
    """What django-tasks-db's ORM says about the database, from a Django subprocess."""
    result: dict[str, Any] = demo_project.shell_json(database.url, ORM_SCRIPT)
    return result


def database_now(dsn: str) -> float:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT extract(epoch FROM now())::float8").fetchone()
    assert row is not None
    return float(row[0])


async def probe_pools(dsn: str, targets: dict[str, ProbeTarget]) -> dict[str, PoolDepth | ProbeError | None]:
    async with ProbeHub() as hub:
        for key, target in targets.items():
            hub.register(key, dsn, target)
        await hub.tick(dsn)
        return {key: hub.latest(key) for key in targets}


def depth(reading: PoolDepth | ProbeError | None) -> PoolDepth:
    assert isinstance(reading, PoolDepth), reading
    return reading


@pytest.mark.parametrize("seed", range(6))
def test_counts_match_the_orm(migrated_database: demo_project.MigratedDatabase, seed: int) -> None:
    rng = random.Random(seed)
    dsn = migrated_database.dsn
    insert(dsn, random_tasks(rng, datetime.fromtimestamp(database_now(dsn), UTC), rng.randrange(50, 600)))
    expected = orm_view(migrated_database)
    excluded = rng.sample(QUEUES, 2)
    listed = tuple(rng.sample(QUEUES, 3))
    targets = {
        "listed": ProbeTarget(backend="default", queues=listed, cap=BIG_CAP),
        "wild": ProbeTarget(backend="other", queues=("*",), exclude_queues=tuple(excluded), cap=BIG_CAP),
        "wild-default": ProbeTarget(backend="default", queues=("*",), cap=BIG_CAP),
        "capped": ProbeTarget(backend="default", queues=listed, cap=3),
        "nothing-here": ProbeTarget(backend="absent", queues=("*",), cap=5),
    }
    readings = asyncio.run(probe_pools(dsn, targets))
    now = database_now(dsn)

    for key, target in targets.items():
        result = depth(readings[key])
        if target.all_queues:
            names = sorted(
                name.split("/", 1)[1]
                for name in expected["active"]
                if name.split("/", 1)[0] == target.backend
                and target.selects(target.backend, name.split("/", 1)[1])
            )
        else:
            names = sorted(target.queues)
        assert [queue.queue for queue in result.queues] == names, key
        true_total = 0
        for queue in result.queues:
            name = f"{target.backend}/{queue.queue}"
            true_ready = expected["ready"].get(name, 0)
            true_total += true_ready
            assert queue.ready == min(true_ready, target.cap), (key, name)
            running = {
                k.split("/", 2)[2]: v for k, v in expected["running"].items() if k.startswith(name + "/")
            }
            assert queue.running == sum(running.values()), (key, name)
            by_worker = {
                (w.worker_id or ""): w.running for w in result.running_by_worker if w.queue == queue.queue
            }
            assert by_worker == running, (key, name)
            if true_ready:
                assert queue.oldest_ready_age_seconds == pytest.approx(now - expected["oldest"][name], abs=5)
            else:
                assert queue.oldest_ready_age_seconds == 0.0
        assert result.ready == min(true_total, target.cap)
        assert result.running == sum(q.running for q in result.queues)
        assert (result.ready >= result.cap) == (true_total >= target.cap)


def test_capped_counts_and_ages_on_a_deep_backlog(migrated_database: demo_project.MigratedDatabase) -> None:
    """5,000 ready tasks per queue: counts stop at the cap; the oldest age is still the oldest task's."""
    dsn = migrated_database.dsn
    with psycopg.connect(dsn) as conn:
        conn.execute(
            f"""INSERT INTO {sql.TASK_TABLE} (id, status, args_kwargs, priority, task_path, queue_name,
                backend_name, run_after, enqueued_at, exception_class_path, traceback, worker_ids)
            SELECT gen_random_uuid(), 'READY', '{{}}', 0, 't', q, 'default',
                   CASE WHEN g % 2 = 0 THEN '{sql.RUN_AFTER_SENTINEL}'::timestamptz
                        ELSE now() - interval '1 hour' END,
                   now() - make_interval(secs => g), '', '', '[]'
            FROM generate_series(1, 5000) AS g, unnest(ARRAY['default', 'emails']) AS q"""
        )
    results = asyncio.run(
        cli.probe_once(dsn, {"pool": ProbeTarget(queues=("default", "emails"), cap=ProbeTarget().cap + 40)})
    )
    result = results["pool"]
    assert [q.ready for q in result.queues] == [41, 41]
    assert result.ready == 41
    assert result.ready >= result.cap
    # The oldest ready task was enqueued 5,000 s ago (its run_after, 1 h ago, is earlier).
    assert result.oldest_ready_age_seconds == pytest.approx(5000, abs=5)
    table = cli.format_table(results)
    assert "41+" in table.splitlines()[1]


class StatementCounter:
    """Counts every statement psycopg sends (all of them go through AsyncCursor.execute)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.statements: list[str] = []
        original = psycopg.AsyncCursor.execute

        async def counting(cursor: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
            self.statements.append(str(query))
            return await original(cursor, query, *args, **kwargs)

        monkeypatch.setattr(psycopg.AsyncCursor, "execute", counting)

    def depth_queries(self) -> int:
        return sum(1 for statement in self.statements if statement == sql.QUEUE_DEPTH)


def test_one_statement_per_tick_per_database_whatever_the_number_of_pools(
    migrated_database: demo_project.MigratedDatabase, postgres_admin_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    second = demo_project.clone_database(postgres_admin_dsn, migrated_database.dsn)
    try:
        insert(migrated_database.dsn, random_tasks(random.Random(7), datetime.now(UTC), 200))
        counter = StatementCounter(monkeypatch)

        async def run() -> None:
            async with ProbeHub() as hub:
                for n in range(60):
                    target = (
                        ProbeTarget(queues=("*",), exclude_queues=(QUEUES[n % 5],), cap=n + 1)
                        if n % 3 == 0
                        else ProbeTarget(backend=BACKENDS[n % 2], queues=(QUEUES[n % 5], "emails"), cap=n + 1)
                    )
                    # The same database spelled two ways is still one database.
                    dsn = migrated_database.dsn if n % 2 else migrated_database.url
                    hub.register(f"first-{n}", dsn, target)
                for n in range(5):
                    hub.register(f"second-{n}", second, ProbeTarget(cap=3))
                assert len(hub.databases()) == 2
                for tick in range(1, 4):
                    await hub.tick(migrated_database.dsn)
                    assert counter.depth_queries() == tick
                for tick in range(4, 7):
                    await hub.tick(second)
                    assert counter.depth_queries() == tick
                assert all(isinstance(hub.latest(f"first-{n}"), PoolDepth) for n in range(60))
                assert all(isinstance(hub.latest(f"second-{n}"), PoolDepth) for n in range(5))

        asyncio.run(run())
        # Besides the depth queries, only one session setup per database (one pooled connection each).
        others = [s for s in counter.statements if s != sql.QUEUE_DEPTH]
        assert others == [sql.CONFIGURE_SESSION, sql.CONFIGURE_SESSION]
    finally:
        postgres.drop_database(postgres_admin_dsn, second)


def test_concurrent_pool_timers_share_one_statement(
    migrated_database: demo_project.MigratedDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pool timers firing together join one tick; fresh readings are reused; a pool registered while a tick
    is in flight gets a tick of its own."""
    insert(migrated_database.dsn, random_tasks(random.Random(11), datetime.now(UTC), 100))
    counter = StatementCounter(monkeypatch)

    async def run() -> None:
        async with ProbeHub() as hub:
            for n in range(100):
                hub.register(f"pool-{n}", migrated_database.dsn, ProbeTarget(queues=(QUEUES[n % 5],), cap=9))
            readings = await asyncio.gather(*(hub.fresh(f"pool-{n}", 60) for n in range(100)))
            assert all(isinstance(reading, PoolDepth) for reading in readings)
            assert counter.depth_queries() == 1
            await asyncio.gather(*(hub.fresh(f"pool-{n}", 60) for n in range(100)))
            assert counter.depth_queries() == 1  # still fresh
            await asyncio.gather(*(hub.fresh(f"pool-{n}", 0) for n in range(100)))
            assert counter.depth_queries() == 2  # stale for everyone: one shared tick

            first = asyncio.ensure_future(hub.fresh("pool-0", 0))
            await asyncio.sleep(0)  # the tick is in flight now
            hub.register("late", migrated_database.dsn, ProbeTarget(queues=("emails",), cap=9))
            late = await hub.fresh("late", 60)
            assert isinstance(await first, PoolDepth)
            assert isinstance(late, PoolDepth)
            assert counter.depth_queries() == 4
            assert await hub.fresh("unknown", 0) is None

    asyncio.run(run())


def test_probe_connection_is_read_only_with_a_statement_timeout(
    migrated_database: demo_project.MigratedDatabase,
) -> None:
    async def run() -> tuple[str, str, str]:
        async with ProbeHub(statement_timeout_seconds=2.5) as hub:
            hub.register("pool", migrated_database.dsn, ProbeTarget())
            await hub.tick(migrated_database.dsn)
            # The hub's own connection: exactly what the depth query runs on.
            connections = await hub._databases[probe_dsn.normalize(migrated_database.dsn)]._open()
            async with connections.connection() as conn:
                timeout = await (await conn.execute("SHOW statement_timeout")).fetchone()
                name = await (await conn.execute("SHOW application_name")).fetchone()
                try:
                    await conn.execute(f"DELETE FROM {sql.TASK_TABLE}")
                except psycopg.errors.ReadOnlySqlTransaction as exc:
                    refused = type(exc).__name__
                else:
                    refused = "nothing"
        assert timeout is not None
        assert name is not None
        return str(timeout[0]), str(name[0]), refused

    assert asyncio.run(run()) == ("2500ms", "taskpool-operator", "ReadOnlySqlTransaction")


def test_missing_table_says_to_migrate(empty_database: str) -> None:
    reading = asyncio.run(probe_pools(empty_database, {"pool": ProbeTarget()}))["pool"]
    assert isinstance(reading, ProbeError)
    assert reading.reason == "missing_table"
    assert sql.TASK_TABLE in reading.message
    assert "manage.py migrate" in reading.message


def test_missing_index_migration_says_to_migrate_and_recovers(
    migrated_database: demo_project.MigratedDatabase,
) -> None:
    demo_project.run_manage(
        migrated_database.url, "migrate", "django_taskpool", "zero", "--no-input", "-v", "0"
    )
    reading = asyncio.run(probe_pools(migrated_database.dsn, {"pool": ProbeTarget()}))["pool"]
    assert isinstance(reading, ProbeError)
    assert reading.reason == "missing_index"
    assert sql.READY_INDEX in reading.message
    assert "manage.py migrate" in reading.message

    demo_project.migrate(migrated_database.url)
    assert isinstance(
        asyncio.run(probe_pools(migrated_database.dsn, {"pool": ProbeTarget()}))["pool"], PoolDepth
    )


def test_migration_rebuilds_an_invalid_leftover_index(
    migrated_database: demo_project.MigratedDatabase,
) -> None:
    """An interrupted CREATE INDEX CONCURRENTLY leaves an INVALID index; re-running the migration fixes it."""
    with psycopg.connect(migrated_database.dsn, autocommit=True) as conn:
        conn.execute(f"DROP INDEX {sql.RUNNING_INDEX}")
        conn.execute("DELETE FROM django_migrations WHERE app = 'django_taskpool'")
        # Every django_taskpool migration runs again: the table of 0002 would otherwise be there already.
        conn.execute("DROP TABLE taskpool_schedule_fire")
        # A unique index that cannot be built stands in for an interrupted build: it is left INVALID.
        conn.execute(
            f"INSERT INTO {sql.TASK_TABLE} (id, status, args_kwargs, priority, task_path, queue_name, "
            "backend_name, run_after, enqueued_at, exception_class_path, traceback, worker_ids) "
            "SELECT gen_random_uuid(), 'RUNNING', '{}', 0, 't', 'default', 'default', now(), now(), '', '', "
            "'[]' FROM generate_series(1, 2)"
        )
        with contextlib.suppress(psycopg.errors.UniqueViolation):
            conn.execute(
                f"CREATE UNIQUE INDEX CONCURRENTLY {sql.RUNNING_INDEX} ON {sql.TASK_TABLE} (backend_name) "
                "WHERE status = 'RUNNING'"
            )
        valid = conn.execute(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)", [sql.RUNNING_INDEX]
        ).fetchone()
        assert valid == (False,)
    demo_project.migrate(migrated_database.url)
    with psycopg.connect(migrated_database.dsn) as conn:
        row = conn.execute(
            "SELECT i.indisvalid, pg_get_indexdef(i.indexrelid) FROM pg_index AS i "
            "WHERE i.indexrelid = to_regclass(%s)",
            [sql.RUNNING_INDEX],
        ).fetchone()
    assert row is not None
    assert row[0] is True
    assert "UNIQUE" not in row[1]
    assert "(backend_name, queue_name)" in row[1]


def test_statement_timeout_is_classified(migrated_database: demo_project.MigratedDatabase) -> None:
    """A migration holding an exclusive lock on the table: the probe gives up at its statement timeout."""
    with psycopg.connect(migrated_database.dsn) as blocker:
        blocker.execute(f"LOCK TABLE {sql.TASK_TABLE} IN ACCESS EXCLUSIVE MODE")

        async def run() -> PoolDepth | ProbeError | None:
            async with ProbeHub(statement_timeout_seconds=0.5) as hub:
                hub.register("pool", migrated_database.dsn, ProbeTarget())
                await hub.tick(migrated_database.dsn)
                return hub.latest("pool")

        started = time.monotonic()
        reading = asyncio.run(run())
        elapsed = time.monotonic() - started
        blocker.rollback()
    assert isinstance(reading, ProbeError)
    assert reading.reason == "timeout"
    assert "statement timeout (0.5s)" in reading.message
    assert elapsed < 30


PASSWORD = "s3cr3t-p@ss:w/rd"  # characters that need escaping in URLs
ROLE = "taskpool_probe_pw"


@pytest.fixture(scope="module")
def password_server(postgres_admin_dsn: str) -> Iterator[str]:
    """The test server with a login role that must give its password (scram-sha-256): the embedded server
    trusts every local connection, so a rule for this one role goes first in its pg_hba.conf. Yields a DSN
    with the right password."""
    with psycopg.connect(postgres_admin_dsn, autocommit=True) as conn:
        try:
            row = conn.execute("SHOW hba_file").fetchone()
            assert row is not None
            hba_file = str(row[0])
            original = conn.execute("SELECT pg_read_file(%s)", [hba_file]).fetchone()
        except psycopg.errors.InsufficientPrivilege:
            pytest.skip("needs a superuser DATABASE_URL to add a password rule to pg_hba.conf")
        assert original is not None
        text = str(original[0])
        if "\\" in text:
            pytest.skip("pg_hba.conf contains backslashes; not rewriting it")

        def write(lines: list[str]) -> None:
            conn.execute(
                pgsql.SQL("COPY (SELECT unnest({}::text[])) TO {}").format(
                    pgsql.Literal([line.replace("\t", " ") for line in lines]), pgsql.Literal(hba_file)
                )
            )
            conn.execute("SELECT pg_reload_conf()")

        conn.execute(pgsql.SQL("DROP ROLE IF EXISTS {}").format(pgsql.Identifier(ROLE)))
        conn.execute(
            pgsql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                pgsql.Identifier(ROLE), pgsql.Literal(PASSWORD)
            )
        )
        rules = [f"local all {ROLE} scram-sha-256", f"host all {ROLE} all scram-sha-256"]
        write(rules + text.splitlines())
        params = {k: v for k, v in conninfo_to_dict(postgres_admin_dsn).items() if v is not None}
        params.update(user=ROLE, password=PASSWORD)
        good = make_conninfo("", **params)
        try:
            wrong = make_conninfo("", **{**params, "password": "not-it"})
            deadline = time.monotonic() + 10
            while True:  # the reload is asynchronous
                try:
                    psycopg.connect(wrong).close()
                except psycopg.OperationalError:
                    break
                assert time.monotonic() < deadline, "pg_hba.conf rule not applied"
                time.sleep(0.1)
            psycopg.connect(good).close()
            yield good
        finally:
            write(text.splitlines())
            conn.execute(pgsql.SQL("DROP ROLE IF EXISTS {}").format(pgsql.Identifier(ROLE)))


def assert_secret_free(error: ProbeError, caplog: pytest.LogCaptureFixture) -> None:
    for text in (error.message, str(error), repr(error), caplog.text):
        assert PASSWORD not in text
        assert "s3cr3t" not in text


def wrong_password_dsns(good: str) -> list[str]:
    params = {k: v for k, v in conninfo_to_dict(good).items() if v is not None}
    wrong = {**params, "password": PASSWORD + "-wrong"}
    return [make_conninfo("", **wrong), postgres.to_url(make_conninfo("", **wrong))]


def test_wrong_password_is_a_connect_error_without_the_secret(
    password_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for dsn in wrong_password_dsns(password_server):

        async def run(dsn: str = dsn) -> PoolDepth | ProbeError | None:
            async with ProbeHub(connect_timeout_seconds=2) as hub:
                hub.register("pool", dsn, ProbeTarget())
                await hub.tick(dsn)
                return hub.latest("pool")

        reading = asyncio.run(run())
        assert isinstance(reading, ProbeError)
        assert reading.reason == "connect"
        assert "password authentication failed" in reading.message
        assert ROLE in reading.message
        assert_secret_free(reading, caplog)


def test_right_password_reaches_the_missing_table(password_server: str) -> None:
    """The same role with its password gets through (and finds no task table in the maintenance db)."""
    reading = asyncio.run(probe_pools(password_server, {"pool": ProbeTarget()}))["pool"]
    assert isinstance(reading, ProbeError)
    assert reading.reason == "missing_table"


@contextlib.contextmanager
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never answers (a server that hangs)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError, OSError):
                accepted.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        listener.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("server", ["refused", "silent"])
def test_unreachable_server_is_a_connect_error_without_the_secret(
    server: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with contextlib.ExitStack() as stack:
        port = closed_port() if server == "refused" else stack.enter_context(silent_server())
        dsns = [
            f"host=127.0.0.1 port={port} dbname=app user=app password='{PASSWORD}'",
            f"postgresql://app:{PASSWORD.replace('@', '%40').replace('/', '%2F')}@127.0.0.1:{port}/app",
        ]
        for dsn in dsns:

            async def run(dsn: str = dsn) -> PoolDepth | ProbeError | None:
                async with ProbeHub(connect_timeout_seconds=1) as hub:
                    hub.register("pool", dsn, ProbeTarget())
                    await hub.tick(dsn)
                    return hub.latest("pool")

            started = time.monotonic()
            reading = asyncio.run(run())
            assert time.monotonic() - started < 15
            assert isinstance(reading, ProbeError)
            assert reading.reason == "connect"
            assert "database app at app@127.0.0.1" in reading.message
            expected = "Connection refused" if server == "refused" else "could not connect"
            assert expected.lower() in reading.message.lower() or "timeout" in reading.message.lower()
            assert_secret_free(reading, caplog)


@pytest.mark.parametrize(
    "dsn",
    [
        f"host=db password={PASSWORD} dbname",  # libpq echoes a malformed key=value DSN in its error
        f"postgresql://app:{PASSWORD}@db:notaport/app",
        f"postgresql://app:{PASSWORD}@db/app?bogus_option=1",
    ],
)
def test_invalid_dsn_is_refused_at_registration_without_the_secret(dsn: str) -> None:
    async def run() -> ProbeError:
        async with ProbeHub() as hub:
            with pytest.raises(ProbeError) as caught:
                hub.register("pool", dsn, ProbeTarget())
            assert hub.databases() == []
            return caught.value

    error = asyncio.run(run())
    assert error.reason == "connect"
    assert error.message.startswith("invalid database URL")
    assert "s3cr3t" not in error.message


def test_one_tick_feeds_every_pool_of_a_database_and_the_observer(
    migrated_database: demo_project.MigratedDatabase,
) -> None:
    insert(migrated_database.dsn, random_tasks(random.Random(3), datetime.now(UTC), 50))
    observed: list[tuple[float, ProbeError | None]] = []

    async def run() -> tuple[int, bool]:
        async with ProbeHub(on_probe=lambda s, e: observed.append((s, e))) as hub:
            hub.register("a", migrated_database.dsn, ProbeTarget(queues=("*",), cap=10))
            hub.register("b", migrated_database.url, ProbeTarget(queues=("emails",), cap=10))
            await hub.tick(migrated_database.dsn)
            first = depth(hub.latest("a")).probed_at
            assert isinstance(hub.latest("b"), PoolDepth)
            await hub.tick(migrated_database.url)
            advanced = depth(hub.latest("a")).probed_at > first
            await hub.unregister("a")
            assert hub.latest("a") is None
            await hub.unregister("b")
            return len(hub.databases()), advanced

    assert asyncio.run(run()) == (0, True)
    assert len(observed) == 2
    assert all(error is None and seconds > 0 for seconds, error in observed)


async def probe_connections(admin_dsn: str, dsn: str, expected: int) -> int:
    """The probe's server sessions on `dsn`'s database, waiting up to 10 s for `expected` (a closed
    connection's backend exits a moment after the client lets go)."""
    deadline = time.monotonic() + 10
    while True:
        async with await psycopg.AsyncConnection.connect(admin_dsn) as conn:
            cursor = await conn.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE application_name = 'taskpool-operator' AND datname = %s",
                [conninfo_to_dict(dsn)["dbname"]],
            )
            row = await cursor.fetchone()
        assert row is not None
        if int(row[0]) == expected or time.monotonic() > deadline:
            return int(row[0])
        await asyncio.sleep(0.1)


def test_a_rotated_secret_moves_the_pool_and_releases_the_old_connection(
    migrated_database: demo_project.MigratedDatabase, postgres_admin_dsn: str
) -> None:
    second = demo_project.clone_database(postgres_admin_dsn, migrated_database.dsn)
    try:

        async def run() -> None:
            async with ProbeHub() as hub:
                hub.register("pool", migrated_database.dsn, ProbeTarget(queues=("emails",)))
                assert isinstance(await hub.fresh("pool", 60), PoolDepth)
                assert await probe_connections(postgres_admin_dsn, migrated_database.dsn, 1) == 1
                # Same database, new target: the old reading no longer answers for it.
                hub.register("pool", migrated_database.dsn, ProbeTarget(queues=("reports",)))
                assert hub.latest("pool") is None
                reading = depth(await hub.fresh("pool", 60))
                assert [q.queue for q in reading.queues] == ["reports"]
                # Another database: the first one's connection is closed.
                hub.register("pool", second, ProbeTarget(queues=("reports",)))
                assert isinstance(await hub.fresh("pool", 60), PoolDepth)
                assert len(hub.databases()) == 1
                assert await probe_connections(postgres_admin_dsn, migrated_database.dsn, 0) == 0
                assert await probe_connections(postgres_admin_dsn, second, 1) == 1
                await hub.unregister("pool")
                assert await probe_connections(postgres_admin_dsn, second, 0) == 0

        asyncio.run(run())
    finally:
        postgres.drop_database(postgres_admin_dsn, second)


def test_a_connection_lost_between_ticks_is_replaced_without_a_failed_tick(
    migrated_database: demo_project.MigratedDatabase, postgres_admin_dsn: str
) -> None:
    """A server restart or failover kills the pooled connection; the next tick reconnects and succeeds."""
    observed: list[ProbeError | None] = []

    async def run() -> None:
        async with ProbeHub(on_probe=lambda _s, error: observed.append(error)) as hub:
            hub.register("pool", migrated_database.dsn, ProbeTarget())
            await hub.tick(migrated_database.dsn)
            async with await psycopg.AsyncConnection.connect(postgres_admin_dsn, autocommit=True) as admin:
                cursor = await admin.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE application_name = 'taskpool-operator' AND datname = %s",
                    [conninfo_to_dict(migrated_database.dsn)["dbname"]],
                )
                assert await cursor.fetchone() == (1,)
            await asyncio.sleep(0.2)
            await hub.tick(migrated_database.dsn)
            assert isinstance(hub.latest("pool"), PoolDepth)

    asyncio.run(run())
    assert observed == [None, None]
