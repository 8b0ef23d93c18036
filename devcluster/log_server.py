"""The part of the kubelet API that `kubectl logs` needs: GET /containerLogs/<namespace>/<pod>/<container>.

The API server proxies `pods/log` to the node's address and `daemonEndpoints.kubeletEndpoint.Port`; this
server answers from the container log files the node agent writes. Supported query parameters: `tailLines`,
`limitBytes`, `follow` (until the pod's runner ends). Log lines carry no timestamps (`timestamps` is ignored)
and `previous` returns the same file, which holds every restart's output. It serves TLS with the API
server's certificate, which the API server does not verify (no --kubelet-certificate-authority).
"""

from __future__ import annotations

import http.server
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

FOLLOW_POLL_S = 0.3


def _tail(data: bytes, lines: int) -> bytes:
    if lines <= 0:
        return b""
    parts = data.splitlines(keepends=True)
    return b"".join(parts[-lines:])


def serve(
    address: tuple[str, int],
    cert: Path,
    key: Path,
    pods_dir: Path,
    pod_active: Callable[[Path], bool],
) -> http.server.ThreadingHTTPServer:
    """Starts the server in a daemon thread; `pod_active(folder)` tells `follow` whether to keep waiting."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            parts = url.path.strip("/").split("/")
            if len(parts) != 4 or parts[0] != "containerLogs":
                self.send_error(404, "only /containerLogs/<namespace>/<pod>/<container> is served")
                return
            _, namespace, pod, container = parts
            folders = sorted(pods_dir.glob(f"{namespace}_{pod}_*"), key=lambda p: p.stat().st_mtime)
            log = folders[-1] / f"{container}.log" if folders else None
            if log is None or not log.exists():
                self.send_error(404, f"no log for container {container} of pod {namespace}/{pod}")
                return
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            data = log.read_bytes()
            if "tailLines" in query:
                data = _tail(data, int(query["tailLines"]))
            if "limitBytes" in query:
                data = data[: int(query["limitBytes"])]
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(data)
            if query.get("follow") != "true":
                return
            position = log.stat().st_size
            try:
                while pod_active(log.parent):
                    time.sleep(FOLLOW_POLL_S)
                    with log.open("rb") as f:
                        f.seek(position)
                        chunk = f.read()
                    if chunk:
                        position += len(chunk)
                        self.wfile.write(chunk)
                        self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client went away

    server = http.server.ThreadingHTTPServer(address, Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="log-server", daemon=True).start()
    return server
