"""The local demo (`scripts/demo.py --local`): the whole burst finishes and the workers stop cleanly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from devdb import postgres

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_demo_processes_the_burst_and_stops_gracefully(postgres_admin_dsn: str) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": postgres.to_url(postgres_admin_dsn),
    }  # the demo makes its own database
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    completed = subprocess.run(
        [sys.executable, "-m", "scripts.demo", "--local", "--concurrency=2", "--timeout=240"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    out = completed.stdout
    assert "summary: 144/144 tasks finished" in out
    assert "taskpool_worker_processes: 2" in out
    assert "workers stopped gracefully on SIGTERM (exit code 0)" in out
    for queue in ("default", "emails", "reports"):
        assert f"\n{queue} " in out
