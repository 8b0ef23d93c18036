"""`manage.py taskpool_worker`: django-tasks-db's worker loop in N supervised processes, with Prometheus
metrics, `/healthz` and `/readyz` on one port. Flags of `db_worker` keep their meaning.

The endpoints serve before the database is first used: a worker started during a database outage waits for
it (the supervisor), not ready meanwhile; what waiting cannot fix is one line and exit code 1."""

from __future__ import annotations

import logging
import multiprocessing
import os
from argparse import ArgumentParser, ArgumentTypeError, BooleanOptionalAction
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError
from django.tasks import DEFAULT_TASK_BACKEND_ALIAS, DEFAULT_TASK_QUEUE_NAME
from django_tasks_db.management.commands.db_worker import (
    valid_backend_name,
    valid_interval,
    valid_max_tasks,
)

from django_taskpool import logs
from django_taskpool.config import LoopOptions
from django_taskpool.database import DatabaseNotUsable, database_alias
from django_taskpool.endpoints import EndpointServer
from django_taskpool.recovery import LostAction
from django_taskpool.retries import configured_policies
from django_taskpool.supervisor import Supervisor, runtime_directories
from django_taskpool.time_limits import configured_limits
from django_taskpool.worker_ids import pod_name

logger = logging.getLogger("django_taskpool")

MAX_CONCURRENCY = 256
MAX_THREADS = 64


def _bounded_int(low: int, high: int) -> Any:
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise ArgumentTypeError(f"must be a whole number, got {value!r}") from None
        if not low <= number <= high:
            raise ArgumentTypeError(f"must be between {low} and {high}, got {number}")
        return number

    return parse


def _positive_seconds(value: str) -> float:
    seconds = valid_interval(value)
    if seconds <= 0:
        raise ArgumentTypeError("must be greater than zero")
    return seconds


def _worker_id_prefix(value: str) -> str:
    if not value.strip():
        raise ArgumentTypeError("must not be empty")
    return value.strip()


class Command(BaseCommand):
    help = (
        "Run django-tasks-db workers: --concurrency processes under a supervisor that restarts crashed "
        "ones, serves /metrics, /healthz and /readyz, and on SIGTERM lets running tasks finish."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        loop = parser.add_argument_group("django-tasks-db worker loop (as db_worker)")
        loop.add_argument(
            "--queue-name",
            default=DEFAULT_TASK_QUEUE_NAME,
            help="Queues to process, comma-separated; '*' for all (default: %(default)r).",
        )
        loop.add_argument(
            "--exclude-queues",
            default="",
            help="Queues to skip, comma-separated; only with --queue-name='*'.",
        )
        loop.add_argument(
            "--interval",
            default=1.0,
            type=valid_interval,
            help="Seconds to sleep when no task is ready (default: %(default)r).",
        )
        loop.add_argument("--batch", action="store_true", help="Exit once no task is ready.")
        loop.add_argument(
            "--notify",
            action="store_true",
            help="Also LISTEN for tasks becoming READY (the django_taskpool trigger) and end the idle sleep "
            "at once; --interval stays the longest wait. Not behind a transaction-pooling PgBouncer.",
        )
        loop.add_argument(
            "--backend",
            dest="backend_name",
            default=DEFAULT_TASK_BACKEND_ALIAS,
            type=valid_backend_name,
            help="Task backend alias (default: %(default)r).",
        )
        loop.add_argument(
            "--no-startup-delay", dest="startup_delay", action="store_false", help="Start polling at once."
        )
        loop.add_argument(
            "--max-tasks",
            type=valid_max_tasks,
            default=None,
            help="Each process exits after this many tasks.",
        )
        loop.add_argument(
            "--reload",
            action=BooleanOptionalAction,
            default=False,
            help="Not supported: taskpool_worker never autoreloads (--no-reload is accepted).",
        )
        runtime = parser.add_argument_group("taskpool runtime")
        runtime.add_argument(
            "--concurrency",
            type=_bounded_int(1, MAX_CONCURRENCY),
            default=1,
            help="Worker processes to run (default: %(default)r).",
        )
        runtime.add_argument(
            "--threads",
            type=_bounded_int(1, MAX_THREADS),
            default=1,
            help="Copies of the worker loop in each process, each with its own worker id and database "
            "connection: for I/O-bound tasks, which then share a process's memory (default: %(default)r).",
        )
        runtime.add_argument(
            "--worker-id",
            dest="worker_id_prefix",
            type=_worker_id_prefix,
            default=None,
            help="Prefix of the worker ids '<prefix>-<index>' (default: $POD_NAME, else the hostname). "
            "Must be unique: rows left RUNNING under it by an earlier run are resolved at start-up.",
        )
        runtime.add_argument(
            "--on-worker-lost",
            type=LostAction,
            choices=list(LostAction),
            default=LostAction.FAIL,
            help="What happens to the task of a worker process that died: 'fail' stores it FAILED "
            "(django_taskpool.exceptions.WorkerLost), 'requeue' makes it READY again (default: %(default)s).",
        )
        runtime.add_argument(
            "--time-limit",
            type=_positive_seconds,
            default=None,
            help="Hard time limit in seconds of tasks that set none (their own time_limit, then "
            "TASKPOOL_TIME_LIMITS): past it the process is killed and the task stored FAILED "
            "(TimeLimitExceeded). Default: none.",
        )
        runtime.add_argument(
            "--shutdown-timeout",
            type=_positive_seconds,
            default=25.0,
            help="Seconds running tasks get to finish after SIGTERM; then they are stored as FAILED "
            "(SystemExit). Keep it below terminationGracePeriodSeconds minus 5 (default: %(default)r).",
        )
        runtime.add_argument(
            "--heartbeat-timeout",
            type=_positive_seconds,
            default=60.0,
            help="/healthz fails when an idle process has not polled for this long (default: %(default)r).",
        )
        runtime.add_argument(
            "--metrics-port",
            type=_bounded_int(0, 65535),
            default=9100,
            help="Port of /metrics, /healthz and /readyz; 0 picks a free one (default: %(default)r).",
        )
        runtime.add_argument(
            "--metrics-address",
            default="0.0.0.0",  # noqa: S104 - Prometheus and the kubelet reach the pod's IP
            help="Address to listen on (default: %(default)r).",
        )
        runtime.add_argument(
            "--log-format", choices=logs.LOG_FORMATS, default="text", help="Log lines as text or JSON."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["reload"]:
            raise CommandError("taskpool_worker never autoreloads: drop --reload (use db_worker to develop)")
        queue_names = [name.strip() for name in options["queue_name"].split(",") if name.strip()]
        excluded = [name.strip() for name in options["exclude_queues"].split(",") if name.strip()]
        if not queue_names:
            raise CommandError("--queue-name must name at least one queue (or '*')")
        if excluded and "*" not in queue_names:
            raise CommandError("--exclude-queues can only be used with --queue-name='*'")
        prefix = options["worker_id_prefix"] or pod_name()
        try:
            configured_limits()
            configured_policies()
        except ValueError as exc:
            raise CommandError(str(exc)) from None

        logs.configure(options["log_format"], options["verbosity"])
        multiprocessing.current_process().name = "supervisor"
        alias = database_alias()

        loop_options = LoopOptions(
            queue_names=queue_names,
            excluded_queue_names=excluded,
            interval=options["interval"],
            batch=options["batch"],
            backend_name=options["backend_name"],
            startup_delay=options["startup_delay"],
            max_tasks=options["max_tasks"],
            log_format=options["log_format"],
            verbosity=options["verbosity"],
            time_limit=options["time_limit"],
            threads=options["threads"],
            notify=options["notify"],
        )
        with runtime_directories() as (metrics_dir, heartbeat_dir):
            supervisor = Supervisor(
                loop_options,
                prefix,
                options["concurrency"],
                metrics_dir=metrics_dir,
                heartbeat_dir=heartbeat_dir,
                shutdown_timeout=options["shutdown_timeout"],
                heartbeat_timeout=options["heartbeat_timeout"],
                database_alias=alias,
                on_worker_lost=options["on_worker_lost"],
                # Only a name known to be unique (the pod's, or given) may claim the rows left under it.
                recover_at_start=bool(options["worker_id_prefix"] or os.environ.get("POD_NAME", "").strip()),
            )
            try:
                server = EndpointServer(
                    (options["metrics_address"], options["metrics_port"]),
                    supervisor.registry(),
                    liveness=supervisor.liveness,
                    readiness=supervisor.readiness,
                )
            except OSError as exc:
                raise CommandError(
                    f"cannot serve metrics on {options['metrics_address']}:{options['metrics_port']}: "
                    f"{exc.strerror or exc}"
                ) from None
            host, port = server.server_address[:2]
            supervisor.install_signal_handlers()
            server.serve_in_background()
            logger.info(
                "serving /metrics, /healthz and /readyz on http://%s:%s; %s worker process(es) of %s "
                "thread(s), queues %s",
                host,
                port,
                options["concurrency"],
                options["threads"],
                ",".join(queue_names),
            )
            try:
                exit_code = supervisor.run()
            except DatabaseNotUsable as exc:
                raise CommandError(str(exc)) from None
            except DatabaseError as exc:  # only the start-up recovery lets one through
                raise CommandError(
                    f"cannot resolve the tasks an earlier run of {prefix} left RUNNING: "
                    f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}"
                ) from None
            finally:
                server.shutdown()
                server.server_close()
                supervisor.close()
        if exit_code:
            raise CommandError("running tasks were cut off at the shutdown timeout", returncode=exit_code)
