"""How many lines a first `make demo` prints before the demo starts, on a fresh checkout with cold caches.

    make bench-demo_first_run        (tens of minutes: Kubernetes and Helm are compiled from scratch)

A new user clones the repository and runs `make demo`, which first builds everything it needs (the venv,
Helm 4, checkov, the Kubernetes binaries). This benchmark replays that: a `git clone` of this checkout's
committed HEAD into a scratch folder, with nothing reused from earlier runs: its own TASKPOOL_CACHE (so the
Go module and build caches, which live there, start empty), its own GOPATH, no pip cache and no .venv. It runs
the README's steps (`scripts/install-system-deps.sh`, then `make demo`) under `nice -n 19`, each prerequisite
as its own `make` target so every step has its own time and line count, then `make demo` itself under the
cluster lock (/tmp/taskpool-e2e.lock) until the demo starts: the line announcing the burst, when the cluster
is up, the chart installed and the pool Ready. The demo is then stopped like Ctrl+C and the scratch folder
deleted (`--keep` keeps it).

Counted lines are what the terminal shows (stdout and stderr). `make demo` after its prerequisites were built
prints their "already installed" lines again: they are counted too, so the total is an upper bound of a single
`make demo`'s. The baseline, from the same run: the lines of the build logs each step names ("full log: ..."),
which is what the terminal would show if the steps printed their tools' output. Writes
benchmarks/results/demo_first_run.json (goal: fewer than 200 lines), with the whole transcript. QUICK has no
effect: a first run cannot be shortened.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from benchmarks.common import ROOT, write_result
from scripts.demo import BURST_BANNER

GOAL_MAX_LINES = 200
CLUSTER_LOCK = Path("/tmp/taskpool-e2e.lock")
# Cold builds on a loaded 2-core machine take tens of minutes; a step past this is reported as failed.
STEP_TIMEOUT_S = 3 * 3600
DEMO_START_TIMEOUT_S = 1200
DEMO_STOP_TIMEOUT_S = 180


@dataclass
class Step:
    name: str
    command: list[str]
    seconds: float = 0.0
    exit_code: int | None = None
    lines: list[tuple[float, str]] = field(default_factory=list)  # (seconds since the step began, line)


def cold_environment(scratch: Path) -> dict[str, str]:
    """The environment of a machine that never built anything: every cache in the scratch folder, no venv."""
    env = dict(os.environ)
    env.pop("VIRTUAL_ENV", None)
    # Running under this checkout's .venv puts its bin first on PATH; find-python.sh would pick its python.
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if "/.venv/" not in p + "/")
    # The make variables: under `make bench-demo_first_run` they would make the user's make a sub-make.
    for name in ("PYTHONPATH", "TASKPOOL_CACHE", "GOCACHE", "GOMODCACHE", "PIP_CACHE_DIR", "KUBECONFIG"):
        env.pop(name, None)
    for name in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS", "MAKEOVERRIDES"):
        env.pop(name, None)
    env["TASKPOOL_CACHE"] = str(scratch / "cache")
    # The build scripts point the Go caches into TASKPOOL_CACHE themselves; these cover any other go call.
    env["GOPATH"] = str(scratch / "gopath")
    env["GOCACHE"] = str(scratch / "cache" / "go" / "build")
    env["GOMODCACHE"] = str(scratch / "cache" / "go" / "mod")
    env["PIP_NO_CACHE_DIR"] = "1"
    return env


def run_step(
    step: Step, cwd: Path, env: dict[str, str], transcript: Path, stop_at: str | None = None
) -> None:
    """Runs the step, recording every line it prints; with stop_at, interrupts it (Ctrl+C) after that line."""
    print(f"== {step.name}: {' '.join(step.command)}", flush=True)
    began = time.monotonic()
    process = subprocess.Popen(
        ["nice", "-n", "19", *step.command],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: Ctrl+C goes to make and everything under it
    )
    deadline = threading.Timer(
        DEMO_START_TIMEOUT_S if stop_at else STEP_TIMEOUT_S, os.killpg, (process.pid, signal.SIGINT)
    )
    deadline.daemon = True  # an interrupted benchmark exits without waiting for it
    deadline.start()
    assert process.stdout is not None
    with transcript.open("a") as out:
        for raw in process.stdout:
            line = raw.rstrip("\n")
            at = time.monotonic() - began
            step.lines.append((at, line))
            out.write(f"[{time.strftime('%H:%M:%S')} {step.name} +{at:7.1f}s] {line}\n")
            out.flush()
            if stop_at is not None and stop_at in line:
                step.seconds = at
                deadline.cancel()
                print(f"== {step.name}: the demo started after {at:.0f} s; stopping it (Ctrl+C)", flush=True)
                os.killpg(process.pid, signal.SIGINT)
                break
        if stop_at is not None:
            stop_demo(process, out)
    step.exit_code = process.wait()
    deadline.cancel()
    if not step.seconds:
        step.seconds = time.monotonic() - began
    print(f"== {step.name}: {len(step.lines)} lines, {step.seconds:.0f} s, exit {step.exit_code}", flush=True)


def stop_demo(process: subprocess.Popen[str], transcript: TextIO) -> None:
    """Waits for the interrupted demo to unwind (cluster, database, app); its shutdown is not counted."""
    try:
        rest, _ = process.communicate(timeout=DEMO_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        rest, _ = process.communicate()
    transcript.write("".join(f"[after the stop] {line}\n" for line in rest.splitlines()))


def log_lines(step: Step, cwd: Path) -> int:
    """Lines in the logs the step named (run-quietly.sh prints "(full log: PATH)"): its tools' own output."""
    marker = "(full log: "
    named = {cwd / line.split(marker, 1)[1].rstrip(")") for _, line in step.lines if marker in line}
    return sum(len(path.read_text(errors="replace").splitlines()) for path in named if path.is_file())


@contextlib.contextmanager
def cluster_lock() -> Iterator[float]:
    """Holds the lock every cluster user takes; yields how long it took to get it."""
    began = time.monotonic()
    with CLUSTER_LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield time.monotonic() - began


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--scratch", type=Path, default=Path("/tmp/taskpool-demo-first-run"), help="scratch folder (deleted)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (clone, caches, logs)")
    args = parser.parse_args()
    scratch: Path = args.scratch
    if scratch.exists():
        print(f"{scratch} exists: a first run needs an empty folder (delete it)", file=sys.stderr)
        return 2
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    repo = scratch / "repo"
    transcript = scratch / "terminal.log"
    scratch.mkdir(parents=True)
    load_before = load_average()
    began = time.monotonic()
    clone = Step("git clone", ["git", "clone", "--quiet", str(ROOT), str(repo)])
    run_step(clone, scratch, dict(os.environ), transcript)
    subprocess.run(["git", "checkout", "--quiet", commit], cwd=repo, check=True)
    env = cold_environment(scratch)
    # The README's steps, with make demo's prerequisites (in its order) as separate targets.
    steps = [
        Step("install-system-deps", ["scripts/install-system-deps.sh"]),
        Step("make venv", ["make", "venv"]),
        Step("make chart-tools", ["make", "chart-tools"]),
        Step("make k8s-binaries", ["make", "k8s-binaries"]),
    ]
    for step in steps:
        run_step(step, repo, env, transcript)
        if step.exit_code != 0:
            break
    demo = Step("make demo", ["make", "demo"])
    lock_wait_s = None
    if all(s.exit_code == 0 for s in steps):
        with cluster_lock() as lock_wait_s:
            run_step(demo, repo, env, transcript, stop_at=BURST_BANNER)
    steps.append(demo)
    started = any(BURST_BANNER in line for _, line in demo.lines)
    before_start = [line for s in steps for _, line in s.lines]
    if started:
        before_start = before_start[: next(i for i, line in enumerate(before_start) if BURST_BANNER in line)]
    du = subprocess.run(["du", "-sh", str(scratch / "cache")], check=False, capture_output=True, text=True)
    cache_size = du.stdout.split()
    figures = {
        "goal": f"a first make demo prints fewer than {GOAL_MAX_LINES} lines before the demo starts",
        "demo_start_line": BURST_BANNER,
        "demo_started": started,
        "lines_before_demo_start": len(before_start),
        "goal_met": started and len(before_start) < GOAL_MAX_LINES,
        "commit": commit,
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "cluster_lock_wait_s": None if lock_wait_s is None else round(lock_wait_s, 1),
        "wall_time_s": round(time.monotonic() - began - (lock_wait_s or 0), 1),
        "cold_cache_size": cache_size[0] if cache_size else None,
        "steps": [
            {
                "step": s.name,
                "command": " ".join(s.command),
                "seconds": round(s.seconds, 1),
                "exit_code": s.exit_code,
                "lines_printed": len(s.lines),
                "lines_in_its_build_logs": log_lines(s, repo),
            }
            for s in steps
        ],
        "clone_seconds": round(clone.seconds, 1),
        "transcript_before_demo_start": before_start,
    }
    write_result("demo_first_run", figures)
    if not args.keep:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0 if figures["goal_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
