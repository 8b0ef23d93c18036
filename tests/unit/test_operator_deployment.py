"""Writing the worker Deployment: a write the API server refuses is remembered with the server's message."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import kopf
import pytest

from taskpool_operator import kube
from taskpool_operator.handlers import deployment, memory
from taskpool_operator.pool import Pool
from tests.unit.operator_samples import body

KEY = ("shop", "emails")
SERVER_MESSAGE = (
    'Deployment.apps "emails-workers" is invalid: spec.template.labels: Invalid value: "not valid!": a valid '
    "label must be an empty string or consist of alphanumeric characters"
)


@pytest.fixture(autouse=True)
def fresh_memory() -> Iterator[None]:
    memory.forget(KEY)
    yield
    memory.forget(KEY)


def refusing(status: int, message: str = SERVER_MESSAGE) -> Any:
    def create(manifest: dict[str, Any]) -> dict[str, Any]:
        status_object = {"kind": "Status", "status": "Failure", "message": message, "code": status}
        raise kube.ApiError(status, "Unprocessable Entity", json.dumps(status_object))

    return create


def test_a_refused_write_keeps_the_api_servers_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kube, "read_deployment", lambda namespace, name: None)
    monkeypatch.setattr(kube, "create_deployment", refusing(422))
    with pytest.raises(kopf.TemporaryError, match="Invalid value"):
        deployment.apply(Pool.from_body(body()))
    problem = memory.of(KEY).deployment_error
    assert problem is not None
    assert problem.reason == "DeploymentRejected"
    assert SERVER_MESSAGE in problem.message
    assert memory.of(KEY).applied_generation is None  # the spec did not reach the Deployment


def test_a_successful_write_clears_the_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kube, "read_deployment", lambda namespace, name: None)
    monkeypatch.setattr(kube, "create_deployment", refusing(400))
    with pytest.raises(kopf.TemporaryError):
        deployment.apply(Pool.from_body(body()))
    monkeypatch.setattr(kube, "create_deployment", lambda manifest: {"metadata": {"generation": 1}})
    deployment.apply(Pool.from_body(body()))
    assert memory.of(KEY).deployment_error is None
    assert memory.of(KEY).applied_generation == 3


@pytest.mark.parametrize("status", [409, 500])
def test_errors_a_retry_may_cure_are_not_refusals(monkeypatch: pytest.MonkeyPatch, status: int) -> None:
    monkeypatch.setattr(kube, "read_deployment", lambda namespace, name: None)
    monkeypatch.setattr(kube, "create_deployment", refusing(status))
    with pytest.raises((kopf.TemporaryError, kube.ApiError)):
        deployment.apply(Pool.from_body(body()))
    assert memory.of(KEY).deployment_error is None


def test_the_rejection_message_is_the_servers_and_bounded() -> None:
    exc = kube.ApiError(403, "Forbidden", json.dumps({"message": "x" * 5000}))
    assert kube.rejection_message(exc) == "x" * kube.REJECTION_MESSAGE_LIMIT
    assert kube.rejection_message(kube.ApiError(422, "Unprocessable Entity")) == "422 Unprocessable Entity"
    for retryable in (404, 409, 429, 500, 503):
        assert kube.rejection_message(kube.ApiError(retryable, "")) is None
    assert kube.rejection_message(ValueError("not an API error")) is None
