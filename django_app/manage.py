#!/usr/bin/env python
"""Django's command-line utility for the taskpool demo project."""

import os
import sys

from django.core.exceptions import ImproperlyConfigured
from django.core.management import execute_from_command_line
from django.db import OperationalError


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "taskpool_demo.settings")
    try:
        execute_from_command_line(sys.argv)
    except (ImproperlyConfigured, OperationalError) as exc:
        # A missing setting or an unreachable database is the operator's to fix, not a bug to debug:
        # one line says what is wrong instead of a traceback.
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        sys.exit(f"error: {message}")


if __name__ == "__main__":
    main()
