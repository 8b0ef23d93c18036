"""KEDA's build (devcluster/kedabuild): cached per version, and only the benchmark asks for it."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "devcluster" / "kedabuild" / "build.sh"


def run_build(cache: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TASKPOOL_CACHE": str(cache)}
    return subprocess.run(
        [str(BUILD), *args], capture_output=True, text=True, env=env, check=False, timeout=60
    )


def test_binaries_live_in_the_cache_under_the_pinned_keda_version(tmp_path: Path) -> None:
    pinned = re.search(r"github\.com/kedacore/keda/v2 (v\S+)", (BUILD.parent / "go.mod").read_text())
    assert pinned is not None
    result = run_build(tmp_path, "--print-bindir")
    assert result.stdout.strip() == str(tmp_path / "keda" / pinned.group(1) / "bin")


def test_check_reports_a_missing_build_without_building(tmp_path: Path) -> None:
    result = run_build(tmp_path, "--check")
    assert result.returncode == 1
    assert not (tmp_path / "go").exists()


def make_plan(target: str) -> str:
    return subprocess.run(
        ["make", "-n", target], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    ).stdout


def test_only_the_keda_benchmark_builds_keda() -> None:
    assert "kedabuild/build.sh" not in make_plan("test-prereqs")
    assert "kedabuild/build.sh" in make_plan("bench-keda")
