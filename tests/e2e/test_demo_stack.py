"""`make demo` (scripts/demo.py): the whole stack on the local control plane, helm install to scale-back."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def test_demo_installs_the_chart_scales_with_the_burst_and_back_to_zero_and_a_schedule_wakes_it() -> None:
    # Inside the checkout, not under /tmp: the demo's PostgreSQL socket must stay visible to pods, which mount
    # a scratch /tmp of their own.
    output = ROOT / ".cache" / "demo-e2e"
    shutil.rmtree(output, ignore_errors=True)
    env = {**os.environ, "TASKPOOL_DEMO_OUTPUT": str(output)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    completed = subprocess.run(
        [sys.executable, "-m", "scripts.demo", "--timeout=240"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    out = completed.stdout
    assert completed.returncode == 0, out[-4000:] + completed.stderr[-4000:]
    assert "summary: 144/144 tasks finished" in out
    assert "operator running, pool 'demo' Ready" in out
    assert "ScaledUp:" in out
    assert "scaled back to zero pods" in out
    assert "schedule fired, pool woke from zero" in out
    assert "the scheduled task ran on a worker pod" in out
    assert "demo finished" in out
    timeline = output / "timeline.png"
    assert timeline.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    shutil.rmtree(output, ignore_errors=True)
