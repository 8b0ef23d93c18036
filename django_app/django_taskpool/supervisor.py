"""The supervisor: N worker processes, restarted with backoff, stopped gracefully within a deadline.

Shutdown (first SIGTERM/SIGINT/SIGQUIT to the supervisor): every worker gets one SIGTERM, stops claiming and
finishes its task. At `shutdown_timeout` any worker still running gets a second SIGTERM: django-tasks-db
raises SystemExit inside the task and stores it as FAILED (`builtins.SystemExit`), so the task is never left
RUNNING; `CUTOFF_GRACE_S` later a worker still alive is killed. A second signal to the supervisor skips
the wait. Exit code: 0 when every task finished by itself, 1 when tasks were cut off at the deadline.

A worker process that dies (crash, OOM kill, SIGKILL) is restarted under a new worker id
(`<pod>-<index>.<restart>`, django_taskpool.worker_ids), and at once (the process is known dead: no grace
period) the RUNNING rows last claimed by its old id are resolved (django_taskpool.recovery): FAILED with
`WorkerLost`, or READY again with `--on-worker-lost=requeue`. A process busy past its task's hard time limit
is killed, its task stored FAILED with `TimeLimitExceeded` whatever `--on-worker-lost` says (requeueing
would run it into the limit again), and it restarts at once. Before the first process starts, the rows an
earlier container of the same pod left RUNNING are resolved the same way (only when the pod's name is known
to be unique: `POD_NAME` or `--worker-id`). A recovery the database refuses is retried every
RECOVERY_RETRY_S until it succeeds.

Before anything of that, the supervisor waits for the database (django_taskpool.outage.wait_at_start): a pod
started during an outage waits it out instead of crash-looping, `/readyz` failing and `/healthz` passing
meanwhile; a stop signal then ends it at once (exit 0: nothing was started, nothing claimed). What waiting
cannot fix (credentials, a missing database or task table) ends it at once with `DatabaseNotUsable`.

With `--threads N` every process has N loops, each with its own worker id and heartbeat. A thread cannot be
stopped from outside, so a task over its hard time limit still costs its whole process: the overdue task is
stored FAILED `TimeLimitExceeded`, and the tasks its sibling threads were running are resolved like any
dead process's (`--on-worker-lost`, and their retry policy's `retry_interrupted`).
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
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType
from typing import Any

from django.db import DatabaseError, connections
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from django_taskpool import recovery
from django_taskpool.child import child_main
from django_taskpool.config import LoopOptions, WorkerConfig
from django_taskpool.database import check_usable, database_problem
from django_taskpool.exceptions import TimeLimitExceeded, WorkerLost
from django_taskpool.heartbeat import Heartbeat
from django_taskpool.metrics import SupervisorCollector, WithSupervisorCounts
from django_taskpool.outage import wait_at_start
from django_taskpool.recovery import LostAction, ResolvedTask
from django_taskpool.retries import Policies, jitter_draw
from django_taskpool.worker_ids import is_worker_of_pod, worker_ids

logger = logging.getLogger("django_taskpool")

CUTOFF_GRACE_S = 5.0  # after the second SIGTERM: time to store the FAILED result before SIGKILL
FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 30.0
STABLE_AFTER_S = 60.0  # a worker that ran this long before crashing restarts after FIRST_BACKOFF_S again
SUPERVISOR_STALL_S = 30.0  # the supervisor's loop wakes every second; this long without a turn is a hang
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
RECOVERY_RETRY_S = 5.0  # a recovery the database refused is tried again this often


@dataclass(frozen=True)
class DeadProcess:
    """A worker process that exited uncleanly: its RUNNING rows (if any) are still to be resolved."""

    index: int
    worker_ids: tuple[str, ...]
    exit_code: int
    killed_after_s: float | None = None  # set when the supervisor killed it for its task's hard time limit
    overdue_ids: tuple[str, ...] = ()  # the threads whose task was over its hard time limit

    @property
    def worker_id(self) -> str:
        return ", ".join(self.worker_ids)

    def cause(self) -> str:
        if self.exit_code < 0:
            return f"killed by {signal.Signals(-self.exit_code).name}"
        return f"exit code {self.exit_code}"


@dataclass
class Slot:
    """One process index: its current process (if any) and its restart state."""

    config: WorkerConfig
    heartbeats: list[Heartbeat]  # one per thread
    process: BaseProcess | None = None
    spawned_at: float = 0.0
    restart_at: float | None = None
    backoff_s: float = FIRST_BACKOFF_S
    finished: bool = False  # exited by itself with 0 (--batch, --max-tasks): not restarted
    restarts: int = 0  # of this index, in this supervisor's life: part of the worker id
    killed_after_s: float | None = None  # killed by the supervisor for the hard time limit, after this long
    overdue_ids: tuple[str, ...] = ()  # with killed_after_s: the worker ids over their hard time limit
    crashed: bool = False  # the last exit was a crash (counted in restarts), not a time-limit kill

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.exitcode is None

    def busy(self) -> bool:
        return any(heartbeat.read().busy for heartbeat in self.heartbeats)


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
        pod: str,
        concurrency: int,
        *,
        metrics_dir: Path,
        heartbeat_dir: Path,
        shutdown_timeout: float,
        heartbeat_timeout: float,
        database_alias: str,
        on_worker_lost: LostAction = LostAction.FAIL,
        recover_at_start: bool = True,
    ) -> None:
        self._context = multiprocessing.get_context("spawn")
        self._pod = pod
        self._backend = options.backend_name
        self._threads = options.threads
        self._slots = []
        for index in range(concurrency):
            paths = tuple(heartbeat_dir / f"process-{index}-{thread}" for thread in range(options.threads))
            config = WorkerConfig(
                index=index,
                worker_ids=worker_ids(pod, index, 0, options.threads),
                heartbeat_paths=paths,
                options=options,
            )
            self._slots.append(Slot(config=config, heartbeats=[Heartbeat(path) for path in paths]))
        self._on_worker_lost = on_worker_lost
        self._recover_at_start = recover_at_start
        self._dead: list[DeadProcess] = []
        self._recovery_due = 0.0
        self.tasks_lost: Counter[tuple[str, str, str, str]] = Counter()  # task, queue, backend, action
        self.time_limit_kills: Counter[tuple[str, str, str]] = Counter()  # task, queue, backend
        self.retries: Counter[tuple[str, str, str, str]] = Counter()  # task, queue, backend, outcome
        self._retry_policies = Policies()
        self._metrics_dir = metrics_dir
        self._shutdown_timeout = shutdown_timeout
        self._heartbeat_timeout = heartbeat_timeout
        self._database_alias = database_alias
        self.restarts = 0
        self._started = False  # the database answered at start-up and the worker processes were started
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
        processes = MultiProcessCollector(None, path=str(self._metrics_dir))  # type: ignore[no-untyped-call]
        registry.register(
            WithSupervisorCounts(
                processes,
                retries=lambda: dict(self.retries),
                tasks_lost=lambda: dict(self.tasks_lost),
                time_limit_kills=lambda: dict(self.time_limit_kills),
                lost_actions=[action.value for action in LostAction],
            )
        )
        registry.register(SupervisorCollector(restarts=lambda: self.restarts, processes=self.processes_alive))
        return registry

    def processes_alive(self) -> int:
        """Processes not yet reaped by the supervisor's loop (which happens the moment one exits)."""
        return sum(slot.process is not None for slot in self._slots)

    def liveness(self) -> tuple[bool, dict[str, Any]]:
        now = time.time()
        supervisor_ok = time.monotonic() - self._last_turn <= SUPERVISOR_STALL_S
        stopping = self._stopping_since is not None
        processes = []  # one entry per loop: per process, or per thread with --threads
        for slot in self._slots:
            config = slot.config  # read once: the supervisor's loop replaces it
            process = slot.process
            alive = process is not None and process.exitcode is None
            for thread, (heartbeat, worker) in enumerate(
                zip(slot.heartbeats, config.worker_ids, strict=True)
            ):
                pulse = heartbeat.read()
                since_poll = now - pulse.last_poll
                # While stopping, processes exit one by one and the deadline bounds the rest: failing liveness
                # then would only get the pod killed in the middle of its drain.
                ok = (
                    slot.finished
                    or stopping
                    or not self._started  # waiting for the database: a restart would only wait again
                    or (alive and pulse.busy)
                    or since_poll <= self._heartbeat_timeout
                )
                processes.append(
                    {
                        "index": config.index,
                        "thread": thread,
                        "worker_id": worker,
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
        if not self._started:
            return False, {"reason": "waiting for the database"}
        problem = database_problem(self._database_alias)
        return problem is None, {"database": problem or "ok"}

    # -- running ---------------------------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        signal.set_wakeup_fd(self._wakeup_write.fileno(), warn_on_full_buffer=False)
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals.append(signum)

    def run(self) -> int:
        if not wait_at_start(self._check_at_start, self._pause_at_start, self._keeps_starting):
            logger.info("stopped while waiting for the database: no worker process was started")
            return 0
        self._started = True
        for slot in self._slots:
            self._spawn(slot)
        while True:
            self._last_turn = time.monotonic()
            self._handle_signals()
            self._enforce_time_limits()
            self._reap()
            self._recover_dead()
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
        self._reap()  # a process that exited after this turn's reaping: its rows are to be resolved too
        self._recover_dead(retry_now=True)
        if self._dead:
            logger.error(
                "exiting with the RUNNING rows of dead worker ids %s unresolved (the next start of this pod "
                "resolves them, or the operator's orphan recovery once the pod is gone)",
                ", ".join(dead.worker_id for dead in self._dead),
            )
        return 1 if self._tasks_cut_off else 0

    def _check_at_start(self) -> None:
        check_usable(self._database_alias)
        if self._recover_at_start:
            self._recover_earlier_container()

    def _pause_at_start(self, seconds: float) -> None:
        """A wait for the database at start-up, ended early by a signal; the loop counts as turning."""
        self._last_turn = time.monotonic()
        wait([self._wakeup_read], timeout=seconds)
        with contextlib.suppress(BlockingIOError):
            while self._wakeup_read.recv(4096):
                pass
        self._last_turn = time.monotonic()

    def _keeps_starting(self) -> bool:
        while self._signals:
            logger.info(
                "received %s while waiting for the database: exiting", signal.strsignal(self._signals.pop(0))
            )
            self._stopping_since = time.monotonic()
        return self._stopping_since is None

    def _spawn(self, slot: Slot) -> None:
        for heartbeat in slot.heartbeats:
            heartbeat.reset(time.time())
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
            ", ".join(slot.config.worker_ids),
        )

    def _reap(self) -> None:
        now = time.monotonic()
        for slot in self._slots:
            process = slot.process
            if process is None or process.exitcode is None:
                continue
            exit_code, pid = process.exitcode, process.pid
            busy = slot.busy()
            # Its live gauges go first: `processes` never drops while the dead one's in-progress still counts.
            if pid is not None:
                mark_process_dead(pid, str(self._metrics_dir))  # type: ignore[no-untyped-call]
            slot.process = None  # not closed: the endpoint thread may still be looking at it
            killed_after_s, slot.killed_after_s = slot.killed_after_s, None
            overdue_ids, slot.overdue_ids = slot.overdue_ids, ()
            if exit_code != 0:
                self._dead.append(
                    DeadProcess(
                        slot.config.index, slot.config.worker_ids, exit_code, killed_after_s, overdue_ids
                    )
                )
                self._recovery_due = 0.0
            if killed_after_s is not None:
                logger.warning(
                    "worker process %s (worker id %s) killed: task over its hard time limit (%.1fs)%s",
                    slot.config.index,
                    ", ".join(overdue_ids),
                    killed_after_s,
                    "" if self._stopping_since is not None else "; restarting it now",
                )
                if self._stopping_since is None:
                    slot.restart_at = now
                    slot.crashed = False
            elif self._stopping_since is not None:
                logger.info("worker process %s stopped (exit code %s)", slot.config.index, exit_code)
            elif exit_code == 0:
                slot.finished = True
                logger.info("worker process %s finished (exit code 0): not restarted", slot.config.index)
            else:
                ran_s = now - slot.spawned_at
                slot.backoff_s = FIRST_BACKOFF_S if ran_s >= STABLE_AFTER_S else slot.backoff_s
                slot.restart_at = now + slot.backoff_s
                slot.crashed = True
                logger.error(
                    "worker process %s (worker id %s) died with exit code %s after %.1fs%s; restart in %.0fs",
                    slot.config.index,
                    ", ".join(slot.config.worker_ids),
                    exit_code,
                    ran_s,
                    f" while running a task (--on-worker-lost={self._on_worker_lost})" if busy else "",
                    slot.backoff_s,
                )
                slot.backoff_s = min(slot.backoff_s * 2, MAX_BACKOFF_S)

    def _restart_due(self) -> None:
        now = time.monotonic()
        for slot in self._slots:
            if slot.restart_at is not None and now >= slot.restart_at:
                if slot.crashed:
                    self.restarts += 1
                # A new id: the dead process's rows are told apart from the new process's claims.
                slot.restarts += 1
                slot.config = replace(
                    slot.config,
                    worker_ids=worker_ids(self._pod, slot.config.index, slot.restarts, self._threads),
                )
                self._spawn(slot)

    # -- hard time limits and recovery -------------------------------------------------------------------

    def _enforce_time_limits(self) -> None:
        now = time.monotonic()
        for slot in self._slots:
            process = slot.process
            if process is None or process.exitcode is not None or slot.killed_after_s is not None:
                continue
            pulses = [heartbeat.read() for heartbeat in slot.heartbeats]
            if not any(pulse.busy and 0 < pulse.deadline <= now for pulse in pulses):
                continue
            process.kill()
            process.join()
            # A thread may have moved on to another task between the reading and the kill: only a task that
            # is still the overdue one counts as over its limit (any other is a lost worker's task).
            overdue = [
                (worker, pulse)
                for worker, pulse, heartbeat in zip(
                    slot.config.worker_ids, pulses, slot.heartbeats, strict=True
                )
                if pulse.busy and 0 < pulse.deadline <= now and heartbeat.read() == pulse
            ]
            if overdue:
                slot.killed_after_s = time.time() - min(pulse.busy_since for _, pulse in overdue)
                slot.overdue_ids = tuple(worker for worker, _ in overdue)

    def _next_deadline(self) -> float | None:
        deadlines = [
            pulse.deadline
            for slot in self._slots
            if slot.alive
            for heartbeat in slot.heartbeats
            if (pulse := heartbeat.read()).busy and pulse.deadline > 0
        ]
        return min(deadlines, default=None)

    def _recover_earlier_container(self) -> None:
        """RUNNING rows whose last worker id is this pod's were left by an earlier container of the pod (none
        of this supervisor's processes runs yet). Refusing to start beats running beside them unresolved."""
        alias = self._database_alias
        try:
            ids = sorted(
                worker
                for worker in recovery.running_worker_ids(alias, self._backend)
                if is_worker_of_pod(worker, self._pod)
            )
            if ids:
                traceback = (
                    "WorkerLost: the worker stopped while running this task: the container of pod "
                    f"{self._pod} restarted (killed, OOM-killed or crashed), and the new container's "
                    "taskpool supervisor resolved the task at start-up "
                    f"(--on-worker-lost={self._on_worker_lost})"
                )
                self._record_lost(self._resolve_lost(ids, traceback))
        finally:
            connections[alias].close()

    def _recover_dead(self, *, retry_now: bool = False) -> None:
        now = time.monotonic()
        if not self._dead or (now < self._recovery_due and not retry_now):
            return
        alias = self._database_alias
        try:
            while self._dead:
                dead = self._dead[0]
                if dead.overdue_ids:
                    self._record_time_limit_kill(dead, self._resolve_time_limit(dead))
                    # Resolved: a retry of this recovery must not count them again.
                    self._dead[0] = dead = replace(dead, overdue_ids=())
                cause = (
                    "killed because a sibling thread's task ran past its hard time limit"
                    if dead.killed_after_s is not None
                    else dead.cause()
                )
                traceback = (
                    f"WorkerLost: worker process {dead.index} (worker id {dead.worker_id}) of pod "
                    f"{self._pod} died while running this task ({cause}), so the taskpool "
                    f"supervisor resolved the task (--on-worker-lost={self._on_worker_lost})"
                )
                # The overdue rows are FAILED already: the guarded UPDATE leaves them alone.
                self._record_lost(self._resolve_lost(list(dead.worker_ids), traceback))
                self._dead.pop(0)
        except DatabaseError as exc:
            self._recovery_due = now + RECOVERY_RETRY_S
            logger.error(  # noqa: TRY400 - one line: an outage is not a bug
                "cannot resolve the tasks of dead worker id(s) %s yet (retrying every %.0fs): %s",
                ", ".join(dead.worker_id for dead in self._dead),
                RECOVERY_RETRY_S,
                str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
            )
        finally:
            connections[alias].close()

    def _resolve_lost(self, worker_ids: list[str], traceback: str) -> list[ResolvedTask]:
        self._retry_interrupted(worker_ids, WorkerLost, traceback)
        if self._on_worker_lost is LostAction.REQUEUE:
            return recovery.requeue(self._database_alias, self._backend, worker_ids)
        return self._fail(worker_ids, WorkerLost, traceback)

    def _retry_interrupted(
        self, worker_ids: list[str], exception: type[BaseException], traceback: str
    ) -> None:
        """Retries the tasks whose policy says `retry_interrupted` and that have attempts left."""

        def delay_of(task_path: str, attempts: int) -> float | None:
            return self._retry_policies.of(task_path).delay_after(attempts, exception, jitter_draw())

        alias, backend = self._database_alias, self._backend
        retried = recovery.retry(
            alias, backend, worker_ids, exception=exception, traceback=traceback, delay_of=delay_of
        )
        for task in retried:
            self.retries[task.task_path, task.queue_name, task.backend_name, "retried"] += 1
            logger.warning(
                "task id=%s path=%s queue=%s outcome=retried cause=%s",
                task.id,
                task.task_path,
                task.queue_name,
                exception.__name__,
                extra={"task_id": task.id, "task_path": task.task_path, "queue": task.queue_name},
            )

    def _fail(
        self, worker_ids: list[str], exception: type[BaseException], traceback: str
    ) -> list[ResolvedTask]:
        failed = recovery.fail(self._database_alias, self._backend, worker_ids, exception, traceback)
        for task in failed:
            policy = self._retry_policies.of(task.task_path)
            if policy.retries and policy.retries_on(exception):
                self.retries[task.task_path, task.queue_name, task.backend_name, "exhausted"] += 1
        return failed

    def _resolve_time_limit(self, dead: DeadProcess) -> list[ResolvedTask]:
        traceback = (
            "TimeLimitExceeded: the task ran past its hard time limit, so the taskpool supervisor killed "
            f"worker process {dead.index} (worker id {', '.join(dead.overdue_ids)}) of pod {self._pod} after "
            f"{dead.killed_after_s or 0.0:.1f}s"
        )
        self._retry_interrupted(list(dead.overdue_ids), TimeLimitExceeded, traceback)
        return self._fail(list(dead.overdue_ids), TimeLimitExceeded, traceback)

    def _record_lost(self, resolved: list[ResolvedTask]) -> None:
        action = str(self._on_worker_lost)
        for task in resolved:
            self.tasks_lost[task.task_path, task.queue_name, task.backend_name, action] += 1
            logger.warning(
                "task id=%s path=%s queue=%s outcome=worker_lost action=%s",
                task.id,
                task.task_path,
                task.queue_name,
                action,
                extra={
                    "task_id": task.id,
                    "task_path": task.task_path,
                    "queue": task.queue_name,
                    "action": action,
                },
            )

    def _record_time_limit_kill(self, dead: DeadProcess, resolved: list[ResolvedTask]) -> None:
        for task in resolved:
            self.time_limit_kills[task.task_path, task.queue_name, task.backend_name] += 1
            logger.warning(
                "task id=%s path=%s queue=%s outcome=time_limit_exceeded duration=%.3fs",
                task.id,
                task.task_path,
                task.queue_name,
                dead.killed_after_s or 0.0,
                extra={"task_id": task.id, "task_path": task.task_path, "queue": task.queue_name},
            )

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
        """Waits up to a second (or until the next hard deadline or recovery retry), waking at once when a
        worker exits or a signal arrives."""
        sentinels: list[Any] = [slot.process.sentinel for slot in self._slots if slot.process is not None]
        timeout = 1.0
        deadline = self._next_deadline()
        if deadline is not None:
            timeout = min(timeout, max(0.0, deadline - time.monotonic()))
        if self._dead:
            timeout = min(timeout, max(0.0, self._recovery_due - time.monotonic()))
        wait([*sentinels, self._wakeup_read], timeout=timeout)
        with contextlib.suppress(BlockingIOError):
            while self._wakeup_read.recv(4096):
                pass

    def close(self) -> None:
        signal.set_wakeup_fd(-1)
        for slot in self._slots:
            for heartbeat in slot.heartbeats:
                heartbeat.close()
        self._wakeup_read.close()
        self._wakeup_write.close()
