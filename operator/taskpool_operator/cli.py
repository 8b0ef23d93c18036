"""`taskpool-operator`: run the operator, probe a database's queues, print the CRD, delete pools (the chart's
pre-delete hook)."""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from typing import NoReturn

import kopf

from taskpool_operator import (
    __version__,
    crd,
    handlers,  # noqa: F401 - importing registers the handlers with kopf
    kube,
    metrics,
    uninstall,
)
from taskpool_operator.handlers.lifecycle import load_credentials
from taskpool_operator.probe.depth import PoolDepth, ProbeError, ProbeTarget, ready_cap
from taskpool_operator.probe.dsn import normalize
from taskpool_operator.probe.hub import ProbeHub

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

    delete_pools = commands.add_parser(
        "delete-pools", help="delete TaskWorkerPools and wait until they are gone (the chart's uninstall)"
    )
    delete_pools.add_argument(
        "--timeout", type=_positive, default=600, help="seconds to wait for the pools to go (default 600)"
    )
    delete_pools.add_argument("pools", nargs="+", type=_pool_ref, metavar="NAMESPACE/NAME")
    return parser


def _pool_ref(text: str) -> uninstall.PoolRef:
    try:
        return uninstall.parse_pool_ref(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "crd":
        sys.stdout.write(crd.crd_text())
        return 0
    if args.command == "probe":
        return _probe(parser, args)
    if args.command == "delete-pools":
        return _delete_pools(args)
    return _run(args)


def _delete_pools(args: argparse.Namespace) -> int:
    try:
        kube.configure(functools.partial(load_credentials, kopf.OperatorSettings()))
        uninstall.delete_pools(args.pools, args.timeout, say=functools.partial(print, flush=True))
    except (kopf.LoginError, OSError, uninstall.PoolsRemain) as exc:  # OSError: an unreadable kubeconfig
        sys.stderr.write(f"taskpool-operator: delete-pools failed: {exc}\n")
        return 1
    except kube.ApiError as exc:  # e.g. RBAC: the API server's own message says what is missing
        sys.stderr.write(f"taskpool-operator: delete-pools failed: {kube.rejection_message(exc) or exc}\n")
        return 1
    return 0


def _probe(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.dsn_env is not None:
        dsn = os.environ.get(args.dsn_env, "")
        if not dsn:
            parser.error(f"environment variable {args.dsn_env} is not set or empty")
    else:
        dsn = args.dsn
    try:
        normalize(dsn)
    except ProbeError as exc:  # its message never has the password
        parser.error(f"the DSN is not a valid PostgreSQL connection string or URL ({exc})")
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


async def probe_once(
    dsn: str,
    targets: Mapping[str, ProbeTarget],
    *,
    connect_timeout_seconds: float = 5.0,
    statement_timeout_seconds: float = 5.0,
) -> dict[str, PoolDepth]:
    """One probe of one database for the named targets (the CLI's `probe` command): the same statement the
    operator runs. Raises `ProbeError`."""
    async with ProbeHub(
        connect_timeout_seconds=connect_timeout_seconds,
        statement_timeout_seconds=statement_timeout_seconds,
    ) as hub:
        for key, target in targets.items():
            hub.register(key, dsn, target)
        await hub.tick(dsn)
        results: dict[str, PoolDepth] = {}
        for key in targets:
            reading = hub.latest(key)
            if isinstance(reading, ProbeError):
                raise reading
            if reading is None:  # pragma: no cover - tick always stores a reading for every key
                raise ProbeError("query", "the probe returned no reading")
            results[key] = reading
        return results


def format_table(results: Mapping[str, PoolDepth]) -> str:
    """A plain-text table of probe results, one line per (target, queue), for terminals."""
    header = ("TARGET", "BACKEND", "QUEUE", "READY", "RUNNING", "OLDEST READY")
    lines: list[tuple[str, ...]] = [header]
    for name, depth in results.items():
        if not depth.queues:
            lines.append((name, "-", "-", "0", "0", "-"))
        for queue in depth.queues:
            capped = queue.ready >= depth.cap
            lines.append(
                (
                    name,
                    queue.backend,
                    queue.queue,
                    f"{queue.ready}+" if capped else str(queue.ready),
                    str(queue.running),
                    _format_age(queue.oldest_ready_age_seconds) if queue.ready else "-",
                )
            )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    rendered = [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)) for line in lines
    ]
    footnote = (
        "READY is capped at what the pool can use (max replicas x tasks per replica + 1); '+' marks a cap."
    )
    return "\n".join([*(line.rstrip() for line in rendered), footnote])


def _format_age(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


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
