"""Command line for the local cluster (used by `make cluster-up`, `make cluster-down`, `make k8s-binaries`).

    python -m devcluster build              build the Kubernetes binaries once (cached)
    python -m devcluster up [--nodes N]     start a cluster in the background; prints the KUBECONFIG
    python -m devcluster down               stop it (every pod and process ends)
    python -m devcluster serve ...          the foreground process `up` starts (runs until SIGTERM)

The background cluster keeps its state in $TASKPOOL_CACHE/cluster (kubeconfig, logs, pod logs).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time

from devcluster import binaries
from devcluster.control_plane import ClusterError, LocalCluster

STATE_DIR = binaries.cache_root() / "cluster"
PID_FILE = STATE_DIR / "serve.pid"
READY_FILE = STATE_DIR / "serve.ready"


def _running_pid() -> int | None:
    try:
        pid = int(PID_FILE.read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def serve(nodes: int) -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with LocalCluster.start(nodes=nodes, state_dir=STATE_DIR) as cluster:
        READY_FILE.write_text(str(cluster.kubeconfig))
        stop.wait()
    READY_FILE.unlink(missing_ok=True)


def up(nodes: int) -> int:
    if (pid := _running_pid()) is not None:
        print(f"cluster already running (pid {pid}); export KUBECONFIG={STATE_DIR / 'kubeconfig'}")
        return 0
    binaries.require()
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    READY_FILE.unlink(missing_ok=True)
    with (STATE_DIR / "serve.log").open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "devcluster", "serve", "--nodes", str(nodes)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    PID_FILE.write_text(str(proc.pid))
    deadline = time.monotonic() + 180
    while not READY_FILE.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            print((STATE_DIR / "serve.log").read_text(errors="replace")[-3000:], file=sys.stderr)
            print("cluster failed to start (log above)", file=sys.stderr)
            return 1
        time.sleep(0.3)
    print(f"cluster running (pid {proc.pid}); export KUBECONFIG={STATE_DIR / 'kubeconfig'}")
    print(f"kubectl of the same release: {binaries.kubectl()}")
    print(
        f"pod logs: {STATE_DIR / 'pods'}; component logs: {STATE_DIR / 'logs'}; stop with: make cluster-down"
    )
    return 0


def down() -> int:
    pid = _running_pid()
    if pid is None:
        print("no cluster running")
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            break
        time.sleep(0.3)
    else:
        os.kill(pid, signal.SIGKILL)  # its children die with it (parent-death signal)
    PID_FILE.unlink(missing_ok=True)
    print("cluster stopped")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m devcluster", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build")
    for name in ("up", "serve"):
        sub.add_parser(name).add_argument("--nodes", type=int, default=1)
    sub.add_parser("down")
    args = parser.parse_args()
    try:
        if args.command == "build":
            print(binaries.build())
            return 0
        if args.command == "up":
            return up(args.nodes)
        if args.command == "serve":
            serve(args.nodes)
            return 0
        return down()
    except (ClusterError, binaries.BinariesMissing) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
