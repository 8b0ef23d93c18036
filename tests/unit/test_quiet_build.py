"""Build steps print a few progress lines, never the compiler's package list (scripts/run-quietly.sh)."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUN_QUIETLY = ROOT / "scripts" / "run-quietly.sh"


def run_quietly(log: Path, total: int, script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(RUN_QUIETLY), "step", str(log), str(total), "bash", "-c", script],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_a_long_package_list_goes_to_the_log_and_a_few_progress_lines_to_the_terminal(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "step.log"
    result = run_quietly(log, 3000, "for i in $(seq 3000); do echo example.com/pkg/$i; done; sleep 1.5")
    assert result.returncode == 0
    lines = result.stderr.splitlines()
    assert lines[0] == f"step: started (full log: {log})"
    assert lines[-1].startswith("step: done in ")
    assert len(lines) <= 12
    assert "example.com/pkg" not in result.stderr + result.stdout
    assert log.read_text().count("example.com/pkg/") == 3000


def test_a_failure_shows_the_end_of_the_log_and_keeps_the_exit_status(tmp_path: Path) -> None:
    log = tmp_path / "step.log"
    result = run_quietly(log, 0, "for i in $(seq 100); do echo line $i; done; echo 'error: it broke'; exit 3")
    assert result.returncode == 3
    assert "step: FAILED (exit 3)" in result.stderr
    assert "error: it broke" in result.stderr
    assert "line 1\n" not in result.stderr  # only the end of the log
