"""Bad flags and bad environments: a clear message and a non-zero exit, never a traceback wall."""

from __future__ import annotations

import json
import socket
import subprocess
from typing import Any

import pytest

from devdb import postgres
from devdb.demo_project import MigratedDatabase, run_manage
from taskpool_operator.probe.sql import TASK_TABLE

pytestmark = pytest.mark.integration

# Never reached by the parser errors: they fail before any connection.
UNUSED_URL = "postgresql://user:hunter2@127.0.0.1:9/nothing"


def worker(database_url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_manage(
        database_url, "taskpool_worker", "--metrics-port=0", *args, timeout=60, check=False, **env
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--concurrency=0"], "--concurrency: must be between 1 and 256"),
        (["--concurrency=two"], "--concurrency: must be a whole number"),
        (["--interval=-1"], "--interval: Must be zero or greater"),
        (["--max-tasks=0"], "--max-tasks: Must be greater than zero"),
        (["--shutdown-timeout=0"], "--shutdown-timeout: must be greater than zero"),
        (["--metrics-port=70000"], "--metrics-port: must be between 0 and 65535"),
        (["--backend=nope"], "--backend: The connection 'nope' doesn't exist"),
        (["--log-format=xml"], "--log-format: invalid choice"),
        (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
        (["--reload"], "never autoreloads"),
        (["--queue-name=emails", "--exclude-queues=reports"], "--exclude-queues can only be used with"),
        (["--worker-id= "], "--worker-id: must not be empty"),
    ],
)
def test_bad_flags(args: list[str], message: str) -> None:
    completed = worker(UNUSED_URL, *args)
    assert completed.returncode != 0
    assert message in completed.stderr
    assert "Traceback" not in completed.stderr


def test_missing_database_url() -> None:
    completed = worker("")
    assert completed.returncode == 1
    assert "DATABASE_URL is not set" in completed.stderr
    assert "Traceback" not in completed.stderr


def test_unmigrated_database_says_to_migrate(empty_database: str) -> None:
    completed = worker(postgres.to_url(empty_database))
    assert completed.returncode == 1
    assert f"the task table {TASK_TABLE} is missing" in completed.stderr
    assert "run `manage.py migrate` first" in completed.stderr
    assert "Traceback" not in completed.stderr


def test_metrics_port_in_use(migrated_database: MigratedDatabase) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        completed = worker(migrated_database.url, f"--metrics-port={port}", "--metrics-address=127.0.0.1")
    assert completed.returncode == 1
    assert f"cannot serve metrics on 127.0.0.1:{port}" in completed.stderr
    assert "Traceback" not in completed.stderr


SLOW = "taskpool_demo.tasks.slow"
FLAKY = "taskpool_demo.tasks.flaky"


@pytest.mark.parametrize(
    ("setting", "options", "message"),
    [
        ("TIME_LIMITS", {SLOW: {"time_limit": 5, "soft_time_limit": 10}}, "must be below time_limit"),
        ("TIME_LIMITS", {SLOW: {"timeout": 5}}, "keys time_limit and/or soft_time_limit"),
        ("RETRIES", {FLAKY: {"max_attempts": 0}}, "max_attempts must be a whole number"),
        ("RETRIES", {FLAKY: {"retry_on": ["no.such.Error"]}}, "cannot import 'no.such.Error'"),
        ("RETRIES", {FLAKY: {"attempts": 3}}, "unknown retry option(s) attempts"),
    ],
)
def test_a_bad_task_option_setting_is_refused_at_start(
    migrated_database: MigratedDatabase, setting: str, options: dict[str, Any], message: str
) -> None:
    """TASKPOOL_TIME_LIMITS and TASKPOOL_RETRIES (the demo project reads them from TASKPOOL_DEMO_*), checked
    before any task runs."""
    env = {f"TASKPOOL_DEMO_{setting}": json.dumps(options)}
    completed = worker(migrated_database.url, "--no-reload", **env)
    (path,) = options
    assert completed.returncode != 0
    assert f"TASKPOOL_{setting}[{path!r}]" in completed.stderr
    assert message in completed.stderr
    assert "Traceback" not in completed.stderr
