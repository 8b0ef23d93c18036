"""The supervisor: N worker processes, restarted with backoff, stopped gracefully within a deadline.

Shutdown (first SIGTERM/SIGINT/SIGQUIT to the supervisor): every worker gets one SIGTERM, stops claiming and
finishes its task. At `shutdown_timeout` any worker still running gets a second SIGTERM: django-tasks-db
raises SystemExit inside the task and stores it as FAILED (`builtins.SystemExit`), so the task is never left
RUNNING; `CUTOFF_GRACE_S` later a worker still alive is killed. A second signal to the supervisor skips
the wait. Exit code: 0 when every task finished by itself, 1 when tasks were cut off at the deadline.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from django_taskpool.child import child_main
from django_taskpool.config import LoopOptions, WorkerConfig
from django_taskpool.database import database_problem
from django_taskpool.heartbeat import Heartbeat
from django_taskpool.metrics import SupervisorCollector

logger = logging.getLogger("django_taskpool")

CUTOFF_GRACE_S = 5.0  # after the second SIGTERM: time to store the FAILED result before SIGKILL
FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 30.0
STABLE_AFTER_S = 60.0  # a worker that ran this long before crashing restarts after FIRST_BACKOFF_S again
SUPERVISOR_STALL_S = 30.0  # the supervisor's loop wakes every second; this long without a turn is a hang
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)


@dataclass
class Slot:
    """One process index: its current process (if any) and its restart state."""

    config: WorkerConfig
    heartbeat: Heartbeat
    process: BaseProcess | None = None
    spawned_at: float = 0.0
    restart_at: float | None = None
    backoff_s: float = FIRST_BACKOFF_S
    finished: bool = False  # exited by itself with 0 (--batch, --max-tasks): not restarted

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.exitcode is None


@contextlib.contextmanager
def runtime_directories() -> Iterator[tuple[Path, Path]]:
    """(metrics dir, heartbeat dir). The metrics dir is PROMETHEUS_MULTIPROC_DIR when set (emptied of stale
    files first and last), else a private folder; both are removed or emptied on exit."""
    root = Path(tempfile.mkdtemp(prefix="taskpool-worker-"))
    configured = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    metrics_dir = Path(configured) if configured else root / "metrics"
    heartbeat_dir = root / "heartbeat"

    def clear_metrics() -> None:
        for stale in glob.glob(str(metrics_dir / "*.db")):
            with contextlib.suppress(FileNotFoundError):
                os.remove(stale)

    metrics_dir.mkdir(parents=True, exist_ok=True)
    heartbeat_dir.mkdir()
    clear_metrics()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)  # inherited by the spawned workers
    try:
        yield metrics_dir, heartbeat_dir
    finally:
        clear_metrics()
        shutil.rmtree(root, ignore_errors=True)
        if not configured:
            os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)


class Supervisor:
    def __init__(
        self,
        options: LoopOptions,
        worker_ids: list[str],
        *,
        metrics_dir: Path,
        heartbeat_dir: Path,
        shutdown_timeout: float,
        heartbeat_timeout: float,
        database_alias: str,
    ) -> None:
        self._context = multiprocessing.get_context("spawn")
        self._slots = [
            Slot(
                config=WorkerConfig(
                    index=index,
                    worker_id=worker_id,
                    heartbeat_path=heartbeat_dir / f"process-{index}",
                    options=options,
                ),
                heartbeat=Heartbeat(heartbeat_dir / f"process-{index}"),
            )
            for index, worker_id in enumerate(worker_ids)
        ]
        self._metrics_dir = metrics_dir
        self._shutdown_timeout = shutdown_timeout
        self._heartbeat_timeout = heartbeat_timeout
        self._database_alias = database_alias
        self.restarts = 0
        self._last_turn = time.monotonic()
        self._signals: list[int] = []
        self._stopping_since: float | None = None
        self._cut_off_at: float | None = None
        self._tasks_cut_off = False
        self._wakeup_read, self._wakeup_write = socket.socketpair()
        self._wakeup_read.setblocking(False)
        self._wakeup_write.setblocking(False)

    # -- what the endpoints show -------------------------------------------------------------------------

    def registry(self) -> CollectorRegistry:
        registry = CollectorRegistry(auto_describe=False)
        MultiProcessCollector(registry, path=str(self._metrics_dir))  # type: ignore[no-untyped-call]
        registry.register(SupervisorCollector(restarts=lambda: self.restarts, processes=self.processes_alive))
        return registry

    def processes_alive(self) -> int:
        """Processes not yet reaped by the supervisor's loop (which happens the moment one exits)."""
        return sum(slot.process is not None for slot in self._slots)

    def liveness(self) -> tuple[bool, dict[str, Any]]:
        now = time.time()
        supervisor_ok = time.monotonic() - self._last_turn <= SUPERVISOR_STALL_S
        stopping = self._stopping_since is not None
        processes = []
        for slot in self._slots:
            pulse = slot.heartbeat.read()
            since_poll = now - pulse.last_poll
            process = slot.process  # read once: the supervisor's loop replaces it
            alive = process is not None and process.exitcode is None
            # While stopping, processes exit one by one and the deadline bounds the rest: failing liveness
            # then would only get the pod killed in the middle of its drain.
            ok = slot.finished or stopping or (alive and pulse.busy) or since_poll <= self._heartbeat_timeout
            processes.append(
                {
                    "index": slot.config.index,
                    "worker_id": slot.config.worker_id,
                    "pid": process.pid if alive and process is not None else None,
                    "alive": alive,
                    "busy": alive and pulse.busy,
                    "seconds_since_poll": round(since_poll, 3),
                    "ok": ok,
                }
            )
        healthy = supervisor_ok and all(process["ok"] for process in processes)
        return healthy, {"supervisor_ok": supervisor_ok, "processes": processes}

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        if self._stopping_since is not None:
            return False, {"reason": "shutting down"}
        problem = database_problem(self._database_alias, need_table=False)
        return problem is None, {"database": problem or "ok"}

    # -- running ---------------------------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        signal.set_wakeup_fd(self._wakeup_write.fileno(), warn_on_full_buffer=False)
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals.append(signum)

    def run(self) -> int:
        for slot in self._slots:
            self._spawn(slot)
        while True:
            self._last_turn = time.monotonic()
            self._handle_signals()
            self._reap()
            if self._stopping_since is not None:
                if not any(slot.alive for slot in self._slots):
                    break
                self._enforce_deadline()
            else:
                if all(slot.finished for slot in self._slots):
                    logger.info("every worker process finished its work")
                    break
                self._restart_due()
            self._sleep()
        return 1 if self._tasks_cut_off else 0

    def _spawn(self, slot: Slot) -> None:
        slot.heartbeat.reset(time.time())
        slot.process = self._context.Process(
            target=child_main, args=(slot.config,), name=f"worker-{slot.config.index}"
        )
        slot.process.start()
        slot.spawned_at = time.monotonic()
        slot.restart_at = None
        logger.info(
            "started worker process %s (pid %s, worker id %s)",
            slot.config.index,
            slot.process.pid,
            slot.config.worker_id,
        )

    def _reap(self) -> None:
        now = time.monotonic()
        for slot in self._slots:
            process = slot.process
            if process is None or process.exitcode is None:
                continue
            exit_code, pid = process.exitcode, process.pid
            pulse = slot.heartbeat.read()
            # Its live gauges go first: `processes` never drops while the dead one's in-progress still counts.
            if pid is not None:
                mark_process_dead(pid, str(self._metrics_dir))  # type: ignore[no-untyped-call]
            slot.process = None  # not closed: the endpoint thread may still be looking at it
            if self._stopping_since is not None:
                logger.info("worker process %s stopped (exit code %s)", slot.config.index, exit_code)
            elif exit_code == 0:
                slot.finished = True
                logger.info("worker process %s finished (exit code 0): not restarted", slot.config.index)
            else:
                ran_s = now - slot.spawned_at
                slot.backoff_s = FIRST_BACKOFF_S if ran_s >= STABLE_AFTER_S else slot.backoff_s
                slot.restart_at = now + slot.backoff_s
                logger.error(
                    "worker process %s (worker id %s) died with exit code %s after %.1fs%s; restart in %.0fs",
                    slot.config.index,
                    slot.config.worker_id,
                    exit_code,
                    ran_s,
                    " while running a task, which stays RUNNING until recovered" if pulse.busy else "",
                    slot.backoff_s,
                )
                slot.backoff_s = min(slot.backoff_s * 2, MAX_BACKOFF_S)

    def _restart_due(self) -> None:
        now = time.monotonic()
        for slot in self._slots:
            if slot.restart_at is not None and now >= slot.restart_at:
                self.restarts += 1
                self._spawn(slot)

    def _handle_signals(self) -> None:
        while self._signals:
            signum = self._signals.pop(0)
            if self._stopping_since is None:
                logger.info(
                    "received %s: workers finish their current tasks (at most %.0fs), then exit",
                    signal.strsignal(signum),
                    self._shutdown_timeout,
                )
                self._stopping_since = time.monotonic()
                self._signal_workers(signal.SIGTERM)
            elif self._cut_off_at is None:
                logger.warning("received %s again: interrupting running tasks now", signal.strsignal(signum))
                self._cut_off()

    def _enforce_deadline(self) -> None:
        assert self._stopping_since is not None
        now = time.monotonic()
        if self._cut_off_at is None and now - self._stopping_since >= self._shutdown_timeout:
            logger.warning(
                "shutdown timeout (%.0fs) reached: interrupting running tasks", self._shutdown_timeout
            )
            self._cut_off()
        elif self._cut_off_at is not None and now - self._cut_off_at >= CUTOFF_GRACE_S:
            for slot in self._slots:
                if slot.process is not None and slot.alive:
                    logger.error("worker process %s did not exit: killing it", slot.config.index)
                    slot.process.kill()

    def _cut_off(self) -> None:
        """A second SIGTERM: django-tasks-db stores the interrupted task as FAILED (SystemExit) and exits."""
        self._cut_off_at = time.monotonic()
        self._tasks_cut_off = any(slot.alive for slot in self._slots)
        self._signal_workers(signal.SIGTERM)

    def _signal_workers(self, signum: int) -> None:
        for slot in self._slots:
            if slot.process is not None and slot.alive and slot.process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.process.pid, signum)

    def _sleep(self) -> None:
        """Waits up to a second, waking at once when a worker exits or a signal arrives."""
        sentinels: list[Any] = [slot.process.sentinel for slot in self._slots if slot.process is not None]
        wait([*sentinels, self._wakeup_read], timeout=1.0)
        with contextlib.suppress(BlockingIOError):
            while self._wakeup_read.recv(4096):
                pass

    def close(self) -> None:
        signal.set_wakeup_fd(-1)
        for slot in self._slots:
            slot.heartbeat.close()
        self._wakeup_read.close()
        self._wakeup_write.close()
