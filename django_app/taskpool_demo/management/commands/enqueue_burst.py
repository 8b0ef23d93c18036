"""`manage.py enqueue_burst`: the JSON API's burst from the command line (demo, tests, benchmarks)."""

from __future__ import annotations

import json
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.tasks.exceptions import InvalidTask

from taskpool_demo.bursts import KINDS, BadRequest, enqueue_burst, parse_burst

BODY_KEYS = ("task", "count", "queue", "duration", "priority", "run_after", "failure_rate", "failures")


class Command(BaseCommand):
    help = "Enqueue COUNT tasks of one kind; prints the ids as JSON with --json."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--task", choices=list(KINDS), default="report")
        parser.add_argument("--count", type=int, default=1)
        parser.add_argument("--queue", help="default: the task's own queue")
        parser.add_argument("--duration", type=float, help="seconds (report, slow, bounded)")
        parser.add_argument("--priority", type=int, default=0)
        parser.add_argument("--run-after", type=float, help="seconds from now")
        parser.add_argument("--failure-rate", type=float, help="0..1 (flaky)")
        parser.add_argument("--failures", type=int, help="attempts that fail first (fails_first)")
        parser.add_argument("--json", action="store_true", help="print the ids as a JSON list")

    def handle(self, *args: Any, **options: Any) -> None:
        body = {key: options[key] for key in BODY_KEYS if options[key] is not None}
        try:
            burst = parse_burst(body)
        except (BadRequest, InvalidTask) as exc:
            raise CommandError(str(exc)) from None
        ids = enqueue_burst(burst)
        if options["json"]:
            self.stdout.write(json.dumps(ids))
        else:
            self.stdout.write(
                f"enqueued {len(ids)} x {burst.task.module_path} on queue {burst.task.queue_name}"
            )
