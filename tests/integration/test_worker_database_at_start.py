"""A worker or scheduler started while PostgreSQL is down waits for it instead of exiting (a pod would
crash-loop into ever longer restart delays); what waiting cannot fix ends the start at once, with one line
that names the problem and not the password. On a real PostgreSQL server, stopped and started again."""

from __future__ import annotations

import json
import signal
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from devdb import postgres
from devdb.demo_project import MigratedDatabase, enqueue, run_manage, task_rows, wait_until
from devdb.scheduler import SchedulerRun, schedules_env
from tests.support.django_db import WorkerRun

pytestmark = pytest.mark.integration

StartWorker = Callable[..., WorkerRun]
POD = "start-workers-7d9f8c6b5d-s7a7t"
PASSWORD = "hunter2-start-secret"  # asserted absent from every output
WAITING = "database unavailable, waiting for it before starting"
PASSWORD_ROLE = "taskpool_password_test"


def with_password(dsn: str, password: str = PASSWORD, **params: str) -> str:
    """The URL of `dsn` with a password (the test server trusts local clients: it is not checked)."""
    return postgres.to_url(make_conninfo(dsn, password=password, **params))


def get(port: int, path: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def assert_waiting_for_the_database(port: int, log: Callable[[], str]) -> None:
    """Waiting at start-up: not ready (no traffic, not counted by a rollout), alive (no restart)."""
    wait_until(lambda: WAITING in log(), 60, "the wait for the database")
    assert get(port, "/readyz") == (503, {"status": "failing", "reason": "waiting for the database"})
    assert get(port, "/healthz")[0] == 200


def test_a_worker_started_while_the_database_is_down_waits_for_it_then_runs_tasks(
    migrated_database: MigratedDatabase, postgres_admin_dsn: str, worker_runs: StartWorker
) -> None:
    db = migrated_database
    with postgres.stopped_server(postgres_admin_dsn):
        # POD_NAME: the start-up recovery of an earlier container's rows is part of what waits.
        run = worker_runs(with_password(db.dsn), "--interval=0.1", env={"POD_NAME": POD})
        assert_waiting_for_the_database(run.port, run.log)
        run.check_running()
    run.wait_ready()
    (task_id,) = enqueue(db.url, "noop")
    row = wait_until(
        lambda: (r := task_rows(db.dsn)[task_id])["status"] == "SUCCESSFUL" and r, 60, "the task"
    )
    assert row["worker_ids"] == [f"{POD}-0"]  # the first process of the first start: never restarted
    log = run.log()
    assert "database back after" in log
    assert log.count(WAITING) == 1  # one line for the outage, not one per attempt
    assert PASSWORD not in log
    assert "Traceback" not in log


def test_sigterm_while_waiting_for_the_database_at_start_exits_0_and_claims_nothing(
    migrated_database: MigratedDatabase, postgres_admin_dsn: str, worker_runs: StartWorker
) -> None:
    db = migrated_database
    (task_id,) = enqueue(db.url, "noop")
    with postgres.stopped_server(postgres_admin_dsn):
        run = worker_runs(db.url, "--concurrency=2", env={"POD_NAME": POD})
        wait_until(lambda: WAITING in run.log(), 60, "the wait for the database")
        run.signal(signal.SIGTERM)
        assert run.wait() == 0, run.log()
    row = task_rows(db.dsn)[task_id]
    assert (row["status"], row["worker_ids"]) == ("READY", [])
    log = run.log()
    assert "received Terminated while waiting for the database: exiting" in log
    assert "started worker process" not in log


@pytest.fixture
def password_role(postgres_admin_dsn: str) -> Iterator[str]:
    """A login role whose password the server checks (its own pg_hba.conf lines; the rest stay trusted),
    with the password PASSWORD; the role and the lines go afterwards."""
    with psycopg.connect(postgres_admin_dsn, autocommit=True) as admin:
        (hba_file,) = admin.execute("SHOW hba_file").fetchone() or ("",)
        hba = Path(hba_file)
        original = hba.read_text()
        lines = "".join(f"{kind} all {PASSWORD_ROLE} {where} scram-sha-256\n" for kind, where in HBA)
        hba.write_text(lines + original)
        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(PASSWORD_ROLE), sql.Literal(PASSWORD)
            )
        )
        admin.execute("SELECT pg_reload_conf()")
        try:
            yield PASSWORD_ROLE
        finally:
            hba.write_text(original)
            admin.execute("SELECT pg_reload_conf()")
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(PASSWORD_ROLE)))


HBA = [("local", ""), ("host", "127.0.0.1/32"), ("host", "::1/128")]


def test_the_password_role_is_checked(migrated_database: MigratedDatabase, password_role: str) -> None:
    """The fixture's premise: the right password gets in, so a refusal below is the wrong password's."""
    with psycopg.connect(make_conninfo(migrated_database.dsn, user=password_role, password=PASSWORD)) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (password_role,)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(make_conninfo(migrated_database.dsn, user=password_role, password="wrong-password"))


@pytest.mark.parametrize("command", ["taskpool_worker", "taskpool_scheduler"])
def test_a_wrong_password_ends_the_start_at_once_naming_the_problem_not_the_password(
    migrated_database: MigratedDatabase, password_role: str, command: str
) -> None:
    wrong = "wrong-" + PASSWORD
    url = with_password(migrated_database.dsn, wrong, user=password_role)
    completed = run_manage(url, command, "--metrics-port=0", timeout=60, check=False)
    output = completed.stdout + completed.stderr
    assert completed.returncode == 1, output
    assert f'password authentication failed for user "{password_role}"' in completed.stderr
    assert WAITING not in output  # at once: not one wait
    assert wrong not in output
    assert "Traceback" not in output


@pytest.mark.parametrize("command", ["taskpool_worker", "taskpool_scheduler"])
@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"dbname": "taskpool_no_such_database"}, 'database "taskpool_no_such_database" does not exist'),
        ({"user": "taskpool_no_such_role"}, 'role "taskpool_no_such_role" does not exist'),
    ],
)
def test_a_database_or_user_that_does_not_exist_ends_the_start_at_once(
    migrated_database: MigratedDatabase, params: dict[str, str], message: str, command: str
) -> None:
    completed = run_manage(
        with_password(migrated_database.dsn, **params), command, "--metrics-port=0", timeout=60, check=False
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 1, output
    assert "cannot use database 'default'" in completed.stderr
    assert message in completed.stderr
    assert WAITING not in output
    assert PASSWORD not in output
    assert "Traceback" not in output


def test_an_unmigrated_database_ends_the_scheduler_start_at_once(empty_database: str) -> None:
    """The worker's case is in test_worker_cli.py."""
    completed = run_manage(
        postgres.to_url(empty_database), "taskpool_scheduler", "--metrics-port=0", timeout=60, check=False
    )
    assert completed.returncode == 1, completed.stdout + completed.stderr
    assert "run `manage.py migrate` first" in completed.stderr
    assert WAITING not in completed.stdout + completed.stderr


def scheduler_started_while_the_database_is_down(dsn: str, tmp_path: Path) -> SchedulerRun:
    """A scheduler (one schedule, every second) started now, once waiting for the database."""
    schedules = {"tick": {"task": "taskpool_demo.tasks.noop", "every": 1}}
    run = SchedulerRun(with_password(dsn), log_path=tmp_path / "scheduler.log", env=schedules_env(schedules))
    try:
        assert_waiting_for_the_database(run.port, run.log)
        assert run.process.poll() is None, run.log()
    except BaseException:
        run.close()
        raise
    return run


def test_a_scheduler_started_while_the_database_is_down_waits_for_it_then_fires(
    migrated_database: MigratedDatabase, postgres_admin_dsn: str, tmp_path: Path
) -> None:
    dsn = migrated_database.dsn
    with postgres.stopped_server(postgres_admin_dsn):
        run = scheduler_started_while_the_database_is_down(dsn, tmp_path)
    try:
        wait_until(lambda: task_rows(dsn), 60, "a fire's task")
        wait_until(lambda: get(run.port, "/readyz")[0] == 200, 60, "the scheduler to be ready")
        log = run.log()
        assert "database back after" in log
        assert PASSWORD not in log
    finally:
        run.close()


def test_sigterm_while_the_scheduler_waits_for_the_database_at_start_exits_0_and_fires_nothing(
    migrated_database: MigratedDatabase, postgres_admin_dsn: str, tmp_path: Path
) -> None:
    dsn = migrated_database.dsn
    with postgres.stopped_server(postgres_admin_dsn):
        run = scheduler_started_while_the_database_is_down(dsn, tmp_path)
        try:
            run.process.send_signal(signal.SIGTERM)
            assert run.process.wait(60) == 0, run.log()
        finally:
            run.close()
    assert task_rows(dsn) == {}
