"""Writing the pool's Deployments (workers and scheduler, through kube.write_deployment): a write the API
server refuses, or a Deployment another controller owns, is remembered with its reason and message."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from typing import Any

import kopf
import pytest

from taskpool_operator import kube, objects
from taskpool_operator.handlers import deployment, memory, scheduler
from taskpool_operator.pool import Pool
from tests.unit.operator_samples import body

KEY = ("shop", "emails")
SERVER_MESSAGE = (
    'Deployment.apps "emails-workers" is invalid: spec.template.labels: Invalid value: "not valid!": a valid '
    "label must be an empty string or consist of alphanumeric characters"
)
# Both Deployments a pool owns go through the same write: (the handler that writes it, its name).
WRITERS: list[tuple[Callable[[Pool], object], str]] = [
    (deployment.apply, "emails-workers"),
    (scheduler.apply, "emails-scheduler"),
]
WRITER_IDS = ["workers", "scheduler"]


@pytest.fixture(autouse=True)
def fresh_memory() -> Iterator[None]:
    memory.forget(KEY)
    yield
    memory.forget(KEY)


def pool() -> Pool:
    return Pool.from_body(body(scheduler={"enabled": True}))


def refusing(status: int, message: str = SERVER_MESSAGE) -> Any:
    def create(manifest: dict[str, Any]) -> dict[str, Any]:
        status_object = {"kind": "Status", "status": "Failure", "message": message, "code": status}
        raise kube.ApiError(status, "Unprocessable Entity", json.dumps(status_object))

    return create


def created(manifest: dict[str, Any]) -> dict[str, Any]:
    return {**manifest, "metadata": {**manifest["metadata"], "generation": 1}}


@pytest.fixture
def none_live(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kube, "read_deployment", lambda namespace, name: None)


@pytest.mark.usefixtures("none_live")
@pytest.mark.parametrize(("write", "name"), WRITERS, ids=WRITER_IDS)
def test_a_refused_write_keeps_the_api_servers_message(
    monkeypatch: pytest.MonkeyPatch, write: Callable[[Pool], object], name: str
) -> None:
    monkeypatch.setattr(kube, "create_deployment", refusing(422))
    with pytest.raises(kopf.TemporaryError, match="Invalid value"):
        write(pool())
    problem = memory.of(KEY).write_refusals[name]
    assert problem.reason == "DeploymentRejected"
    assert SERVER_MESSAGE in problem.message
    assert name in problem.message
    assert memory.of(KEY).applied_generation is None  # no spec reached the worker Deployment
    assert memory.of(KEY).scheduler_generation is None


@pytest.mark.usefixtures("none_live")
@pytest.mark.parametrize(("write", "name"), WRITERS, ids=WRITER_IDS)
def test_a_successful_write_clears_the_refusal(
    monkeypatch: pytest.MonkeyPatch, write: Callable[[Pool], object], name: str
) -> None:
    monkeypatch.setattr(kube, "create_deployment", refusing(400))
    with pytest.raises(kopf.TemporaryError):
        write(pool())
    assert name in memory.of(KEY).write_refusals
    monkeypatch.setattr(kube, "create_deployment", created)
    write(pool())
    assert memory.of(KEY).write_refusals == {}


@pytest.mark.usefixtures("none_live")
@pytest.mark.parametrize("status", [409, 500])
@pytest.mark.parametrize(("write", "name"), WRITERS, ids=WRITER_IDS)
def test_errors_a_retry_may_cure_are_not_refusals(
    monkeypatch: pytest.MonkeyPatch, write: Callable[[Pool], object], name: str, status: int
) -> None:
    monkeypatch.setattr(kube, "create_deployment", refusing(status))
    with pytest.raises((kopf.TemporaryError, kube.ApiError)):
        write(pool())
    assert memory.of(KEY).write_refusals == {}


@pytest.mark.parametrize(("write", "name"), WRITERS, ids=WRITER_IDS)
def test_a_deployment_of_another_owner_is_not_written(
    monkeypatch: pytest.MonkeyPatch, write: Callable[[Pool], object], name: str
) -> None:
    foreign = {"metadata": {"name": name, "ownerReferences": [{"uid": "other", "controller": True}]}}
    monkeypatch.setattr(kube, "read_deployment", lambda namespace, read: {**foreign, "spec": {"replicas": 1}})
    writes: list[str] = []
    monkeypatch.setattr(kube, "replace_deployment", lambda manifest: writes.append(manifest) or manifest)
    with pytest.raises(kopf.TemporaryError, match="not owned by this pool"):
        write(pool())
    assert memory.of(KEY).write_refusals[name].reason == "DeploymentNotOwned"
    assert writes == []


def test_a_disabled_scheduler_leaves_a_deployment_of_another_owner_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    foreign = {
        "metadata": {"name": "emails-scheduler", "ownerReferences": [{"uid": "x", "controller": True}]}
    }
    monkeypatch.setattr(kube, "read_deployment", lambda namespace, name: foreign)
    deleted: list[str] = []
    monkeypatch.setattr(kube, "delete_deployment", lambda namespace, name: deleted.append(name))
    assert scheduler.apply(Pool.from_body(body())) is None
    assert deleted == []
    owned = {"metadata": {"name": "emails-scheduler", "ownerReferences": [objects.owner_reference(pool())]}}
    monkeypatch.setattr(kube, "read_deployment", lambda namespace, name: owned)
    scheduler.apply(Pool.from_body(body()))
    assert deleted == ["emails-scheduler"]


def test_a_replace_keeps_what_other_controllers_put_on_the_deployment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    manifest = objects.build_scheduler_deployment(pool())
    live = {
        "metadata": {
            **manifest["metadata"],
            "resourceVersion": "42",
            "annotations": {"deployment.kubernetes.io/revision": "3"},
            "labels": {"extra": "kept", objects.POOL_LABEL: "stale"},
        }
    }
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(kube, "replace_deployment", lambda written: sent.append(written) or written)
    kube.write_deployment(manifest, live)
    (written,) = sent
    assert written["metadata"]["resourceVersion"] == "42"
    assert written["metadata"]["annotations"] == {"deployment.kubernetes.io/revision": "3"}
    assert written["metadata"]["labels"] == {"extra": "kept", **manifest["metadata"]["labels"]}
    assert written["spec"] == manifest["spec"]
    assert "resourceVersion" not in manifest["metadata"]  # the built manifest is not changed


@pytest.mark.parametrize(
    "build",
    [lambda: objects.build_worker_deployment(pool(), 2), lambda: objects.build_scheduler_deployment(pool())],
    ids=WRITER_IDS,
)
def test_a_replace_keeps_a_rollout_restart(
    monkeypatch: pytest.MonkeyPatch, build: Callable[[], dict[str, Any]]
) -> None:
    manifest = build()
    live = copy.deepcopy(manifest)
    live["metadata"]["resourceVersion"] = "42"
    stamp = {objects.ROLLOUT_RESTART: "2026-12-02T03:30:00Z"}
    live["spec"]["template"]["metadata"].setdefault("annotations", {}).update(stamp)
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(kube, "replace_deployment", lambda written: sent.append(written) or written)
    kube.write_deployment(manifest, live)
    (written,) = sent
    assert written["spec"] == live["spec"]  # the restart is neither undone nor stamped again
    assert objects.ROLLOUT_RESTART not in (manifest["spec"]["template"]["metadata"].get("annotations") or {})
    del live["spec"]["template"]["metadata"]["annotations"][objects.ROLLOUT_RESTART]
    kube.write_deployment(manifest, live)
    assert sent[-1]["spec"] == manifest["spec"]  # nothing to keep: exactly what the operator built


def test_the_rejection_message_is_the_servers_and_bounded() -> None:
    exc = kube.ApiError(403, "Forbidden", json.dumps({"message": "x" * 5000}))
    assert kube.rejection_message(exc) == "x" * kube.REJECTION_MESSAGE_LIMIT
    assert kube.rejection_message(kube.ApiError(422, "Unprocessable Entity")) == "422 Unprocessable Entity"
    for retryable in (404, 409, 429, 500, 503):
        assert kube.rejection_message(kube.ApiError(retryable, "")) is None
    assert kube.rejection_message(ValueError("not an API error")) is None
