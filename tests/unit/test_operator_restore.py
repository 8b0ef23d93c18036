"""Restoring the pool's Deployments after someone else's edit, and never after the operator's own write.

The decision (`writes.changed_by_someone_else`) is tested on plain events; the orderings through the real
handlers, with the Kubernetes API replaced by fakes that deliver a write's watch event to the handler before,
or after, the write's reply."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any

import kopf
import pytest

from taskpool_operator import kube, objects
from taskpool_operator.handlers import deployment, memory, scaling, scheduler, writes
from taskpool_operator.handlers.indexes import WorkerDeployment
from taskpool_operator.pool import Pool
from tests.unit.operator_samples import body
from tests.unit.test_operator_scaling import FakeHub, depth

KEY = ("shop", "emails")
# Long enough for a handler that does not wait for the write in flight to finish (then the test fails).
HANDLER_FINISHES_S = 1.0
POOL_BODY = body(
    scaling={"minReplicas": 0, "maxReplicas": 4, "tasksPerReplica": 5, "scaleDownStabilization": "0s"},
    scheduler={"enabled": True},
)


def event(generation: int, *, kind: str | None = "MODIFIED", name: str = "emails-workers") -> dict[str, Any]:
    component = "scheduler" if name.endswith("-scheduler") else "worker"
    metadata = {
        "name": name,
        "namespace": "shop",
        "generation": generation,
        "labels": {objects.POOL_LABEL: "emails", objects.COMPONENT_LABEL: component},
    }
    return {"type": kind, "object": {"metadata": metadata, "spec": {"replicas": 1}, "status": {}}}


@pytest.mark.parametrize(
    ("kind", "generation", "own", "someone_elses"),
    [
        ("MODIFIED", 5, 5, False),  # the operator's own write, or a status update after it
        ("MODIFIED", 4, 5, False),  # older than the operator's last write
        (None, 5, 5, False),  # kopf's initial listing
        ("MODIFIED", 6, 5, True),  # kubectl edit, kubectl scale deploy
        (None, 6, 5, True),  # edited while the operator was not watching
        ("DELETED", 5, 5, True),
        ("DELETED", 4, 5, True),
    ],
)
def test_only_a_deletion_or_a_newer_generation_is_someone_elses(
    kind: str | None, generation: int, own: int, someone_elses: bool
) -> None:
    assert writes.changed_by_someone_else(event(generation, kind=kind), own) is someone_elses


Delivery = Callable[[dict[str, Any]], None]


class FakeApi:
    """The Deployments of the pool as the API server has them; each write bumps the generation, and the next
    write can hand its watch event to a handler before its reply returns (`deliver`)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.generations = {"emails-workers": 0, "emails-scheduler": 0}
        self.written: list[tuple[str, int]] = []
        self.restored: list[str] = []
        self.deliver: Delivery | None = None
        monkeypatch.setattr(kube, "read_deployment", self.read)
        monkeypatch.setattr(kube, "create_deployment", self.put)
        monkeypatch.setattr(kube, "replace_deployment", self.put)
        monkeypatch.setattr(kube, "scale_deployment", self.scale)
        monkeypatch.setattr(kube, "patch_pod", lambda namespace, name, patch: None)
        monkeypatch.setattr(kube, "patch_pool_status", lambda namespace, name, status: None)
        monkeypatch.setattr(kube, "read_pool", self.read_pool)
        monkeypatch.setattr(kube, "read_secret_value", lambda namespace, name, key: "postgresql://db/app")
        for emit in ("info", "warn"):
            monkeypatch.setattr(kopf, emit, lambda obj, reason, message: None)

    def read(self, namespace: str, name: str) -> dict[str, Any] | None:
        if not self.generations[name]:
            return None
        pool = Pool.from_body(POOL_BODY)
        return {
            "metadata": {
                "name": name,
                "generation": self.generations[name],
                "resourceVersion": "1",
                "ownerReferences": [objects.owner_reference(pool)],
            },
            "spec": {"replicas": 1},
        }

    def read_pool(self, namespace: str, name: str) -> dict[str, Any]:
        self.restored.append(name)
        return POOL_BODY

    def _written(self, name: str, replicas: int) -> int:
        self.generations[name] += 1
        generation = self.generations[name]
        self.written.append((name, replicas))
        deliver, self.deliver = self.deliver, None  # the next write's event only
        if deliver is not None:
            deliver(event(generation, name=name))
        return generation

    def put(self, manifest: dict[str, Any]) -> dict[str, Any]:
        generation = self._written(manifest["metadata"]["name"], manifest["spec"]["replicas"])
        return {**manifest, "metadata": {**manifest["metadata"], "generation": generation}}

    def scale(self, namespace: str, name: str, replicas: int) -> int:
        return self._written(name, replicas)


def before_the_reply(handler: Callable[..., None]) -> tuple[Delivery, Callable[[], None]]:
    """A delivery that runs the watch handler on the event in another thread while the write's reply waits
    (as kopf may, when the event arrives first), and a join for after the write."""
    threads: list[threading.Thread] = []

    def deliver(watched: dict[str, Any]) -> None:
        thread = threading.Thread(target=handler, kwargs={"event": watched})
        thread.start()
        threads.append(thread)
        thread.join(HANDLER_FINISHES_S)  # a handler that waits for this write's reply is still waiting

    def join() -> None:
        for thread in threads:
            thread.join()

    return deliver, join


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeApi]:
    memory.forget(KEY)
    fake = FakeApi(monkeypatch)
    deployment.reconcile(body=POOL_BODY, patch=kopf.Patch())  # the pool's Deployments, as on create
    yield fake
    memory.forget(KEY)


def scale_to(replicas: int) -> None:
    """One scaling round whose policy decision is `replicas` (tasksPerReplica 5: 5 ready tasks per pod)."""
    hub = FakeHub(depth(ready=5 * replicas))
    asyncio.run(scaling.tick(POOL_BODY, hub, scaling._Secret(), [], WorkerDeployment(1, 1, 1)))  # type: ignore[arg-type]


def test_the_scaling_loops_write_is_not_restored_when_its_event_comes_before_the_reply(api: FakeApi) -> None:
    deliver, join = before_the_reply(deployment.restore)
    api.deliver = deliver
    scale_to(3)
    join()
    assert api.written[-1] == ("emails-workers", 3)
    assert api.restored == []
    assert len(api.written) == 3  # created both, scaled once: no second write of the same replicas


def test_a_reapplied_spec_is_not_restored_when_its_event_comes_before_the_reply(api: FakeApi) -> None:
    deliver, join = before_the_reply(deployment.restore)
    api.deliver = deliver
    deployment.apply(Pool.from_body(POOL_BODY))
    join()
    assert api.restored == []


def test_the_scheduler_write_is_not_restored_when_its_event_comes_before_the_reply(api: FakeApi) -> None:
    deliver, join = before_the_reply(scheduler.on_event)
    api.deliver = deliver
    scheduler.apply(Pool.from_body(POOL_BODY))
    join()
    assert api.restored == []


@pytest.mark.parametrize(
    ("handler", "name"),
    [(deployment.restore, "emails-workers"), (scheduler.on_event, "emails-scheduler")],
    ids=["workers", "scheduler"],
)
def test_events_after_the_reply_are_the_operators_own_and_later_edits_are_restored(
    api: FakeApi, handler: Callable[..., None], name: str
) -> None:
    own = api.generations[name]
    handler(event=event(own, name=name))  # the write's event, after its reply
    handler(event=event(own - 1, name=name))  # an older one, late
    assert api.restored == []
    handler(event=event(own + 1, name=name))  # kubectl edit / kubectl scale deploy
    assert api.restored == ["emails"]
    assert api.written[-1][0] == name  # written again, from the pool
    handler(event=event(api.generations[name], kind="DELETED", name=name))
    assert api.restored == ["emails", "emails"]


def test_a_restore_keeps_the_operators_replicas(api: FakeApi) -> None:
    scale_to(3)
    kubectl_scale = event(api.generations["emails-workers"] + 1)  # kubectl scale deploy --replicas=1
    deployment.restore(event=kubectl_scale)
    assert api.written[-1] == ("emails-workers", 3)
