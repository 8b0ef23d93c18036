"""pytest fixtures for the demo Django project (helpers: devdb/demo_project.py).

Fixtures: `migrated_database` (a `MigratedDatabase` with `.dsn` and `.url`: the demo project's
`manage.py migrate` runs once per session into a template database and each test gets a copy, `CREATE
DATABASE ... TEMPLATE`, a fraction of a second instead of a migration run) and `worker_runs` (background
`taskpool_worker` processes, stopped after the test). `WorkerRun`: one such process, its port and log.
"""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devdb import postgres
from devdb.demo_project import (
    DJANGO_DIR,
    MigratedDatabase,
    clone_database,
    django_env,
    free_port,
    manage,
    migrate,
    stop_process,
    wait_until,
)


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
