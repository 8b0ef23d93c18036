"""`manage.py taskpool_scheduler`: fires the periodic tasks of settings.TASKPOOL_SCHEDULES exactly once and
deletes finished task rows past their retention period; `/metrics`, `/healthz` and `/readyz` on one port.

Started during a database outage it waits for the database as a worker does (django_taskpool.outage), its
endpoints serving meanwhile (not ready, alive); what waiting cannot fix is one line and exit code 1."""

from __future__ import annotations

import datetime
import logging
import signal
import time
from argparse import ArgumentParser, ArgumentTypeError
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import router
from django.tasks import DEFAULT_TASK_BACKEND_ALIAS, DEFAULT_TASK_QUEUE_NAME
from django_tasks_db.management.commands.db_worker import valid_backend_name
from django_tasks_db.models import DBTaskResult
from prometheus_client import CollectorRegistry

from django_taskpool import logs
from django_taskpool.database import DatabaseNotUsable, check_usable, database_problem
from django_taskpool.endpoints import EndpointServer
from django_taskpool.models import ScheduleFire
from django_taskpool.outage import wait_at_start
from django_taskpool.retention import RetentionPolicy
from django_taskpool.scheduler import Scheduler
from django_taskpool.schedules import ScheduleError
from django_taskpool.scheduling import database_alias, load_schedules

logger = logging.getLogger("django_taskpool.scheduler")


def _seconds(minimum: float) -> Any:
    def parse(value: str) -> float:
        try:
            seconds = float(value)
        except ValueError:
            raise ArgumentTypeError(f"must be a number of seconds, got {value!r}") from None
        if seconds < minimum:
            raise ArgumentTypeError(f"must be at least {minimum:g}, got {value}")
        return seconds

    return parse


def _fraction(value: str) -> float:
    try:
        share = float(value)
    except ValueError:
        raise ArgumentTypeError(f"must be a number, got {value!r}") from None
    if not 0 < share <= 1:
        raise ArgumentTypeError(f"must be above 0 and at most 1, got {value}")
    return share


def _whole(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ArgumentTypeError(f"must be a whole number, got {value!r}") from None
    if not 1 <= number <= 100_000:
        raise ArgumentTypeError(f"must be between 1 and 100000, got {number}")
    return number


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


class Command(BaseCommand):
    help = (
        "Fire the periodic tasks of settings.TASKPOOL_SCHEDULES, each fire exactly once however many "
        "schedulers run, and delete finished task rows older than --retain-successful / --retain-failed."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--interval", type=_seconds(0.05), default=1.0, help="Seconds between looks at the schedules."
        )
        parser.add_argument(
            "--misfire-grace",
            type=_seconds(0),
            default=60.0,
            help="A fire later than this many seconds was missed (the schedule's `missed` policy applies).",
        )
        retention = parser.add_argument_group("retention (off unless a period is given)")
        retention.add_argument(
            "--backend",
            dest="backend_name",
            default=DEFAULT_TASK_BACKEND_ALIAS,
            type=valid_backend_name,
            help="Task backend alias whose rows are pruned (default: %(default)r).",
        )
        retention.add_argument(
            "--queue-name",
            default=DEFAULT_TASK_QUEUE_NAME,
            help="Queues whose finished rows are pruned, comma-separated; '*' for all (default: %(default)r)",
        )
        retention.add_argument("--exclude-queues", default="", help="Queues to leave alone with '*'.")
        retention.add_argument(
            "--retain-successful", type=_seconds(1), default=None, help="Seconds SUCCESSFUL rows are kept."
        )
        retention.add_argument(
            "--retain-failed", type=_seconds(1), default=None, help="Seconds FAILED rows are kept."
        )
        retention.add_argument(
            "--prune-batch", type=_whole, default=1000, help="Rows one prune transaction deletes at most."
        )
        retention.add_argument(
            "--prune-interval", type=_seconds(1), default=60.0, help="Seconds between prune rounds."
        )
        retention.add_argument(
            "--prune-duty",
            type=_fraction,
            default=0.1,
            help="Share of the time spent deleting while a backlog is pruned; the rest is paused, in "
            "proportion to each batch's duration (default: %(default)r).",
        )
        parser.add_argument(
            "--heartbeat-timeout",
            type=_seconds(1),
            default=60.0,
            help="/healthz fails when the schedules were not looked at for this long.",
        )
        parser.add_argument(
            "--metrics-port", type=int, default=9100, help="Port of the endpoints; 0 picks one."
        )
        parser.add_argument(
            "--metrics-address",
            default="0.0.0.0",  # noqa: S104 - Prometheus and the kubelet reach the pod's IP
            help="Address to listen on (default: %(default)r).",
        )
        parser.add_argument("--log-format", choices=logs.LOG_FORMATS, default="text")

    def handle(self, *args: Any, **options: Any) -> None:
        logs.configure(options["log_format"], options["verbosity"])
        try:
            schedules = load_schedules()
        except ScheduleError as exc:
            raise CommandError(str(exc)) from None
        queues, excluded = _names(options["queue_name"]), _names(options["exclude_queues"])
        if not queues:
            raise CommandError("--queue-name must name at least one queue (or '*')")
        if excluded and queues != ("*",):
            raise CommandError("--exclude-queues can only be used with --queue-name='*'")
        alias = database_alias()
        if router.db_for_write(DBTaskResult) != alias:
            raise CommandError(
                "the fires table and the task table are routed to different databases: a fire and its task "
                "must be written in one transaction"
            )

        def seconds(key: str) -> datetime.timedelta | None:
            return None if options[key] is None else datetime.timedelta(seconds=options[key])

        policy = RetentionPolicy(
            backend=options["backend_name"],
            queues=queues,
            exclude_queues=excluded,
            successful=seconds("retain_successful"),
            failed=seconds("retain_failed"),
            batch_size=options["prune_batch"],
        )
        registry = CollectorRegistry()
        scheduler = Scheduler(
            schedules,
            policy,
            interval=options["interval"],
            misfire_grace=datetime.timedelta(seconds=options["misfire_grace"]),
            prune_interval=options["prune_interval"],
            prune_duty=options["prune_duty"],
            registry=registry,
        )

        started_at: float | None = None  # when the database first answered

        def liveness() -> tuple[bool, dict[str, Any]]:
            if started_at is None:  # waiting for the database is no hang: a restart would only wait again
                return True, {"reason": "waiting for the database"}
            since = min(scheduler.seconds_since_tick(), time.monotonic() - started_at)
            return since < options["heartbeat_timeout"], {"seconds_since_tick": round(since, 3)}

        def readiness() -> tuple[bool, dict[str, Any]]:
            if started_at is None:
                return False, {"reason": "waiting for the database"}
            problem = database_problem(ScheduleFire.objects.db)
            return problem is None, {"database": problem or "ok"}

        try:
            server = EndpointServer(
                (options["metrics_address"], options["metrics_port"]), registry, liveness, readiness
            )
        except OSError as exc:
            raise CommandError(
                f"cannot serve metrics on port {options['metrics_port']}: {exc.strerror}"
            ) from None

        def stop(signum: int, frame: FrameType | None) -> None:
            logger.info("stopping (signal %d)", signum)
            scheduler.stopping.set()

        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, stop)
        server.serve_in_background()
        host, port = server.server_address[:2]
        logger.info(
            "scheduler running %d schedule(s) (%s); retention %s; endpoints on http://%s:%s",
            len(schedules),
            ", ".join(bound.schedule.name for bound in schedules) or "none",
            "on" if policy.enabled else "off",
            host,
            port,
        )
        try:
            if not wait_at_start(
                lambda: check_usable(alias), scheduler.stopping.wait, lambda: not scheduler.stopping.is_set()
            ):
                return
            started_at = time.monotonic()
            scheduler.run()
        except DatabaseNotUsable as exc:
            raise CommandError(str(exc)) from None
        finally:
            server.shutdown()
            server.server_close()
