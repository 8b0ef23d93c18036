"""The demo Django project (django_app/) run for real against a database, for tests, benchmarks and the demo.

`standalone_migrated_database` gives a fresh, migrated database (a `MigratedDatabase` with `.dsn` and `.url`).
Helpers: `enqueue` (demo tasks through `manage.py enqueue_burst`), `task_rows`, `wait_until`, `free_port`,
`stop_process`, `run_manage` (any command; `manage`/`django_env` for the argv and environment), `shell_json`,
`migrate`, `clone_database`. The pytest fixtures built on them live in tests/support/django_db.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row

from devdb import postgres
from taskpool_operator.probe.sql import TASK_TABLE

ROOT = Path(__file__).resolve().parents[1]
DJANGO_DIR = ROOT / "django_app"
MANAGE_PY = DJANGO_DIR / "manage.py"


@dataclass(frozen=True)
class MigratedDatabase:
    """A database with every migration of the demo project applied (django_tasks_db and django_taskpool)."""

    dsn: str  # libpq key=value form, for psycopg
    url: str  # postgresql:// form, for DATABASE_URL


def django_env(database_url: str, **extra: str) -> dict[str, str]:
    """The environment to run the demo project's manage.py against a database."""
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url,
        DJANGO_SETTINGS_MODULE="taskpool_demo.settings",
        PYTHONUNBUFFERED="1",
        TASKPOOL_DEMO_EMAIL_BACKEND="locmem",
    )
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(extra)
    return env


def manage(*args: str) -> list[str]:
    """The argv of `python manage.py ARGS` for the demo project."""
    return [sys.executable, str(MANAGE_PY), *args]


def run_manage(
    database_url: str, *args: str, timeout: float = 120, check: bool = True, **env: str
) -> subprocess.CompletedProcess[str]:
    """Runs `python manage.py ARGS` of the demo project against a database to completion (`env`: extra
    variables). With `check`, a non-zero exit raises RuntimeError with the end of its stderr."""
    completed = subprocess.run(
        manage(*args),
        env=django_env(database_url, **env),
        cwd=DJANGO_DIR,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and completed.returncode != 0:
        raise RuntimeError(
            f"manage.py {' '.join(args)} failed ({completed.returncode}):\n{completed.stderr[-4000:]}"
        )
    return completed


def migrate(database_url: str) -> None:
    run_manage(database_url, "migrate", "--no-input", "-v", "0", timeout=300)


def shell_json(database_url: str, script: str) -> Any:
    """Runs a Python script in the demo project's `manage.py shell`; returns the JSON its last line prints."""
    completed = run_manage(database_url, "shell", "-c", script)
    return json.loads(completed.stdout.strip().splitlines()[-1])


def clone_database(admin_dsn: str, template_dsn: str, prefix: str = "taskpool_test") -> str:
    """A new database copied from `template_dsn` (which must have no open connections)."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    template = str(conninfo_to_dict(template_dsn)["dbname"])
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template))
        )
    return postgres.with_database(admin_dsn, name)


@contextlib.contextmanager
def standalone_migrated_database(
    prefix: str, server_settings: Mapping[str, str] | None = None
) -> Iterator[MigratedDatabase]:
    """Outside pytest (benchmarks, the demo): a fresh, migrated database named `<prefix>_...`, on
    DATABASE_URL's server if set, else on an embedded PostgreSQL (started with `server_settings`); dropped on
    the way out."""
    with postgres.postgres_server(server_settings) as admin_dsn:
        dsn = postgres.create_database(admin_dsn, prefix=prefix)
        try:
            url = postgres.to_url(dsn)
            migrate(url)
            yield MigratedDatabase(dsn=dsn, url=url)
        finally:
            postgres.drop_database(admin_dsn, dsn)


# -- running the demo project's commands against a database ---------------------------------------------


def enqueue(database_url: str, task: str, count: int = 1, **options: object) -> list[str]:
    """Enqueues `count` demo tasks through `manage.py enqueue_burst`; returns their ids.
    Options are the command's flags (`duration=0.5`, `queue="emails"`, `failure_rate=1.0`...)."""
    flags = [f"--{key.replace('_', '-')}={value}" for key, value in options.items()]
    completed = run_manage(
        database_url, "enqueue_burst", "--json", f"--task={task}", f"--count={count}", *flags
    )
    return list(json.loads(completed.stdout))


def task_rows(dsn: str) -> dict[str, dict[str, Any]]:
    """Every row of the task table by id, as dicts (column -> value)."""
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        rows = conn.execute(f"SELECT * FROM {TASK_TABLE}").fetchall()
    return {str(row["id"]): row for row in rows}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until[T](check: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """The first truthy result of `check`, polled every `interval` seconds; AssertionError naming `what` (and
    the last result) once `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what} (last: {last!r})")
        time.sleep(interval)


def stop_process(process: subprocess.Popen[Any], timeout: float = 30) -> None:
    """Stops a child process if still running: SIGTERM, then SIGKILL after `timeout` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
