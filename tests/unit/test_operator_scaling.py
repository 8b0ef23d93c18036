"""One round of a pool's scaling loop, with the Kubernetes API, the probe and Events replaced by recorders."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Hashable
from typing import Any

import kopf
import pytest

from taskpool_operator import conditions as cond
from taskpool_operator import kube, objects
from taskpool_operator.handlers import indexes, memory, scaling, scheduler
from taskpool_operator.handlers.indexes import WorkerDeployment, WorkerPod
from taskpool_operator.pool import Pool, replicas_to_apply
from taskpool_operator.probe.depth import PoolDepth, ProbeError, QueueDepth, WorkerTasks
from tests.unit.operator_samples import body

IDLE_POD = "emails-workers-7d9f8c6b5d-aaaaa"
BUSY_POD = "emails-workers-7d9f8c6b5d-bbbbb"


def depth(ready: int, running_by: dict[str, int] | None = None) -> PoolDepth:
    running_by = running_by or {}
    running = sum(running_by.values())
    return PoolDepth(
        queues=(QueueDepth("default", "emails", ready, running, 3.0 if ready else 0.0),),
        running_by_worker=tuple(WorkerTasks("default", "emails", w, n) for w, n in running_by.items()),
        ready=ready,
        running=running,
        oldest_ready_age_seconds=3.0 if ready else 0.0,
        cap=100,
        probed_at=time.monotonic(),
    )


class FakeHub:
    def __init__(self, reading: PoolDepth | ProbeError | None) -> None:
        self.reading = reading
        self.registered: dict[Hashable, str] = {}
        self.max_ages: list[float] = []

    def register(self, key: Hashable, dsn: str, target: object, *, notify: bool = False) -> None:
        self.registered[key] = dsn
        self.notify = notify

    def woken(self, key: Hashable) -> None:
        return None

    async def unregister(self, key: Hashable) -> None:
        self.registered.pop(key, None)

    async def fresh(self, key: Hashable, max_age_seconds: float) -> PoolDepth | ProbeError | None:
        self.max_ages.append(max_age_seconds)
        return self.reading


class Recorder:
    def __init__(self, monkeypatch: pytest.MonkeyPatch, dsn: str = "postgresql://app:s3cret@db/app") -> None:
        self.calls: list[tuple[str, Any]] = []
        self.events: list[tuple[str, str, str]] = []
        self.status: dict[str, Any] = {}
        monkeypatch.setattr(kube, "read_secret_value", lambda ns, name, key: dsn)
        monkeypatch.setattr(kube, "scale_deployment", self._scale)
        monkeypatch.setattr(
            kube, "patch_pod", lambda ns, name, patch: self.calls.append(("pod", (name, patch)))
        )
        monkeypatch.setattr(kube, "patch_pool_status", lambda ns, name, status: self.status.update(status))
        monkeypatch.setattr(
            kopf, "info", lambda obj, reason, message: self.events.append(("Normal", reason, message))
        )
        monkeypatch.setattr(
            kopf, "warn", lambda obj, reason, message: self.events.append(("Warning", reason, message))
        )

    def _scale(self, namespace: str, name: str, replicas: int) -> int:
        self.calls.append(("scale", replicas))
        return 7


@pytest.fixture
def pool_body() -> kopf.Body:
    memory.forget(("shop", "emails"))
    raw = body(
        scaling={"minReplicas": 0, "maxReplicas": 4, "tasksPerReplica": 5, "scaleDownStabilization": "0s"}
    )
    yield raw  # type: ignore[misc]
    memory.forget(("shop", "emails"))


def run_tick(
    pool_body: Any, hub: FakeHub, pods: list[WorkerPod], deployment: WorkerDeployment | None
) -> float:
    return asyncio.run(scaling.tick(pool_body, hub, scaling._Secret(), pods, deployment))  # type: ignore[arg-type]


def applied(pool_body: Any, replicas: int) -> memory.PoolMemory:
    """As after the reconciler wrote the Deployment."""
    mem = memory.of(("shop", "emails"))
    mem.desired = replicas
    mem.applied_generation = pool_body["metadata"]["generation"]
    return mem


def test_a_backlog_scales_up_with_an_event_and_status(
    monkeypatch: pytest.MonkeyPatch, pool_body: Any
) -> None:
    rec = Recorder(monkeypatch)
    applied(pool_body, 0)
    interval = run_tick(pool_body, FakeHub(depth(ready=12)), [], WorkerDeployment(0, 0, 0))
    assert interval == 5
    assert rec.calls == [("scale", 3)]
    (scaled,) = [e for e in rec.events if e[1] == "ScaledUp"]
    assert scaled[0] == "Normal"
    assert "ready=12" in scaled[2]
    assert rec.status["desiredReplicas"] == 3
    assert rec.status["readyTasks"] == 12
    assert rec.status["observedGeneration"] == 3
    assert memory.of(("shop", "emails")).deployment_generation == 7


def test_the_reading_is_at_most_half_a_poll_interval_old(
    monkeypatch: pytest.MonkeyPatch, pool_body: Any
) -> None:
    Recorder(monkeypatch)
    hub = FakeHub(depth(ready=0))
    run_tick(pool_body, hub, [], WorkerDeployment(0, 0, 0))
    assert hub.max_ages == [2.5]  # pollInterval 5s
    assert hub.registered == {("shop", "emails"): "postgresql://app:s3cret@db/app"}


def test_scale_down_marks_idle_pods_first_and_never_the_busy_one(
    monkeypatch: pytest.MonkeyPatch, pool_body: Any
) -> None:
    rec = Recorder(monkeypatch)
    applied(pool_body, 2)
    pods = [WorkerPod(IDLE_POD, False, None), WorkerPod(BUSY_POD, False, None)]
    run_tick(
        pool_body, FakeHub(depth(ready=0, running_by={f"{BUSY_POD}-0": 1})), pods, WorkerDeployment(2, 2, 2)
    )
    costs = pod_costs(rec)
    assert costs[IDLE_POD] < costs[BUSY_POD]  # type: ignore[operator]
    assert rec.calls[-1] == ("scale", 1)  # costs first, then the scale-down
    assert [k for k, _ in rec.calls] == ["pod", "pod", "scale"]


def test_database_trouble_holds_replicas_with_one_event_per_transition(
    monkeypatch: pytest.MonkeyPatch, pool_body: Any
) -> None:
    rec = Recorder(monkeypatch)
    applied(pool_body, 2)
    hub = FakeHub(
        ProbeError("connect", "cannot connect to database app at db: password authentication failed")
    )
    for _ in range(3):
        run_tick(pool_body, hub, [], WorkerDeployment(2, 2, 2))
    assert rec.calls == []  # replicas held
    warnings = [e for e in rec.events if e[0] == "Warning"]
    assert [e[1] for e in warnings] == ["ConnectFailed"]
    conditions = {c["type"]: c for c in rec.status["conditions"]}
    assert conditions["DatabaseReachable"]["status"] == "False"
    assert conditions["ScalingActive"]["reason"] == "DatabaseUnreachable"
    assert conditions["Ready"]["status"] == "False"
    assert "s3cret" not in repr(rec.status)
    assert rec.status["desiredReplicas"] == 2

    hub.reading = depth(ready=0, running_by={})
    run_tick(pool_body, hub, [], WorkerDeployment(2, 2, 2))
    assert rec.events[-1] == ("Normal", "ProbeSucceeded", "the task table was read")
    assert {c["type"]: c for c in rec.status["conditions"]}["DatabaseReachable"]["status"] == "True"


def test_a_missing_secret_is_a_condition_not_a_crash(monkeypatch: pytest.MonkeyPatch, pool_body: Any) -> None:
    rec = Recorder(monkeypatch)

    def missing(namespace: str, name: str, key: str) -> str:
        raise kube.SecretProblem(cond.Reason.SECRET_NOT_FOUND, f"Secret {name!r} does not exist")

    monkeypatch.setattr(kube, "read_secret_value", missing)
    mem = applied(pool_body, 1)
    run_tick(pool_body, FakeHub(None), [], WorkerDeployment(1, 1, 0))
    conditions = {c["type"]: c for c in rec.status["conditions"]}
    reachable = conditions["DatabaseReachable"]
    assert (reachable["status"], reachable["reason"]) == ("False", "SecretNotFound")
    assert "shop-db" in reachable["message"]
    assert rec.calls == []
    # Within the grace the Secret may still be created: Reconciling, so `helm --wait` waits.
    assert (conditions["Reconciling"]["status"], conditions["Stalled"]["status"]) == ("True", "False")

    assert mem.secret_missing_since is not None
    mem.secret_missing_since -= cond.SECRET_STALL_GRACE_S  # as if the grace had passed
    run_tick(pool_body, FakeHub(None), [], WorkerDeployment(1, 1, 0))
    run_tick(pool_body, FakeHub(None), [], WorkerDeployment(1, 1, 0))
    conditions = {c["type"]: c for c in rec.status["conditions"]}
    assert (conditions["Stalled"]["status"], conditions["Stalled"]["reason"]) == ("True", "SecretNotFound")
    assert "'shop-db'" in conditions["Stalled"]["message"]
    assert conditions["Reconciling"]["status"] == "False"
    assert rec.status["observedGeneration"] == pool_body["metadata"]["generation"]
    stalled_events = [e for e in rec.events if e[:2] == ("Warning", "SecretNotFound")]
    assert len(stalled_events) == 2  # DatabaseReachable turned False, then the pool stalled; once each


def test_orphans_need_two_readings_and_raise_one_warning(
    monkeypatch: pytest.MonkeyPatch, pool_body: Any
) -> None:
    rec = Recorder(monkeypatch)
    applied(pool_body, 1)
    gone = "emails-workers-7d9f8c6b5d-zzzzz-0"
    hub = FakeHub(depth(ready=0, running_by={gone: 1, f"{BUSY_POD}-0": 1}))
    pods = [WorkerPod(BUSY_POD, False, None)]
    run_tick(pool_body, hub, pods, WorkerDeployment(1, 1, 1))
    assert rec.status["orphanedTasks"] == 0
    run_tick(pool_body, hub, pods, WorkerDeployment(1, 1, 1))
    run_tick(pool_body, hub, pods, WorkerDeployment(1, 1, 1))
    assert rec.status["orphanedTasks"] == 1
    orphan_events = [e for e in rec.events if e[1] == "OrphanedTasks"]
    assert len(orphan_events) == 1
    assert orphan_events[0][0] == "Warning"
    assert gone in orphan_events[0][2]
    assert rec.status["runningTasks"] == 2


def test_scaling_waits_for_the_reconciler(monkeypatch: pytest.MonkeyPatch, pool_body: Any) -> None:
    rec = Recorder(monkeypatch)
    run_tick(pool_body, FakeHub(depth(ready=50)), [], None)
    assert rec.calls == []
    assert "observedGeneration" not in rec.status


def test_the_secret_is_read_again_when_the_pool_names_another(monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[tuple[str, str]] = []

    def read(namespace: str, name: str, key: str) -> str:
        reads.append((name, key))
        return f"postgresql://app@{name}/app"

    monkeypatch.setattr(kube, "read_secret_value", read)
    secret = scaling._Secret()
    first = Pool.from_body(body())
    moved = Pool.from_body(body(database={"secretName": "other-db"}))
    assert asyncio.run(secret.get(first)) == "postgresql://app@shop-db/app"
    assert asyncio.run(secret.get(first)) == "postgresql://app@shop-db/app"  # cached
    assert asyncio.run(secret.get(moved)) == "postgresql://app@other-db/app"
    assert reads == [("shop-db", "DATABASE_URL"), ("other-db", "DATABASE_URL")]


def busy_pods(count: int) -> list[WorkerPod]:
    return [WorkerPod(f"emails-workers-7d9f8c6b5d-bus{n:02d}", False, None) for n in range(count)]


def test_busy_pods_are_not_scaled_away_by_a_small_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    """The issue's case: tasksPerReplica 4 and 3 tasks on 3 pods would be 1 pod by the queue alone."""
    memory.forget(("shop", "emails"))
    pool_body = body(
        scaling={"minReplicas": 0, "maxReplicas": 4, "tasksPerReplica": 4, "scaleDownStabilization": "0s"}
    )
    rec = Recorder(monkeypatch)
    applied(pool_body, 3)
    pods = busy_pods(3)
    reading = depth(ready=0, running_by={f"{pod.name}-0": 1 for pod in pods})
    run_tick(pool_body, FakeHub(reading), pods, WorkerDeployment(3, 3, 3))
    assert rec.calls == []
    assert rec.status["desiredReplicas"] == 3
    memory.forget(("shop", "emails"))


def test_a_lowered_max_replicas_drains_busy_pods_with_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    memory.forget(("shop", "emails"))
    pool_body = body(
        scaling={"minReplicas": 0, "maxReplicas": 2, "tasksPerReplica": 4, "scaleDownStabilization": "0s"}
    )
    rec = Recorder(monkeypatch)
    applied(pool_body, 3)
    pods = busy_pods(3)
    reading = depth(ready=0, running_by={f"{pod.name}-0": 1 for pod in pods})
    run_tick(pool_body, FakeHub(reading), pods, WorkerDeployment(3, 3, 3))
    assert rec.calls[-1] == ("scale", 2)
    (draining,) = [e for e in rec.events if e[1] == "BusyPodsDraining"]
    assert draining[0] == "Warning"
    assert "maxReplicas 2 is below the 3 pods running tasks" in draining[2]
    assert "1 busy pod(s) drain" in draining[2]
    memory.forget(("shop", "emails"))


def test_a_deleted_pool_says_its_busy_pods_drain(monkeypatch: pytest.MonkeyPatch, pool_body: Any) -> None:
    rec = Recorder(monkeypatch)
    mem = memory.of(("shop", "emails"))
    pods = busy_pods(2)
    mem.busy_pods = frozenset(pod.name for pod in pods)
    scaling._announce_drain(pool_body, mem, [pods[0], WorkerPod(pods[1].name, True, None)])
    (draining,) = rec.events
    assert draining[:2] == ("Warning", "BusyPodsDraining")
    assert "1 worker pod(s) ran tasks" in draining[2]
    mem.busy_pods = frozenset()
    scaling._announce_drain(pool_body, mem, pods)
    assert len(rec.events) == 1  # nothing busy: nothing to say


@pytest.mark.parametrize("refused", ["emails-workers", "emails-scheduler"])
def test_a_refused_deployment_write_stalls_the_pool_and_keeps_the_rest(
    monkeypatch: pytest.MonkeyPatch, pool_body: Any, refused: str
) -> None:
    rec = Recorder(monkeypatch)
    mem = applied(pool_body, 2)
    hub = FakeHub(depth(ready=8, running_by={f"{BUSY_POD}-0": 1}))
    run_tick(pool_body, hub, [], WorkerDeployment(2, 2, 2))
    assert {c["type"]: c["status"] for c in rec.status["conditions"]}["Ready"] == "True"
    message = f'the API server refused the Deployment {refused!r}: metadata.labels: Invalid value: "a b"'
    mem.write_refusals[refused] = cond.Problem(cond.Reason.DEPLOYMENT_REJECTED, message)
    run_tick(pool_body, hub, [], WorkerDeployment(2, 2, 2))
    conditions = {c["type"]: c for c in rec.status["conditions"]}
    assert (conditions["Stalled"]["status"], conditions["Stalled"]["reason"]) == (
        "True",
        "DeploymentRejected",
    )
    assert conditions["Stalled"]["message"] == message
    assert conditions["Ready"]["status"] == "False"
    assert ("Warning", "DeploymentRejected", message) in rec.events
    # Nothing else is lost: the queue is still measured and reported, the replicas kept.
    assert conditions["DatabaseReachable"]["status"] == "True"
    assert (rec.status["readyTasks"], rec.status["runningTasks"], rec.status["desiredReplicas"]) == (8, 1, 2)


def test_a_scheduler_the_api_server_refuses_stalls_the_pool_until_it_is_written(
    monkeypatch: pytest.MonkeyPatch, pool_body: Any
) -> None:
    rec = Recorder(monkeypatch)
    applied(pool_body, 0)
    server_message = 'Deployment.apps "emails-scheduler" is invalid: spec.template.spec.containers[0]...'

    def refused(manifest: dict[str, Any]) -> dict[str, Any]:
        status_object = {"kind": "Status", "message": server_message}
        raise kube.ApiError(422, "Unprocessable Entity", json.dumps(status_object))

    monkeypatch.setattr(kube, "read_deployment", lambda namespace, name: None)
    monkeypatch.setattr(kube, "create_deployment", refused)
    pool = Pool.from_body({**pool_body, "spec": {**pool_body["spec"], "scheduler": {"enabled": True}}})
    with pytest.raises(kopf.TemporaryError):
        scheduler.apply(pool)
    run_tick(pool_body, FakeHub(depth(ready=0)), [], WorkerDeployment(0, 0, 0))
    stalled = {c["type"]: c for c in rec.status["conditions"]}["Stalled"]
    assert (stalled["status"], stalled["reason"]) == ("True", "DeploymentRejected")
    assert server_message in stalled["message"]
    assert ("Warning", "DeploymentRejected", stalled["message"]) in rec.events
    assert "s3cret" not in json.dumps([rec.status, rec.events])  # the pool's DSN is in none of it

    monkeypatch.setattr(kube, "create_deployment", lambda manifest: manifest)
    scheduler.apply(pool)
    run_tick(pool_body, FakeHub(depth(ready=0)), [], WorkerDeployment(0, 0, 0))
    assert {c["type"]: c for c in rec.status["conditions"]}["Stalled"]["status"] == "False"


def test_a_refused_scale_stalls_the_pool_until_a_scale_succeeds(
    monkeypatch: pytest.MonkeyPatch, pool_body: Any
) -> None:
    rec = Recorder(monkeypatch)
    applied(pool_body, 0)

    def refused(namespace: str, name: str, replicas: int) -> int:
        raise kube.ApiError(403, "Forbidden")

    monkeypatch.setattr(kube, "scale_deployment", refused)
    run_tick(pool_body, FakeHub(depth(ready=12)), [], WorkerDeployment(0, 0, 0))
    stalled = {c["type"]: c for c in rec.status["conditions"]}["Stalled"]
    assert (stalled["status"], stalled["reason"]) == ("True", "DeploymentRejected")
    assert "403 Forbidden" in stalled["message"]

    monkeypatch.setattr(kube, "scale_deployment", rec._scale)
    run_tick(pool_body, FakeHub(depth(ready=12)), [], WorkerDeployment(0, 0, 0))
    assert rec.calls == [("scale", 3)]
    assert {c["type"]: c for c in rec.status["conditions"]}["Stalled"]["status"] == "False"


def test_pods_that_cannot_pull_their_image_stall_the_pool(
    monkeypatch: pytest.MonkeyPatch, pool_body: Any
) -> None:
    rec = Recorder(monkeypatch)
    applied(pool_body, 1)
    waiting = {"reason": "ErrImagePull", "message": 'pull access denied for "registry.example/shop-worker"'}
    pod = {"metadata": {"name": IDLE_POD}, "status": {"containerStatuses": [{"state": {"waiting": waiting}}]}}
    (indexed,) = indexes.worker_pods(
        pod, IDLE_POD, "shop", {objects.POOL_LABEL: "emails"}, pod["metadata"]
    ).values()
    run_tick(pool_body, FakeHub(depth(ready=0)), [indexed], WorkerDeployment(1, 1, 0))
    stalled = {c["type"]: c for c in rec.status["conditions"]}["Stalled"]
    assert (stalled["status"], stalled["reason"]) == ("True", "ImagePullFailed")
    assert "pull access denied" in stalled["message"]
    assert IDLE_POD in stalled["message"]


def test_a_rolling_deployment_is_reconciling(monkeypatch: pytest.MonkeyPatch, pool_body: Any) -> None:
    rec = Recorder(monkeypatch)
    applied(pool_body, 2)
    status = {"observedGeneration": 4, "replicas": 3, "updatedReplicas": 1, "readyReplicas": 3}
    (deployment,) = indexes.worker_deployments(
        "shop", {objects.POOL_LABEL: "emails"}, {"generation": 4}, {"replicas": 2}, status
    ).values()
    run_tick(pool_body, FakeHub(depth(ready=0)), [], deployment)
    reconciling = {c["type"]: c for c in rec.status["conditions"]}["Reconciling"]
    assert (reconciling["status"], reconciling["reason"]) == ("True", "RollingOut")


def test_after_an_operator_restart_a_ready_pool_stays_ready_until_re_applied(
    monkeypatch: pytest.MonkeyPatch, pool_body: Any
) -> None:
    rec = Recorder(monkeypatch)
    memory.of(("shop", "emails")).last_status = {"observedGeneration": 3}  # written by the previous process
    run_tick(pool_body, FakeHub(depth(ready=0)), [], WorkerDeployment(0, 0, 0))
    assert {c["type"]: c["status"] for c in rec.status["conditions"]}["Ready"] == "True"
    memory.of(("shop", "emails")).last_status = {"observedGeneration": 2}  # an older spec: not yet applied
    run_tick(pool_body, FakeHub(depth(ready=0)), [], WorkerDeployment(0, 0, 0))
    reconciling = {c["type"]: c for c in rec.status["conditions"]}["Reconciling"]
    assert (reconciling["status"], reconciling["reason"]) == ("True", "NewGeneration")


def test_a_reapplied_deployment_leaves_a_lowered_max_or_spec_replicas_to_the_scaling_loop() -> None:
    # The scaling loop scales down past a lowered max or spec.replicas (deletion costs first,
    # BusyPodsDraining when busy pods go); re-applying the spec never does it behind its back.
    capped = Pool.from_body(body(scaling={"minReplicas": 1, "maxReplicas": 1}))
    assert replicas_to_apply(capped, decided=3, live=3) == 3
    assert replicas_to_apply(capped, decided=None, live=4) == 4
    assert replicas_to_apply(capped, decided=0, live=0) == 1  # raised to min at once
    assert replicas_to_apply(capped, decided=None, live=None) == 1
    fixed = Pool.from_body(body(scaling={"enabled": False}, replicas=2))
    assert replicas_to_apply(fixed, decided=5, live=5) == 5
    assert replicas_to_apply(fixed, decided=None, live=4) == 4
    assert replicas_to_apply(fixed, decided=1, live=1) == 2  # raised at once
    assert replicas_to_apply(fixed, decided=None, live=None) == 2


def manual_pool(replicas: int) -> Any:
    memory.forget(("shop", "emails"))
    return body(scaling={"enabled": False}, replicas=replicas)


def pod_costs(rec: Recorder) -> dict[str, int | None]:
    """The deletion cost each pod was given, by pod name."""
    patches = [args for kind, args in rec.calls if kind == "pod"]
    return {name: objects.pod_deletion_cost(patch) for name, patch in patches}


def test_lowered_manual_replicas_remove_idle_pods_first_and_spare_the_busy_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pool_body = manual_pool(1)  # kubectl scale twp/emails --replicas=1, from 2
    rec = Recorder(monkeypatch)
    applied(pool_body, 2)
    pods = [WorkerPod(IDLE_POD, False, None), WorkerPod(BUSY_POD, False, None)]
    reading = depth(ready=0, running_by={f"{BUSY_POD}-0": 1})
    run_tick(pool_body, FakeHub(reading), pods, WorkerDeployment(2, 2, 2))
    assert [k for k, _ in rec.calls] == ["pod", "pod", "scale"]  # costs first, then the scale-down
    assert rec.calls[-1] == ("scale", 1)
    costs = pod_costs(rec)
    assert costs[IDLE_POD] < costs[BUSY_POD]  # type: ignore[operator]
    (scaled,) = [e for e in rec.events if e[1] == "ScaledDown"]
    assert "spec.replicas is 1 (scaling disabled)" in scaled[2]
    assert not [e for e in rec.events if e[1] == "BusyPodsDraining"]  # the busy pod stays
    assert rec.status["desiredReplicas"] == 1
    memory.forget(("shop", "emails"))


def test_manual_replicas_below_the_busy_pods_are_honoured_and_drain_them_with_a_warning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pool_body = manual_pool(1)
    rec = Recorder(monkeypatch)
    applied(pool_body, 3)
    pods = busy_pods(3)
    reading = depth(ready=0, running_by={f"{pod.name}-0": 1 for pod in pods})
    run_tick(pool_body, FakeHub(reading), pods, WorkerDeployment(3, 3, 3))
    assert rec.calls[-1] == ("scale", 1)  # the user's count, busy pods or not
    (draining,) = [e for e in rec.events if e[1] == "BusyPodsDraining"]
    assert draining[0] == "Warning"
    assert "spec.replicas 1 is below the 3 pods running tasks" in draining[2]
    assert "2 busy pod(s) drain" in draining[2]
    memory.forget(("shop", "emails"))


def test_manual_replicas_are_lowered_without_a_reading_sparing_the_last_readings_busy_pod(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pool_body = manual_pool(2)
    rec = Recorder(monkeypatch)
    applied(pool_body, 2)
    pods = [WorkerPod(IDLE_POD, False, None), WorkerPod(BUSY_POD, False, None)]
    reading = depth(ready=0, running_by={f"{BUSY_POD}-0": 1})
    run_tick(pool_body, FakeHub(reading), pods, WorkerDeployment(2, 2, 2))
    assert rec.calls == []
    pool_body["spec"]["replicas"] = 1
    run_tick(pool_body, FakeHub(ProbeError("connect", "cannot connect")), pods, WorkerDeployment(2, 2, 2))
    assert rec.calls[-1] == ("scale", 1)
    costs = pod_costs(rec)
    assert costs[IDLE_POD] < costs[BUSY_POD]  # type: ignore[operator]
    memory.forget(("shop", "emails"))


def test_raised_manual_replicas_reach_the_deployment(monkeypatch: pytest.MonkeyPatch) -> None:
    pool_body = manual_pool(3)
    rec = Recorder(monkeypatch)
    applied(pool_body, 1)
    run_tick(pool_body, FakeHub(depth(ready=0)), [], WorkerDeployment(1, 1, 1))
    assert rec.calls == [("scale", 3)]
    memory.forget(("shop", "emails"))
