"""Orphaned tasks: the grace period (pure), and scaling rounds that recover them (recorders for the rest)."""

from __future__ import annotations

import datetime
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskpool_operator import kube, metrics, orphans
from taskpool_operator.handlers import memory
from taskpool_operator.handlers.indexes import WorkerDeployment, WorkerPod, worker_pods
from taskpool_operator.pool import InvalidPool, Pool
from taskpool_operator.probe.depth import OrphanRecovery, PoolDepth, ProbeError
from tests.unit.operator_samples import body
from tests.unit.test_operator_scaling import BUSY_POD, FakeHub, Recorder, applied, depth, run_tick

GONE_POD = "emails-workers-7d9f8c6b5d-zzzzz"
GONE = f"{GONE_POD}-0"
LIVE = f"{BUSY_POD}-0"
KEY = ("shop", "emails")


# -- the grace period (pure) ------------------------------------------------------------------------------


def test_a_worker_id_is_reported_on_its_second_reading_and_recovered_only_after_the_grace_period() -> None:
    first = orphans.observe({}, {GONE}, now=100.0, grace_period_s=60)
    assert first.missing_since == {GONE: 100.0}
    assert (first.confirmed, first.due) == (frozenset(), frozenset())

    second = orphans.observe(first.missing_since, {GONE}, now=105.0, grace_period_s=60)
    assert second.missing_since == {GONE: 100.0}  # the first sighting is kept
    assert (second.confirmed, second.due) == ({GONE}, frozenset())

    almost = orphans.observe(second.missing_since, {GONE}, now=159.9, grace_period_s=60)
    assert almost.due == frozenset()
    assert orphans.observe(almost.missing_since, {GONE}, now=160.0, grace_period_s=60).due == {GONE}


def test_a_pod_that_reappears_restarts_the_clock() -> None:
    seen = orphans.observe({GONE: 100.0}, {GONE}, now=150.0, grace_period_s=60).missing_since
    back = orphans.observe(seen, set(), now=155.0, grace_period_s=60)
    assert back.missing_since == {}
    assert (back.confirmed, back.due) == (frozenset(), frozenset())
    again = orphans.observe(back.missing_since, {GONE}, now=200.0, grace_period_s=60)
    assert again.missing_since == {GONE: 200.0}
    later = orphans.observe(again.missing_since, {GONE}, now=259.0, grace_period_s=60)
    assert later.due == frozenset()  # 110 s since the first sighting, but only 59 s without a break


def test_a_short_grace_still_needs_two_readings() -> None:
    assert orphans.observe({}, {GONE}, now=100.0, grace_period_s=0).due == frozenset()


@given(
    readings=st.lists(
        st.tuples(st.floats(0.0, 30.0), st.frozensets(st.sampled_from(["a-0", "b-0", "c-1"]))), max_size=12
    ),
    grace=st.floats(1.0, 60.0),
)
def test_due_ids_were_missing_without_a_break_for_the_grace_period(
    readings: list[tuple[float, frozenset[str]]], grace: float
) -> None:
    state: dict[str, float] = {}
    now = 0.0
    history: list[tuple[float, frozenset[str]]] = []
    for step, missing in readings:
        now += step
        view = orphans.observe(state, missing, now, grace)
        history.append((now, missing))
        assert view.due <= view.confirmed <= missing
        assert view.missing_since.keys() == missing
        for worker_id in view.due:
            # Missing in at least two readings in a row, the first of them `grace` seconds ago or more.
            unbroken = 0
            for _at, ids in reversed(history):
                if worker_id not in ids:
                    break
                unbroken += 1
            assert unbroken >= 2
            assert now - history[-unbroken][0] >= grace
        state = view.missing_since


def test_the_spec_defaults_to_fail_after_a_minute() -> None:
    pool = Pool.from_body(body())
    assert (pool.orphans.action, pool.orphans.grace_period_s) == ("Fail", 60.0)
    custom = Pool.from_body(body(orphans={"action": "Requeue", "gracePeriod": "2m"}))
    assert (custom.orphans.action, custom.orphans.grace_period_s) == ("Requeue", 120.0)
    with pytest.raises(InvalidPool, match=r"orphans\.action"):
        Pool.from_body(body(orphans={"action": "Retry"}))


def test_the_traceback_is_one_line_naming_the_pod() -> None:
    text = orphans.lost_worker_traceback(GONE, GONE_POD, 60)
    assert "\n" not in text
    assert GONE_POD in text
    assert "60s" in text


# -- one scaling round ------------------------------------------------------------------------------------


class RecoveringHub(FakeHub):
    """FakeHub that also records orphan recoveries and answers with every row it was asked for."""

    def __init__(self, reading: PoolDepth, error: ProbeError | None = None) -> None:
        super().__init__(reading)
        self.recoveries: list[OrphanRecovery] = []
        self.error = error

    async def recover_orphans(self, key: str, recovery: OrphanRecovery) -> dict[str, str]:
        self.recoveries.append(recovery)
        if self.error is not None:
            raise self.error
        return {f"task-{i}": rows.worker_id for i, rows in enumerate(recovery.rows)}


@pytest.fixture
def orphan_body(request: pytest.FixtureRequest) -> Any:
    memory.forget(KEY)
    metrics.forget_pool(*KEY)
    spec = getattr(request, "param", {"action": "Fail", "gracePeriod": "30s"})
    yield body(orphans=spec, scaling={"minReplicas": 1, "maxReplicas": 4, "scaleDownStabilization": "0s"})
    memory.forget(KEY)
    metrics.forget_pool(*KEY)


def _gone_for(seconds: float) -> None:
    """As if the operator first saw GONE's pod missing `seconds` ago (and in every reading since)."""
    mem = memory.of(KEY)
    mem.orphan_missing_since = {GONE: time.monotonic() - seconds}
    mem.orphans = frozenset({GONE})


def _pod_lookups(monkeypatch: pytest.MonkeyPatch, existing: set[str]) -> list[str]:
    """The API server's live pods of the pool are `existing`; returns the pools asked about."""
    asked: list[str] = []

    def live_worker_pods(namespace: str, pool: str) -> set[str]:
        asked.append(pool)
        return existing

    monkeypatch.setattr(kube, "live_worker_pods", live_worker_pods)
    return asked


def _recovered_metric(action: str) -> float | None:
    return metrics.REGISTRY.get_sample_value(
        "taskpool_orphaned_tasks_recovered_total", {"namespace": "shop", "pool": "emails", "action": action}
    )


def _reading() -> PoolDepth:
    return depth(ready=0, running_by={GONE: 2, LIVE: 1})


def test_orphans_past_the_grace_period_are_failed_once_the_api_server_confirms_the_pod_is_gone(
    monkeypatch: pytest.MonkeyPatch, orphan_body: Any
) -> None:
    rec = Recorder(monkeypatch)
    asked = _pod_lookups(monkeypatch, existing={BUSY_POD})
    applied(orphan_body, 1)
    hub = RecoveringHub(_reading())
    pods = [WorkerPod(BUSY_POD, False, None)]

    _gone_for(10)  # within the grace period: reported, not touched
    run_tick(orphan_body, hub, pods, WorkerDeployment(1, 1, 1))
    assert hub.recoveries == []
    assert asked == []
    assert rec.status["orphanedTasks"] == 2
    assert _recovered_metric("fail") == 0  # the configured action's series exists from the start

    _gone_for(31)
    run_tick(orphan_body, hub, pods, WorkerDeployment(1, 1, 1))
    (recovery,) = hub.recoveries
    assert (recovery.action, recovery.backend, recovery.exception_class_path) == (
        "Fail",
        "default",
        "django_taskpool.exceptions.WorkerLost",
    )
    assert [(r.queue, r.worker_id) for r in recovery.rows] == [("emails", GONE)]  # never the live pod's
    assert GONE_POD in recovery.rows[0].traceback
    assert asked == ["emails"]
    (event,) = [e for e in rec.events if e[1] == "OrphanedTasksFailed"]
    assert event[0] == "Warning"
    assert "1 orphaned task(s) FAILED" in event[2]
    assert GONE_POD in event[2]
    assert rec.status["orphansRecovered"] == 1
    assert rec.status["orphanedTasks"] == 1  # 2 in the reading, 1 recovered (the other finished meanwhile)
    assert _recovered_metric("fail") == 1
    assert _recovered_metric("requeue") is None


@pytest.mark.parametrize("orphan_body", [{"action": "Requeue", "gracePeriod": "5s"}], indirect=True)
def test_requeue_makes_the_rows_ready_with_a_normal_event(
    monkeypatch: pytest.MonkeyPatch, orphan_body: Any
) -> None:
    rec = Recorder(monkeypatch)
    _pod_lookups(monkeypatch, existing=set())
    applied(orphan_body, 1)
    hub = RecoveringHub(depth(ready=0, running_by={GONE: 1}))
    memory.of(KEY).last_status = {"orphansRecovered": 4}  # stored by an earlier operator run
    _gone_for(6)
    run_tick(orphan_body, hub, [], WorkerDeployment(1, 1, 1))
    assert [r.action for r in hub.recoveries] == ["Requeue"]
    (event,) = [e for e in rec.events if e[1] == "OrphanedTasksRequeued"]
    assert event[0] == "Normal"
    assert rec.status["orphansRecovered"] == 5  # cumulative across operator restarts
    assert _recovered_metric("requeue") == 1


@pytest.mark.parametrize("orphan_body", [{"action": "Report", "gracePeriod": "1s"}], indirect=True)
def test_report_only_reports(monkeypatch: pytest.MonkeyPatch, orphan_body: Any) -> None:
    rec = Recorder(monkeypatch)
    asked = _pod_lookups(monkeypatch, existing=set())
    applied(orphan_body, 1)
    hub = RecoveringHub(depth(ready=0, running_by={GONE: 1}))
    for _ in range(2):
        run_tick(orphan_body, hub, [], WorkerDeployment(1, 1, 1))
    memory.of(KEY).orphan_missing_since = {GONE: time.monotonic() - 3600}
    run_tick(orphan_body, hub, [], WorkerDeployment(1, 1, 1))
    assert hub.recoveries == []
    assert asked == []
    assert rec.status["orphanedTasks"] == 1
    (warning,) = [e for e in rec.events if e[1] == "OrphanedTasks"]
    assert "Report" in warning[2]
    assert _recovered_metric("fail") is None
    assert _recovered_metric("requeue") is None


def test_a_pod_the_watch_missed_is_never_recovered_and_its_clock_restarts(
    monkeypatch: pytest.MonkeyPatch, orphan_body: Any
) -> None:
    Recorder(monkeypatch)
    _pod_lookups(monkeypatch, existing={GONE_POD})  # the API server still has it; the index does not
    applied(orphan_body, 1)
    hub = RecoveringHub(depth(ready=0, running_by={GONE: 1}))
    _gone_for(3600)
    run_tick(orphan_body, hub, [], WorkerDeployment(1, 1, 1))
    assert hub.recoveries == []
    assert GONE not in memory.of(KEY).orphan_missing_since


def test_a_failed_recovery_is_counted_and_the_round_goes_on(
    monkeypatch: pytest.MonkeyPatch, orphan_body: Any, caplog: pytest.LogCaptureFixture
) -> None:
    rec = Recorder(monkeypatch)
    _pod_lookups(monkeypatch, existing=set())
    applied(orphan_body, 1)
    denied = ProbeError("query", "the orphan recovery failed on database app at db: permission denied")
    hub = RecoveringHub(depth(ready=0, running_by={GONE: 1}), error=denied)
    errors = metrics.REGISTRY.get_sample_value("taskpool_reconcile_errors_total", {"handler": "orphans"})
    assert errors is not None  # exists from start-up
    _gone_for(60)
    run_tick(orphan_body, hub, [], WorkerDeployment(1, 1, 1))
    assert len(hub.recoveries) == 1
    after = metrics.REGISTRY.get_sample_value("taskpool_reconcile_errors_total", {"handler": "orphans"})
    assert after == errors + 1
    assert "permission denied" in caplog.text
    assert "s3cret" not in caplog.text
    assert rec.status["orphanedTasks"] == 1  # still there: the next round tries again
    assert rec.status["orphansRecovered"] == 0
    assert GONE in memory.of(KEY).orphan_missing_since
    assert not [e for e in rec.events if e[1] == "OrphanedTasksFailed"]


# -- pods past their deletion deadline (a lost node's pods stay Terminating) --------------------------------


def test_a_pod_counts_as_gone_once_its_deletion_deadline_passed() -> None:
    assert not orphans.pod_gone(None, now=1000.0)  # not being deleted
    assert not orphans.pod_gone(1000.5, now=1000.0)  # still within its grace period
    assert orphans.pod_gone(1000.0, now=1000.0)
    assert orphans.pod_gone(990.0, now=1000.0)


def test_the_pod_index_keeps_the_deletion_deadline() -> None:
    labels = {"taskpool.dev/pool": "emails"}
    meta = {"deletionTimestamp": "2026-12-01T23:00:15Z"}
    (pod,) = worker_pods({}, GONE_POD, "shop", labels, meta).values()
    assert (pod.deleting, pod.deletion_deadline) == (True, 1796166015.0)
    (alive,) = worker_pods({}, BUSY_POD, "shop", labels, {}).values()
    assert (alive.deleting, alive.deletion_deadline) == (False, None)


def _terminating(name: str, deadline: datetime.datetime | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if deadline is not None:
        meta["deletionTimestamp"] = deadline.isoformat().replace("+00:00", "Z")
    return {"metadata": meta}


def test_the_api_server_check_leaves_out_pods_past_their_deletion_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    listed = [
        _terminating(BUSY_POD, None),
        _terminating("emails-workers-7d9f8c6b5d-ccccc", now + datetime.timedelta(minutes=5)),
        _terminating(GONE_POD, now - datetime.timedelta(seconds=1)),
    ]
    asked: list[tuple[str, str, Any, Any]] = []

    def request(verb: str, resource: kube.Resource, namespace: str, **kwargs: Any) -> dict[str, Any]:
        asked.append((verb, resource.plural, namespace, kwargs.get("params")))
        return {"items": listed}

    monkeypatch.setattr(kube, "_request", request)
    assert kube.live_worker_pods("shop", "emails") == {BUSY_POD, "emails-workers-7d9f8c6b5d-ccccc"}
    selector = "app.kubernetes.io/name=taskpool-worker,taskpool.dev/pool=emails"
    assert asked == [("list", "pods", "shop", {"labelSelector": selector})]


def test_tasks_of_a_pod_terminating_past_its_deadline_are_recovered_after_the_grace_period(
    monkeypatch: pytest.MonkeyPatch, orphan_body: Any
) -> None:
    rec = Recorder(monkeypatch)
    # The lost node's pod: still in the watch's index and on the API server, Terminating, deadline passed.
    _pod_lookups(monkeypatch, existing={BUSY_POD})
    applied(orphan_body, 1)
    hub = RecoveringHub(_reading())
    lost = WorkerPod(GONE_POD, True, None, deletion_deadline=time.time() - 1)
    pods = [WorkerPod(BUSY_POD, False, None), lost]

    run_tick(orphan_body, hub, pods, WorkerDeployment(1, 1, 1))
    assert GONE in memory.of(KEY).orphan_missing_since  # missing from this reading on: the grace starts
    _gone_for(31)
    run_tick(orphan_body, hub, pods, WorkerDeployment(1, 1, 1))
    (recovery,) = hub.recoveries
    assert [r.worker_id for r in recovery.rows] == [GONE]
    assert rec.status["orphansRecovered"] == 1


def test_tasks_of_a_pod_terminating_within_its_grace_period_are_left_alone(
    monkeypatch: pytest.MonkeyPatch, orphan_body: Any
) -> None:
    Recorder(monkeypatch)
    _pod_lookups(monkeypatch, existing={BUSY_POD, GONE_POD})
    applied(orphan_body, 1)
    hub = RecoveringHub(_reading())
    draining = WorkerPod(GONE_POD, True, None, deletion_deadline=time.time() + 600)
    for _ in range(2):
        run_tick(orphan_body, hub, [WorkerPod(BUSY_POD, False, None), draining], WorkerDeployment(1, 1, 1))
    assert hub.recoveries == []
    assert memory.of(KEY).orphan_missing_since == {}


def test_a_live_pod_behind_a_trimmed_worker_id_is_never_recovered(
    monkeypatch: pytest.MonkeyPatch, orphan_body: Any
) -> None:
    # Worker ids longer than 64 characters keep only the end of their pod's name (a process restarted
    # many times in a pod with a long name); the API server check matches them as the watch's index does.
    suffix = "-3." + "1" * 40
    trimmed = GONE_POD[-(64 - len(suffix)) :] + suffix
    assert len(trimmed) == 64
    assert not trimmed.startswith(GONE_POD)
    Recorder(monkeypatch)
    _pod_lookups(monkeypatch, existing={GONE_POD})  # the API server has it; the watch missed it
    applied(orphan_body, 1)
    hub = RecoveringHub(depth(ready=0, running_by={trimmed: 1}))
    memory.of(KEY).orphan_missing_since = {trimmed: time.monotonic() - 3600}
    memory.of(KEY).orphans = frozenset({trimmed})
    run_tick(orphan_body, hub, [], WorkerDeployment(1, 1, 1))
    assert hub.recoveries == []
    assert trimmed not in memory.of(KEY).orphan_missing_since
