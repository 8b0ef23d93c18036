"""The supervisor's HTTP port: `/metrics` (Prometheus), `/healthz` (liveness), `/readyz` (readiness)."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

logger = logging.getLogger("django_taskpool")

# (healthy, details) — details are shown to whoever asks, so they carry states, never secrets.
Check = Callable[[], tuple[bool, dict[str, Any]]]

# A child that (re)starts creates its metric files empty and sizes them a moment later; a scrape that reads
# one in between fails (prometheus_client cannot parse an empty file). Such a scrape is tried again at once.
METRICS_ATTEMPTS = 3
METRICS_RETRY_DELAY_S = 0.02


class EndpointServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], registry: CollectorRegistry, liveness: Check, readiness: Check
    ) -> None:
        self.registry = registry
        self.liveness = liveness
        self.readiness = readiness
        super().__init__(address, _Handler)

    def serve_in_background(self) -> threading.Thread:
        thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.1}, name="taskpool-endpoints", daemon=True
        )
        thread.start()
        return thread


class _Handler(BaseHTTPRequestHandler):
    server: EndpointServer

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
            exposition = self._exposition(encoder)
            if exposition is None:
                self._send(500, "text/plain; charset=utf-8", b"metrics unavailable, see the worker's log\n")
            else:
                self._send(200, content_type, exposition)
        elif path in ("/healthz", "/readyz"):
            check = self.server.liveness if path == "/healthz" else self.server.readiness
            try:
                healthy, details = check()
            except Exception as exc:  # a probe answers, whatever happens
                logger.exception("%s check failed", path)
                healthy, details = False, {"error": type(exc).__name__}
            body = json.dumps({"status": "ok" if healthy else "failing", **details}, default=str)
            self._send(200 if healthy else 503, "application/json", body.encode() + b"\n")
        else:
            self._send(404, "text/plain; charset=utf-8", b"not found: try /metrics, /healthz or /readyz\n")

    def _exposition(self, encoder: Callable[[CollectorRegistry], bytes]) -> bytes | None:
        for attempt in range(1, METRICS_ATTEMPTS + 1):
            try:
                return encoder(self.server.registry)
            except Exception:  # a scrape answers, whatever happens
                if attempt == METRICS_ATTEMPTS:
                    logger.exception("/metrics failed %d times", METRICS_ATTEMPTS)
                    return None
                time.sleep(METRICS_RETRY_DELAY_S)
        return None

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("endpoint %s - " + format, self.address_string(), *args)
