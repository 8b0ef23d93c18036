"""The demo app's JSON API, served by `manage.py runserver` on a migrated database."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devdb.demo_project import (
    DJANGO_DIR,
    MigratedDatabase,
    django_env,
    free_port,
    manage,
    run_manage,
    task_rows,
    wait_until,
)

pytestmark = pytest.mark.integration


def call(url: str, body: Any = None, raw: bytes | None = None) -> tuple[int, dict[str, Any]]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture
def app(migrated_database: MigratedDatabase, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    with (tmp_path / "app.log").open("wb") as log:
        process = subprocess.Popen(
            manage("runserver", "--noreload", f"127.0.0.1:{port}"),
            env=django_env(migrated_database.url),
            cwd=DJANGO_DIR,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"

        def answers() -> bool:
            try:
                urllib.request.urlopen(f"{url}/healthz", timeout=2).close()
            except OSError:
                assert process.poll() is None, (tmp_path / "app.log").read_text()
                return False
            return True

        wait_until(answers, 60, "the demo app")
        yield url
        process.terminate()
        process.wait(30)


def test_burst_then_status_and_counts(app: str, migrated_database: MigratedDatabase) -> None:
    status, answer = call(
        f"{app}/api/tasks/burst",
        {"task": "report", "count": 3, "duration": 0.1, "priority": 5, "run_after": 3600},
    )
    assert status == 201
    assert (answer["enqueued"], answer["task"], answer["queue"]) == (
        3,
        "taskpool_demo.tasks.build_report",
        "reports",
    )
    rows = task_rows(migrated_database.dsn)
    assert sorted(rows) == sorted(answer["ids"])
    assert {row["priority"] for row in rows.values()} == {5}
    assert all(row["args_kwargs"]["kwargs"]["duration"] == 0.1 for row in rows.values())

    status, detail = call(f"{app}/api/tasks/{answer['ids'][0]}")
    assert status == 200
    assert detail["status"] == "READY"
    assert detail["queue"] == "reports"
    assert detail["run_after"] is not None
    assert detail["return_value"] is None
    assert detail["errors"] == []

    call(f"{app}/api/tasks/burst", {"task": "email", "count": 2})
    status, snapshot = call(f"{app}/api/counts")
    assert status == 200
    assert snapshot["queues"]["reports"] == {"READY": 3, "RUNNING": 0, "SUCCESSFUL": 0, "FAILED": 0}
    assert snapshot["queues"]["emails"]["READY"] == 2
    assert snapshot["queues"]["default"]["READY"] == 0
    assert snapshot["totals"]["READY"] == 5


def test_finished_task_shows_result_and_errors(app: str, migrated_database: MigratedDatabase) -> None:
    _, ok = call(f"{app}/api/tasks/burst", {"task": "slow", "duration": 0})
    _, bad = call(f"{app}/api/tasks/burst", {"task": "flaky", "failure_rate": 1})
    run_manage(migrated_database.url, "taskpool_worker", "--batch", "--no-startup-delay", "--metrics-port=0")
    _, detail = call(f"{app}/api/tasks/{ok['ids'][0]}")
    assert (detail["status"], detail["return_value"]) == ("SUCCESSFUL", 0)
    assert detail["worker_ids"]
    assert detail["started_at"] <= detail["finished_at"]
    _, detail = call(f"{app}/api/tasks/{bad['ids'][0]}")
    assert detail["status"] == "FAILED"
    assert detail["errors"][0]["exception_class_path"] == "taskpool_demo.tasks.FlakyTaskError"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"task": "nope"}, "task must be one of"),
        ({"count": 0}, "count must be between 1 and 10000"),
        ({"count": "3"}, "count must be a whole number"),
        ({"queue": "nope"}, "Queue 'nope' is not valid"),
        ({"priority": 101}, "priority must be between -100 and 100"),
        ({"duration": -1}, "duration must be between 0 and 3600"),
        ({"run_after": "tomorrow"}, "run_after must be seconds from now or an ISO 8601"),
        ({"run_after": "2030-01-01T00:00:00"}, "with a timezone"),
        ([1, 2], "the body must be a JSON object"),
    ],
)
def test_bad_bursts_are_rejected_and_enqueue_nothing(
    app: str, migrated_database: MigratedDatabase, body: Any, message: str
) -> None:
    status, answer = call(f"{app}/api/tasks/burst", body)
    assert status == 400
    assert message in answer["error"]
    assert task_rows(migrated_database.dsn) == {}


def test_invalid_json_and_unknown_task(app: str) -> None:
    status, answer = call(f"{app}/api/tasks/burst", raw=b"{not json")
    assert status == 400
    assert "not valid JSON" in answer["error"]
    status, answer = call(f"{app}/api/tasks/00000000-0000-0000-0000-000000000000")
    assert status == 404
    status, answer = call(f"{app}/api/tasks/not-a-uuid")
    assert status == 404
