"""One worker process: django-tasks-db's own `Worker` loop, with a heartbeat, metrics and a safe stop.

The claim logic is upstream's, untouched. This subclass only
- records a heartbeat on every turn of the loop (the loop reads `self.running` once at the top of a turn
  and once before it sleeps, so `running` is a property that notes both),
- marks the process busy while a task runs (for `/healthz` and the in-progress gauge),
- on the first SIGTERM/SIGINT/SIGQUIT stops claiming and exits at once only when that is safe: while the loop
  sleeps. Upstream exits at once whenever no task is running, which can land between the commit of a claim
  and the start of the task, leaving the row RUNNING forever. Here a signal inside a turn lets the turn
  finish (a task it claimed runs to completion) and the loop then ends by itself.
- A second signal is upstream's: `SystemExit(1)` raised inside the running task, stored as FAILED.
- applies the task's time limits (django_taskpool.time_limits): the hard deadline goes into the heartbeat for
  the supervisor to enforce, the soft one arms an alarm for the duration of the task. A task without limits
  arms nothing.
- applies the task's retry policy (django_taskpool.retries): a failure that may retry is written as the row
  going back to READY with its `run_after` (one UPDATE, in place of upstream's FAILED write).
- with `--notify`, ends its idle sleep when a task becomes READY (django_taskpool.wakeup): upstream's loop
  gets `interval=0` and the wait happens in `running`'s read before that zero sleep, bounded by the interval.
- waits out a database outage (django_taskpool.outage) instead of exiting: a finished task's result is kept
  and written once the database is back (its hard time limit no longer applies: the task is over), and a
  loop that lost the database while claiming waits for it, then enters upstream's loop again. A claim whose
  COMMIT the outage cut off may have committed: such a row (RUNNING under this loop's worker id) is run
  first, since nothing else would ever resolve it while this process lives.
- a stop (SIGTERM) while a result waits for the database lets the wait go on until the shutdown cut-off (the
  second signal, `--shutdown-timeout` after the first): a database back by then gets the result and the
  process exits 0. At the cut-off the write is abandoned (not turned into a FAILED SystemExit: the task
  succeeded or failed by itself), one line says the row stays RUNNING, and the process exits 1, which makes
  its supervisor try to resolve the row (`--on-worker-lost`) before the pod exits; failing that, the
  operator's orphan recovery does once the pod is gone.

With `--threads N` a process runs N such loops in threads (`run_threads`): each has its own worker id,
heartbeat and database connection (Django's connections are per thread); the main thread only waits and
handles signals: the first stops every loop after its current task, the second raises SystemExit in every
thread still running a task (stored FAILED, as upstream does with one loop). With `--notify` each loop
listens on a connection of its own. Each loop waits out a database outage on its own.
"""

from __future__ import annotations

import datetime
import functools
import logging
import os
import random
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from types import FrameType
from typing import Any

from django.db import connections
from django.tasks import TaskResultStatus
from django.utils import timezone
from django.utils.module_loading import import_string
from django_tasks_db.management.commands.db_worker import Worker
from django_tasks_db.models import DBTaskResult
from django_tasks_db.utils import retry as retry_locked_writes
from prometheus_client import Gauge

from django_taskpool import logs
from django_taskpool.config import WorkerConfig
from django_taskpool.database import database_alias
from django_taskpool.exceptions import class_path
from django_taskpool.heartbeat import Heartbeat
from django_taskpool.metrics import TaskMetrics, connect_receivers
from django_taskpool.outage import DATABASE_GONE, WriteAbandoned, store_until_done, wait_until_reachable
from django_taskpool.retries import Policies, RetryPolicy, jitter_draw
from django_taskpool.time_limits import (
    SoftLimit,
    SoftTimeLimitAlarm,
    ThreadSoftTimeLimit,
    TimeLimits,
    configured_limits,
    raise_in_thread,
    resolve,
)
from django_taskpool.wakeup import ReadyListener

logger = logging.getLogger("django_taskpool")
PAUSE_SLICE_S = 0.1


class TaskpoolWorker(Worker):
    def __init__(
        self,
        *,
        label: str,
        heartbeat: Heartbeat,
        metrics: TaskMetrics,
        default_time_limit: float | None,
        threaded: bool = False,
        listener: ReadyListener | None = None,
        **kwargs: Any,
    ) -> None:
        self._heartbeat = heartbeat
        self._metrics = metrics
        self._configured_limits = configured_limits()
        self._retry_policies = Policies()
        self._default_time_limit = default_time_limit
        self._limits: dict[str, TimeLimits] = {}  # by task path: fixed for the life of the process
        self._soft_limit_labels: tuple[str, str, str] = ("", "", "")
        self._soft_alarm: SoftLimit = (
            ThreadSoftTimeLimit(self._on_soft_limit) if threaded else SoftTimeLimitAlarm(self._on_soft_limit)
        )
        self.thread_id: int | None = None  # set by the thread running the loop (`--threads`)
        self._poll_gauge = metrics.last_poll.labels(process=label)
        self._parent_pid = os.getppid()
        # True between turns of the loop (sleeping, or not started yet): the only time exiting is safe.
        self._between_turns = True
        self._running = True
        self._poll_gauge_set_at = 0.0
        self._in_progress: dict[tuple[str, str], Gauge] = {}
        self._listener = listener
        self._alias = database_alias()
        self._idle_wait = float(kwargs["interval"])
        self._ran_task = False  # in this turn of the loop
        if listener is not None:
            kwargs["interval"] = 0.0  # the wait happens in `running`, ended early by a notification
        super().__init__(**kwargs)

    def run(self) -> None:
        if self._listener is not None and self.startup_delay:
            time.sleep(random.random())  # noqa: S311 - upstream's thundering-herd delay, skipped at interval 0
        try:
            self._run_through_outages()
        finally:
            if self._listener is not None:
                self._listener.close()

    def _run_through_outages(self) -> None:
        """Upstream's loop; after a database outage ended it, the same loop again once the database is back
        (a stop requested meanwhile ends it instead)."""
        outage: BaseException | None = None
        while True:
            try:
                if outage is not None:
                    self._between_turns = True  # the turn the outage cut short is over
                    if not wait_until_reachable(self._alias, outage, self._pause, self._keeps_running):
                        return
                    self._run_cut_off_claims()
                super().run()
            except DATABASE_GONE as exc:
                outage = exc
                self.startup_delay = False  # a delay is for the first start of a pool's workers only
            else:
                return

    def _run_cut_off_claims(self) -> None:
        """Runs the rows RUNNING under this loop's worker id: claims whose COMMIT an outage cut off, yet
        committed. This loop runs no task now, and none of them started."""
        self._between_turns = False  # a stop signal now lets these tasks run, as inside a turn
        claimed = DBTaskResult.objects.running().filter(
            backend_name=self.backend_name, worker_ids__contains=[self.worker_id]
        )
        for row in claimed:
            if row.worker_ids[-1] == self.worker_id:
                logger.warning("task id=%s was claimed as the database went away: running it now", row.id)
                self.run_task(row)
        self._between_turns = True

    def _pause(self, seconds: float) -> None:
        """A wait during a database outage: the heartbeat goes on (waiting for the database is no hang).
        In slices, because the shutdown cut-off's SystemExit reaches a thread (`--threads`) only between two
        Python instructions, not inside a sleep: it lands within a slice, well before the cut-off's kill."""
        self._heartbeat.poll(time.time())
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            time.sleep(min(left, PAUSE_SLICE_S))
        self._heartbeat.poll(time.time())

    def _keeps_running(self) -> bool:
        self._notice_supervisor_gone()
        return self._running

    def _notice_supervisor_gone(self) -> None:
        if os.getppid() != self._parent_pid and self._running:
            logger.warning("supervisor %s is gone: stopping after the current turn", self._parent_pid)
            self._running = False

    @property
    def running(self) -> bool:
        self._between_turns = not self._between_turns
        now = time.time()
        self._heartbeat.poll(now)
        # The gauge is for dashboards: once a second is precise enough and halves the loop's overhead.
        if now - self._poll_gauge_set_at >= 1.0:
            self._poll_gauge.set(now)
            self._poll_gauge_set_at = now
        self._notice_supervisor_gone()
        if not self._between_turns:
            self._ran_task = False
        elif self._listener is not None and self._running and not self._ran_task:
            self._listener.wait(self._idle_wait)  # upstream's sleep of this turn, ended by a notification
        return self._running

    @running.setter
    def running(self, value: bool) -> None:
        self._running = value

    def shutdown(self, signum: int, frame: FrameType | None) -> None:
        if not self._running:
            logger.warning("received %s again: interrupting the current task", signal.strsignal(signum))
            self.reset_signals()
            sys.exit(1)
        logger.info("received %s: finishing the current task, then exiting", signal.strsignal(signum))
        self._running = False
        if self._between_turns and not self.running_task:
            sys.exit(0)

    def run_task(self, db_task_result: DBTaskResult[..., Any]) -> None:
        self._ran_task = True
        limits = self._limits_of(db_task_result.task_path)
        policy = self._retry_policies.of(db_task_result.task_path)
        busy_since = time.time()
        # Upstream's run_task stores the outcome through `set_successful` or `set_failed`: this row's wait out
        # a database outage, and with a retry policy its failure decides between FAILED and a retry (the
        # class's methods stay upstream's: only this instance is changed).
        store_failure = (
            functools.partial(self._store_failure, db_task_result, policy)
            if policy.retries
            else db_task_result.set_failed
        )
        db_task_result.set_successful = self._durable(
            db_task_result, db_task_result.set_successful, busy_since
        )
        db_task_result.set_failed = self._durable(db_task_result, store_failure, busy_since)
        self._heartbeat.busy(busy_since, time.monotonic() + limits.hard if limits.hard else 0.0)
        if limits.soft:
            self._soft_limit_labels = (
                db_task_result.task_path,
                db_task_result.queue_name,
                db_task_result.backend_name,
            )
            self._soft_alarm.arm(limits.soft)
        key = (db_task_result.queue_name, db_task_result.backend_name)
        in_progress = self._in_progress.get(key)
        if in_progress is None:
            in_progress = self._in_progress[key] = self._metrics.in_progress.labels(*key)
        in_progress.inc()
        try:
            super().run_task(db_task_result)
        finally:
            if limits.soft:
                self._soft_alarm.disarm()
            in_progress.dec()
            self._heartbeat.idle()

    def _durable[A](
        self, row: DBTaskResult[..., Any], write: Callable[[A], None], busy_since: float
    ) -> Callable[[A], None]:
        """`write` (of the task's outcome), repeated until stored across a database outage."""

        def store(outcome: A) -> None:
            if isinstance(outcome, WriteAbandoned):
                raise outcome  # upstream's run_task offers the abandoned write to `set_failed`: none to store
            # The task is over: its hard time limit no longer applies while its result is written.
            self._heartbeat.busy(busy_since)
            try:
                store_until_done(
                    functools.partial(write, outcome),
                    self._alias,
                    f"the result of task id={row.id}",
                    self._pause,
                )
            except WriteAbandoned as abandoned:
                logger.error(  # noqa: TRY400 - one line: an outage is not a bug
                    "shutdown cut-off after %.1fs without the database: the result of task id=%s is not "
                    "stored and its row stays RUNNING under worker id %s (resolved as a lost worker's task: "
                    "by the supervisor if the database answers before the pod exits, else by the operator's "
                    "orphan recovery once the pod is gone)",
                    abandoned.waited_s,
                    row.id,
                    self.worker_id,
                    extra={"task_id": str(row.id), "task_path": row.task_path},
                )
                raise

        return store

    def _limits_of(self, task_path: str) -> TimeLimits:
        limits = self._limits.get(task_path)
        if limits is None:
            try:
                task = import_string(task_path)
            except ImportError:
                task = None  # upstream's run_task stores the import error as the task's failure
            limits = resolve(task, self._configured_limits.get(task_path), self._default_time_limit)
            self._limits[task_path] = limits
        return limits

    def _on_soft_limit(self) -> None:
        self._metrics.soft_time_limits.labels(*self._soft_limit_labels).inc()

    def _store_failure(self, row: DBTaskResult[..., Any], policy: RetryPolicy, exc: BaseException) -> None:
        """FAILED (upstream's write), or with an attempt left READY again after the backoff: one UPDATE, so a
        caller never sees the row FAILED in between. The attempt's error stays on the READY row."""
        labels = (row.task_path, row.queue_name, row.backend_name)
        delay = policy.delay_after(len(row.worker_ids), type(exc), jitter_draw())
        if delay is None:
            DBTaskResult.set_failed(row, exc)
            if policy.retries_on(type(exc)):
                self._metrics.retries.labels(*labels, "exhausted").inc()
            return
        _store_retry(row, exc, delay)
        self._metrics.retries.labels(*labels, "retried").inc()
        logger.info(
            "task id=%s path=%s attempt %s failed (%s): retry after %.3fs",
            row.id,
            row.task_path,
            len(row.worker_ids),
            type(exc).__qualname__,
            delay,
            extra={"task_id": str(row.id), "task_path": row.task_path, "retry_in_s": delay},
        )


@retry_locked_writes()
def _store_retry(row: DBTaskResult[..., Any], exc: BaseException, delay: float) -> None:
    row.status = TaskResultStatus.READY
    row.run_after = timezone.now() + datetime.timedelta(seconds=delay)
    row.finished_at = None
    row.return_value = None
    row.exception_class_path = class_path(type(exc))
    row.traceback = "".join(traceback.format_exception(exc))
    row.save(
        update_fields=[
            "status",
            "run_after",
            "finished_at",
            "return_value",
            "exception_class_path",
            "traceback",
        ]
    )


def thread_label(index: int, thread: int, threads: int) -> str:
    """The `process` label of a loop's metrics: the process index, with `_<thread>` when it has threads."""
    return str(index) if threads == 1 else f"{index}_{thread}"


def run_worker(config: WorkerConfig) -> int:
    """Runs one worker process until it is told to stop; the exit code for the supervisor."""
    options = config.options
    logs.configure(options.log_format, options.verbosity)
    metrics = TaskMetrics()
    connect_receivers(metrics)
    threads = len(config.worker_ids)
    workers = []
    for thread, (worker_id, heartbeat_path) in enumerate(
        zip(config.worker_ids, config.heartbeat_paths, strict=True)
    ):
        heartbeat = Heartbeat(heartbeat_path)
        heartbeat.reset(time.time())
        workers.append(
            TaskpoolWorker(
                label=thread_label(config.index, thread, threads),
                heartbeat=heartbeat,
                metrics=metrics,
                default_time_limit=options.time_limit,
                threaded=threads > 1,
                listener=ReadyListener(
                    database_alias(), options.backend_name, options.queue_names, options.excluded_queue_names
                )
                if options.notify
                else None,
                queue_names=options.queue_names,
                interval=options.interval,
                batch=options.batch,
                backend_name=options.backend_name,
                startup_delay=options.startup_delay,
                max_tasks=options.max_tasks,
                worker_id=worker_id,
                excluded_queue_names=options.excluded_queue_names,
            )
        )
    if threads == 1:
        workers[0].configure_signals()
        return run_loop(workers[0])
    return ThreadedWorkers(workers).run()


def run_loop(worker: TaskpoolWorker) -> int:
    """One loop to its end; the exit code it asks for (1: it crashed)."""
    try:
        worker.run()
    except WriteAbandoned:
        return 1  # logged where it happened: the supervisor now resolves the row, if the database lets it
    except Exception:
        logger.exception("worker %s crashed", worker.worker_id)
        return 1
    finally:
        connections.close_all()  # this thread's connections
    return 0


class ThreadedWorkers:
    """The main thread of a process with `--threads`: starts the loops, handles signals, collects exits.

    A loop that crashes ends the whole process (exit 1): the others are stopped after
    their current task, and the supervisor restarts the process under new worker ids, as with one loop.
    """

    def __init__(self, workers: list[TaskpoolWorker]) -> None:
        self._workers = workers
        self._exit_codes: list[int] = []
        self._done = threading.Condition()
        self._stopping = False

    def run(self) -> int:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT):
            signal.signal(signum, self._on_signal)
        threads = [
            threading.Thread(target=self._run_one, args=(worker,), name=worker.worker_id, daemon=True)
            for worker in self._workers
        ]
        for thread in threads:
            thread.start()
        with self._done:
            # A bounded wait: signal handlers run on this thread between waits.
            while len(self._exit_codes) < len(threads):
                self._done.wait(0.5)
                if any(self._exit_codes) and not self._stopping:
                    self._stop()
        return max(self._exit_codes)

    def _run_one(self, worker: TaskpoolWorker) -> None:
        worker.thread_id = threading.get_ident()
        code = run_loop(worker)
        with self._done:
            self._exit_codes.append(code)
            self._done.notify()

    def _stop(self) -> None:
        self._stopping = True
        for worker in self._workers:
            worker.running = False

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if not self._stopping:
            logger.info(
                "received %s: threads finish their current tasks, then exit", signal.strsignal(signum)
            )
            self._stop()
            return
        logger.warning("received %s again: interrupting the running tasks", signal.strsignal(signum))
        for worker in self._workers:
            if worker.running_task and worker.thread_id is not None:
                raise_in_thread(worker.thread_id, SystemExit)
