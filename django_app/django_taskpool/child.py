"""Entry point of a spawned worker process. Imports nothing of Django's models before `django.setup()`."""

from __future__ import annotations

import logging
import os
import sys

import django

from django_taskpool.config import WorkerConfig


def child_main(config: WorkerConfig) -> None:
    # Own process group: a terminal's Ctrl+C reaches the supervisor only, which forwards one SIGTERM.
    # Without this each child would get the terminal's SIGINT and the supervisor's SIGTERM: a second
    # signal, which interrupts the running task.
    os.setpgid(0, 0)
    django.setup()
    from django.db import connections  # noqa: PLC0415 - needs the app registry ready

    from django_taskpool.worker import run_worker  # noqa: PLC0415 - needs the app registry ready

    try:
        code = run_worker(config)
    except SystemExit as stop:  # the worker's signal handler exits this way
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    connections.close_all()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip the interpreter's teardown (a third of a second here): everything that must outlive the process
    # is already in the database or the metrics files, so the supervisor sees the exit at once.
    os._exit(code)
