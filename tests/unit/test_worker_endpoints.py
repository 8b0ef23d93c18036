"""The supervisor's HTTP endpoints, with plain checks and an empty registry."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from django_taskpool.endpoints import EndpointServer
from django_taskpool.metrics import SupervisorCollector

pytestmark = pytest.mark.unit

State = dict[str, Any]


@pytest.fixture
def server() -> Iterator[tuple[str, State]]:
    state: State = {"live": True, "ready": True}
    registry = CollectorRegistry()
    registry.register(SupervisorCollector(restarts=lambda: 0, processes=lambda: 1))

    def liveness() -> tuple[bool, dict[str, Any]]:
        if state.get("raise"):
            raise RuntimeError("secret detail")
        return state["live"], {"processes": []}

    endpoint = EndpointServer(
        ("127.0.0.1", 0), registry, liveness=liveness, readiness=lambda: (state["ready"], {"database": "x"})
    )
    endpoint.serve_in_background()
    yield f"http://127.0.0.1:{endpoint.server_address[1]}", state
    endpoint.shutdown()
    endpoint.server_close()


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def test_metrics(server: tuple[str, State]) -> None:
    status, content_type, body = get(f"{server[0]}/metrics")
    assert status == 200
    assert content_type.startswith("text/plain")
    assert "taskpool_worker_processes 1.0" in body


def test_probes_answer_200_or_503_with_json(server: tuple[str, State]) -> None:
    url, state = server
    assert get(f"{url}/healthz")[0] == 200
    state["live"] = False
    status, content_type, body = get(f"{url}/healthz")
    assert (status, content_type, json.loads(body)["status"]) == (503, "application/json", "failing")
    state["ready"] = False
    assert get(f"{url}/readyz")[0] == 503


def test_a_crashing_check_is_a_failing_probe_without_details(server: tuple[str, State]) -> None:
    url, state = server
    state["raise"] = True
    status, _, body = get(f"{url}/healthz")
    assert status == 503
    assert "secret detail" not in body


def test_unknown_path(server: tuple[str, State]) -> None:
    assert get(f"{server[0]}/nope")[0] == 404


class FailingCollector(Collector):
    """Fails its first `failures` collections, like a scrape reading a metric file a child is creating."""

    def __init__(self, failures: int) -> None:
        self.failures = failures

    def collect(self) -> Iterator[GaugeMetricFamily]:
        if self.failures > 0:
            self.failures -= 1
            raise ValueError("unpack_from requires a buffer of at least 4 bytes")
        yield GaugeMetricFamily("taskpool_worker_processes", "child processes alive", value=2)


@pytest.mark.parametrize(("failures", "expected"), [(1, 200), (2, 200), (3, 500)])
def test_a_scrape_that_races_a_starting_child_is_tried_again(failures: int, expected: int) -> None:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FailingCollector(failures))
    endpoint = EndpointServer(
        ("127.0.0.1", 0), registry, liveness=lambda: (True, {}), readiness=lambda: (True, {})
    )
    endpoint.serve_in_background()
    try:
        status, _, body = get(f"http://127.0.0.1:{endpoint.server_address[1]}/metrics")
    finally:
        endpoint.shutdown()
        endpoint.server_close()
    assert status == expected
    assert ("taskpool_worker_processes 2.0" in body) == (expected == 200)
