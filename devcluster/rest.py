"""A small JSON REST client for the local API server (client-certificate auth, explicit timeouts).

The node agent and the launcher work with plain dicts, as the API sends them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import urllib3

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"


class ApiError(RuntimeError):
    def __init__(self, method: str, path: str, status: int, body: dict[str, Any]) -> None:
        self.status = status
        self.reason = body.get("reason", "")
        self.body = body
        super().__init__(f"{method} {path}: HTTP {status} {self.reason}: {body.get('message', '')}")


class Rest:
    def __init__(self, url: str, ca: Path, cert: Path, key: Path, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._pool = urllib3.PoolManager(
            maxsize=16,
            block=False,
            cert_reqs="CERT_REQUIRED",
            ca_certs=str(ca),
            cert_file=str(cert),
            key_file=str(key),
            retries=False,
        )

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: dict[str, Any] | None = None,
        content_type: str = "application/json",
        timeout: float | None = None,
    ) -> dict[str, Any]:
        url = self.url + path + (("?" + urlencode(params)) if params else "")
        data = None if body is None else json.dumps(body).encode()
        response = self._pool.request(
            method,
            url,
            body=data,
            headers={"Content-Type": content_type, "Accept": "application/json"},
            timeout=urllib3.Timeout(connect=5.0, read=timeout or self.timeout),
        )
        try:
            payload: dict[str, Any] = json.loads(response.data) if response.data else {}
        except json.JSONDecodeError:
            payload = {"message": response.data.decode(errors="replace")[:500]}
        if response.status >= 400:
            raise ApiError(method, path, response.status, payload)
        return payload

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        return self.request("GET", path, params=params or None)

    def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.request("POST", path, body)

    def patch(self, path: str, body: dict[str, Any], content_type: str = MERGE_PATCH) -> dict[str, Any]:
        return self.request("PATCH", path, body, content_type=content_type)

    def delete(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.request("DELETE", path, body)

    def watch(self, path: str, resource_version: str, timeout_seconds: int = 30) -> Iterator[dict[str, Any]]:
        """Yields watch events until the server ends the watch (after `timeout_seconds`)."""
        params = {
            "watch": "true",
            "resourceVersion": resource_version,
            "timeoutSeconds": timeout_seconds,
            "allowWatchBookmarks": "true",
        }
        sep = "&" if "?" in path else "?"
        response = self._pool.request(
            "GET",
            self.url + path + sep + urlencode(params),
            preload_content=False,
            # The read timeout bounds a silent connection: the server ends the watch after timeout_seconds.
            timeout=urllib3.Timeout(connect=5.0, read=timeout_seconds + 15),
        )
        try:
            if response.status >= 400:
                raise ApiError("WATCH", path, response.status, json.loads(response.read() or b"{}"))
            buffer = b""
            for chunk in response.stream(64 * 1024, decode_content=True):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        yield json.loads(line)
        finally:
            response.release_conn()
