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
- with `--notify`, ends its idle sleep when a task becomes READY (django_taskpool.wakeup): upstream's loop
  gets `interval=0` and the wait happens in `running`'s read before that zero sleep, bounded by the interval.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import sys
import time
from types import FrameType
from typing import Any

from django.db import OperationalError
from django.utils.module_loading import import_string
from django_tasks_db.management.commands.db_worker import Worker
from django_tasks_db.models import DBTaskResult
from prometheus_client import Gauge

from django_taskpool import logs
from django_taskpool.config import WorkerConfig
from django_taskpool.database import database_alias
from django_taskpool.heartbeat import Heartbeat
from django_taskpool.metrics import TaskMetrics, connect_receivers
from django_taskpool.time_limits import SoftTimeLimitAlarm, TimeLimits, configured_limits, resolve
from django_taskpool.wakeup import ReadyListener

logger = logging.getLogger("django_taskpool")


class TaskpoolWorker(Worker):
    def __init__(
        self,
        *,
        index: int,
        heartbeat: Heartbeat,
        metrics: TaskMetrics,
        default_time_limit: float | None,
        listener: ReadyListener | None = None,
        **kwargs: Any,
    ) -> None:
        self._heartbeat = heartbeat
        self._metrics = metrics
        self._configured_limits = configured_limits()
        self._default_time_limit = default_time_limit
        self._limits: dict[str, TimeLimits] = {}  # by task path: fixed for the life of the process
        self._soft_limit_labels: tuple[str, str, str] = ("", "", "")
        self._soft_alarm = SoftTimeLimitAlarm(self._on_soft_limit)
        self._poll_gauge = metrics.last_poll.labels(process=str(index))
        self._parent_pid = os.getppid()
        # True between turns of the loop (sleeping, or not started yet): the only time exiting is safe.
        self._between_turns = True
        self._running = True
        self._poll_gauge_set_at = 0.0
        self._in_progress: dict[tuple[str, str], Gauge] = {}
        self._listener = listener
        self._idle_wait = float(kwargs["interval"])
        self._ran_task = False  # in this turn of the loop
        if listener is not None:
            kwargs["interval"] = 0.0  # the wait happens in `running`, ended early by a notification
        super().__init__(**kwargs)

    def run(self) -> None:
        if self._listener is not None and self.startup_delay:
            time.sleep(random.random())  # noqa: S311 - upstream's thundering-herd delay, skipped at interval 0
        try:
            super().run()
        finally:
            if self._listener is not None:
                self._listener.close()

    @property
    def running(self) -> bool:
        self._between_turns = not self._between_turns
        now = time.time()
        self._heartbeat.poll(now)
        # The gauge is for dashboards: once a second is precise enough and halves the loop's overhead.
        if now - self._poll_gauge_set_at >= 1.0:
            self._poll_gauge.set(now)
            self._poll_gauge_set_at = now
        if os.getppid() != self._parent_pid and self._running:
            logger.warning("supervisor %s is gone: stopping after the current turn", self._parent_pid)
            self._running = False
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
        self._heartbeat.busy(time.time(), time.monotonic() + limits.hard if limits.hard else 0.0)
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


def run_worker(config: WorkerConfig) -> int:
    """Runs one worker process until it is told to stop; the exit code for the supervisor."""
    options = config.options
    logs.configure(options.log_format, options.verbosity)
    heartbeat = Heartbeat(config.heartbeat_path)
    heartbeat.reset(time.time())
    metrics = TaskMetrics()
    connect_receivers(metrics)
    listener = (
        ReadyListener(
            database_alias(), options.backend_name, options.queue_names, options.excluded_queue_names
        )
        if options.notify
        else None
    )
    worker = TaskpoolWorker(
        listener=listener,
        index=config.index,
        heartbeat=heartbeat,
        metrics=metrics,
        default_time_limit=options.time_limit,
        queue_names=options.queue_names,
        interval=options.interval,
        batch=options.batch,
        backend_name=options.backend_name,
        startup_delay=options.startup_delay,
        max_tasks=options.max_tasks,
        worker_id=config.worker_id,
        excluded_queue_names=options.excluded_queue_names,
    )
    worker.configure_signals()
    try:
        worker.run()
    except OperationalError as exc:
        # One line: a database outage is not a bug, and the supervisor restarts the process.
        logger.error("worker %s lost the database: %s", config.worker_id, str(exc).strip().splitlines()[0])  # noqa: TRY400
        return 1
    except Exception:
        logger.exception("worker %s crashed", config.worker_id)
        return 1
    return 0
