"""`taskpool-operator`: run the operator, probe a database's queues, print the CRD."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

import kopf
import psycopg
from psycopg.conninfo import conninfo_to_dict

from taskpool_operator import (
    __version__,
    crd,
    handlers,  # noqa: F401 - importing registers the handlers with kopf
    metrics,
)
from taskpool_operator.probe import ProbeError, ProbeTarget, format_table, probe_once, ready_cap

LOG_LEVELS = ("debug", "info", "warning", "error")
USAGE_ERROR = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line instead of the usage block: the message says what is wrong."""
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message}\n")


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number (0-65535)")
    return port


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="taskpool-operator", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = commands.add_parser("run", help="run the operator")
    scope = run.add_mutually_exclusive_group()
    scope.add_argument(
        "-n", "--namespace", action="append", dest="namespaces", default=[], metavar="NS",
        help="watch this namespace (repeatable; glob patterns like 'team-*' work)",
    )  # fmt: skip
    scope.add_argument(
        "-A", "--all-namespaces", action="store_true", help="watch every namespace (the default)"
    )
    run.add_argument(
        "--metrics-port", type=_port, default=8080, help="port of /metrics (0: off; default 8080)"
    )
    run.add_argument(
        "--liveness-port", type=_port, default=8081, help="port of /healthz (0: off; default 8081)"
    )
    run.add_argument("--log-level", choices=LOG_LEVELS, default="info")
    run.add_argument("--log-format", choices=("text", "json"), default="text")

    probe = commands.add_parser("probe", help="print the queue depth the operator would see")
    source = probe.add_mutually_exclusive_group(required=True)
    source.add_argument("--dsn-env", metavar="VAR", help="read the DSN from this environment variable")
    source.add_argument("--dsn", help="the DSN itself (visible to other users in the process list)")
    probe.add_argument("--backend", default="default", help="Django task backend alias (default 'default')")
    probe.add_argument(
        "--queue", action="append", dest="queues", metavar="NAME",
        help="queue to count (repeatable; default every queue)",
    )  # fmt: skip
    probe.add_argument("--exclude-queue", action="append", dest="exclude_queues", default=[], metavar="NAME")
    probe.add_argument(
        "--cap", type=_positive, default=ready_cap(1000, 1), help="count ready tasks up to this"
    )
    probe.add_argument("--timeout", type=_positive, default=5, help="connect and query timeout in seconds")

    commands.add_parser("crd", help="print the TaskWorkerPool CustomResourceDefinition")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "crd":
        sys.stdout.write(crd.crd_text())
        return 0
    if args.command == "probe":
        return _probe(parser, args)
    return _run(args)


def _probe(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.dsn_env is not None:
        dsn = os.environ.get(args.dsn_env, "")
        if not dsn:
            parser.error(f"environment variable {args.dsn_env} is not set or empty")
    else:
        dsn = args.dsn
    try:
        conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        parser.error("the DSN is not a valid PostgreSQL connection string or URL")
    try:
        target = ProbeTarget(
            backend=args.backend,
            queues=tuple(args.queues or ["*"]),
            exclude_queues=tuple(args.exclude_queues),
            cap=args.cap,
        )
    except ValueError as exc:
        parser.error(str(exc))
    _quiet_connection_pool()
    try:
        results = asyncio.run(
            probe_once(
                dsn,
                {args.backend: target},
                connect_timeout_seconds=args.timeout,
                statement_timeout_seconds=args.timeout,
            )
        )
    except ProbeError as exc:
        sys.stderr.write(f"taskpool-operator: probe failed ({exc.reason}): {exc}\n")
        return 1
    sys.stdout.write(format_table(results) + "\n")
    return 0


def _quiet_connection_pool() -> None:
    """psycopg's pool logs every failed reconnect; the probe's own error (a status condition, an Event, the
    probe command's message) already says it once, without the noise."""
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)


def _run(args: argparse.Namespace) -> int:
    _quiet_connection_pool()
    kopf.configure(log_format=kopf.LogFormat.JSON if args.log_format == "json" else kopf.LogFormat.FULL)
    logging.getLogger().setLevel(args.log_level.upper())
    if args.metrics_port:
        metrics.serve(args.metrics_port)
    liveness = f"http://0.0.0.0:{args.liveness_port}/healthz" if args.liveness_port else None
    kopf.run(
        registry=kopf.get_default_registry(),
        standalone=True,
        clusterwide=not args.namespaces,
        namespaces=args.namespaces,
        liveness_endpoint=liveness,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
