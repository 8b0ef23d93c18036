"""`manage.py taskpool_scheduler` of the demo project, run in the background for tests and benchmarks."""

from __future__ import annotations

import json
import signal
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from devdb.demo_project import DJANGO_DIR, django_env, free_port, manage, stop_process


def schedules_env(schedules: dict[str, Any]) -> dict[str, str]:
    """The environment that replaces the demo project's schedules (TASKPOOL_DEMO_SCHEDULES)."""
    return {"TASKPOOL_DEMO_SCHEDULES": json.dumps(schedules)}


class SchedulerRun:
    def __init__(self, database_url: str, *args: str, log_path: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            manage("taskpool_scheduler", f"--metrics-port={self.port}", "--metrics-address=127.0.0.1", *args),
            env=django_env(database_url, **env),
            cwd=DJANGO_DIR,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def exposition(self) -> str:
        """The text of /metrics."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as response:
            return str(response.read().decode())

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample of /metrics by (name, sorted labels)."""
        text = self.exposition()
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def serving(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"scheduler exited ({self.process.returncode}):\n{self.log()}")
        try:
            self.metrics()
        except OSError:
            return False
        return True

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> int:
        stop_process(self.process)
        return self.process.returncode

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def close(self) -> None:
        stop_process(self.process)
        self._log.close()
