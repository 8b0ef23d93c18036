"""The Django side for tests: migrated databases, and the demo project's commands run for real.

Fixtures: `migrated_database` (a `MigratedDatabase` with `.dsn` and `.url`: the demo project's
`manage.py migrate` runs once per session into a template database and each test gets a copy, `CREATE
DATABASE ... TEMPLATE`, a fraction of a second instead of a migration run) and `worker_runs` (background
`taskpool_worker` processes, stopped after the test). Helpers: `enqueue` (demo tasks through `manage.py
enqueue_burst`), `task_rows`, `wait_until`, `free_port`, `run_manage` (any command; `manage`/`django_env` for
the argv and environment), `shell_json`; `standalone_migrated_database` for benchmarks and the demo.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row

from tests.support import postgres

ROOT = Path(__file__).resolve().parents[2]
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


@pytest.fixture(scope="session")
def migrated_template(postgres_admin_dsn: str) -> Iterator[str]:
    """DSN of a database migrated once per session; tests get copies of it, never it."""
    dsn = postgres.create_database(postgres_admin_dsn, prefix="taskpool_template")
    try:
        migrate(postgres.to_url(dsn))
        yield dsn
    finally:
        postgres.drop_database(postgres_admin_dsn, dsn)


@pytest.fixture
def migrated_database(postgres_admin_dsn: str, migrated_template: str) -> Iterator[MigratedDatabase]:
    """A fresh, fully migrated database (a copy of the session's template), dropped after the test."""
    dsn = clone_database(postgres_admin_dsn, migrated_template)
    yield MigratedDatabase(dsn=dsn, url=postgres.to_url(dsn))
    postgres.drop_database(postgres_admin_dsn, dsn)


@contextlib.contextmanager
def standalone_migrated_database(prefix: str) -> Iterator[MigratedDatabase]:
    """Outside pytest (benchmarks, the demo): a fresh, migrated database named `<prefix>_...`, on
    DATABASE_URL's server if set, else on an embedded PostgreSQL; dropped on the way out."""
    with postgres.postgres_server() as admin_dsn:
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
        rows = conn.execute("SELECT * FROM django_tasks_database_dbtaskresult").fetchall()
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


class WorkerRun:
    """`manage.py taskpool_worker` running in the background against a database, with its port and log."""

    def __init__(self, database_url: str, *args: str, log_path: Path, env: dict[str, str] | None = None):
        self.port = free_port()
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            manage(
                "taskpool_worker", "--no-reload", "--no-startup-delay", f"--metrics-port={self.port}", *args
            ),
            env=django_env(database_url, **(env or {})),
            cwd=DJANGO_DIR,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def get(self, path: str) -> tuple[int, str]:
        """(status, body) of GET http://127.0.0.1:<port><path>; (0, error) while nothing listens."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except (urllib.error.URLError, ConnectionError) as exc:
            return 0, str(exc)

    def health(self) -> dict[str, Any]:
        status, body = self.get("/healthz")
        return {"http_status": status, **json.loads(body)} if status else {"http_status": 0}

    def wait_ready(self, processes: int = 1, timeout: float = 60) -> None:
        """Waits until the endpoints answer and `processes` worker processes are polling."""

        def polling() -> bool:
            self.check_running()
            health = self.health()
            alive = [p for p in health.get("processes", []) if p["alive"] and p["seconds_since_poll"] < 5]
            return (
                health["http_status"] == 200
                and len(alive) == processes
                and self.log().count("Starting worker") >= processes
            )

        wait_until(polling, timeout, f"{processes} polling worker process(es)")

    def check_running(self) -> None:
        if self.process.poll() is not None:
            raise AssertionError(f"worker exited early ({self.process.returncode}):\n{self.log()}")

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float = 60) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"worker did not exit within {timeout}s:\n{self.log()}") from None

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def close(self) -> None:
        """Stops the worker if still running (SIGTERM, then SIGKILL) and closes the log."""
        stop_process(self.process)
        self._log.close()


@pytest.fixture
def worker_runs(tmp_path: Path) -> Iterator[Callable[..., WorkerRun]]:
    """Factory of background `taskpool_worker` runs; every run is stopped after the test."""
    runs: list[WorkerRun] = []

    def start(database_url: str, *args: str, env: dict[str, str] | None = None) -> WorkerRun:
        run = WorkerRun(database_url, *args, log_path=tmp_path / f"worker-{len(runs)}.log", env=env)
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.close()
