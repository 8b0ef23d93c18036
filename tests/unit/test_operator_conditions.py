"""Pool conditions follow the Kubernetes API conventions."""

from __future__ import annotations

import re

import pytest

from taskpool_operator import conditions as cond
from taskpool_operator import crd

SCHEMA_REASON = crd.version_schema()["properties"]["status"]["properties"]["conditions"]["items"][
    "properties"
]["reason"]

T0 = "2026-01-01T00:00:00Z"
T1 = "2026-01-01T00:01:00Z"


def test_merge_sets_every_convention_field() -> None:
    (condition,) = cond.merge([], [cond.database_reachable(None)], generation=2, now=T0)
    assert condition == {
        "type": "DatabaseReachable",
        "status": "True",
        "reason": "ProbeSucceeded",
        "message": "the task table was read",
        "observedGeneration": 2,
        "lastTransitionTime": T0,
    }


def test_transition_time_moves_only_when_status_changes() -> None:
    first = cond.merge([], [cond.database_reachable("cannot connect")], generation=1, now=T0)
    same = cond.merge(first, [cond.database_reachable("timed out")], generation=2, now=T1)
    assert same[0]["lastTransitionTime"] == T0
    assert same[0]["message"] == "timed out"
    assert same[0]["observedGeneration"] == 2
    flipped = cond.merge(same, [cond.database_reachable(None)], generation=2, now=T1)
    assert flipped[0]["lastTransitionTime"] == T1


def test_conditions_keep_a_stable_order_and_unknown_types() -> None:
    current = [{"type": "Custom", "status": "True", "reason": "X", "message": "", "lastTransitionTime": T0}]
    merged = cond.merge(
        current,
        [cond.scaling_limited(1, 1, 0, 2), *cond.progress_conditions(READY), cond.database_reachable(None)],
        1,
        T1,
    )
    assert [c["type"] for c in merged] == [
        "Ready",
        "Reconciling",
        "Stalled",
        "DatabaseReachable",
        "ScalingLimited",
        "Custom",
    ]


def by_type(progress: cond.Progress) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in cond.progress_conditions(progress)}


def kstatus(progress: cond.Progress) -> str:
    """What kstatus (Helm 4's --wait) concludes from the conditions: Reconciling first, then Stalled."""
    conditions = by_type(progress)
    if conditions["Reconciling"][0] == "True":
        return "InProgress"
    if conditions["Stalled"][0] == "True":
        return "Failed"
    return "Current" if conditions["Ready"][0] == "True" else "InProgress"


REACHABLE = cond.database_reachable(None)
READY = cond.Progress(REACHABLE, 2, 2)
SECRET_MISSING = cond.database_reachable("Secret 'db' does not exist", reason=cond.Reason.SECRET_NOT_FOUND)


def test_a_ready_pool_is_current_and_neither_reconciling_nor_stalled() -> None:
    assert by_type(READY) == {
        "Ready": ("True", "WorkersReady"),
        "Reconciling": ("False", "AsExpected"),
        "Stalled": ("False", "AsExpected"),
    }
    assert kstatus(READY) == "Current"


@pytest.mark.parametrize(
    ("progress", "reason"),
    [
        (cond.Progress(REACHABLE, 2, 2, generation_applied=False), "NewGeneration"),
        (cond.Progress(REACHABLE, 2, 2, rolling_out=True), "RollingOut"),
        (cond.Progress(REACHABLE, 3, 1), "WorkersStarting"),
        (
            cond.Progress(cond.database_reachable("down", reason=cond.Reason.CONNECT_FAILED), 1, 1),
            "DatabaseUnreachable",
        ),
        # A Secret missing for less than the grace: it may still be created.
        (cond.Progress(SECRET_MISSING, 1, 0, secret_missing_for_s=1.0), "DatabaseUnreachable"),
    ],
)
def test_work_in_progress_is_reconciling_with_readys_reason(progress: cond.Progress, reason: str) -> None:
    conditions = by_type(progress)
    assert conditions["Ready"] == ("False", reason)
    assert conditions["Reconciling"] == ("True", reason)
    assert conditions["Stalled"][0] == "False"
    assert kstatus(progress) == "InProgress"


IMAGE_PULL = cond.pod_problem(
    "shop-workers-abc",
    [{"name": "worker", "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling"}}}],
)
CRASH_LOOP = cond.pod_problem("shop-workers-def", [{"state": {"waiting": {"reason": "CrashLoopBackOff"}}}])


@pytest.mark.parametrize(
    ("progress", "reason", "in_message"),
    [
        (
            cond.Progress(SECRET_MISSING, 1, 0, secret_missing_for_s=cond.SECRET_STALL_GRACE_S),
            "SecretNotFound",
            "'db'",
        ),
        (
            cond.Progress(
                REACHABLE,
                1,
                0,
                write_rejected=cond.Problem(cond.Reason.DEPLOYMENT_REJECTED, "Invalid value: x"),
            ),
            "DeploymentRejected",
            "Invalid value: x",
        ),
        (
            cond.Progress(REACHABLE, 1, 0, pods_rejected='pods "w" is forbidden: quota'),
            "PodsRejected",
            "quota",
        ),
        (cond.Progress(REACHABLE, 1, 0, pod_problems=[IMAGE_PULL]), "ImagePullFailed", "shop-workers-abc"),
        (
            cond.Progress(REACHABLE, 1, 0, pod_problems=[CRASH_LOOP]),
            "WorkersCrashLooping",
            "CrashLoopBackOff",
        ),
    ],
)
def test_what_needs_a_human_is_stalled_and_never_reconciling(
    progress: cond.Progress, reason: str, in_message: str
) -> None:
    (ready, reconciling, stalled) = cond.progress_conditions(progress)
    assert (stalled.status, stalled.reason) == ("True", reason)
    assert in_message in stalled.message
    assert (ready.status, ready.reason, ready.message) == ("False", reason, stalled.message)
    assert reconciling.status == "False"
    assert kstatus(progress) == "Failed"


def test_an_invalid_spec_is_stalled() -> None:
    ready, reconciling, stalled = cond.invalid_spec("scaling.minReplicas is greater than scaling.maxReplicas")
    assert (stalled.status, stalled.reason) == ("True", "InvalidSpec")
    assert "minReplicas" in stalled.message
    assert (ready.status, reconciling.status) == ("False", "False")


def test_only_waiting_reasons_that_retries_cannot_fix_are_pod_problems() -> None:
    assert cond.PodProblem("shop-workers-abc", "ImagePullBackOff", "Back-off pulling") == IMAGE_PULL
    starting = [{"state": {"waiting": {"reason": "ContainerCreating"}}}, {"state": {"running": {}}}]
    assert cond.pod_problem("p", starting) is None
    assert cond.pod_problem("p", []) is None


def test_every_reason_fits_the_crds_reason_pattern() -> None:
    pattern = re.compile(SCHEMA_REASON["pattern"])
    for reason in [*cond.Reason, *cond.EventReason]:
        assert pattern.fullmatch(reason), reason
    assert set(cond.TYPES) == {
        "Ready",
        "Reconciling",
        "Stalled",
        "DatabaseReachable",
        "ScalingActive",
        "ScalingLimited",
    }


def test_scaling_limited_names_the_bound() -> None:
    assert cond.scaling_limited(12, 1, 0, 10).reason == "TooManyReplicas"
    assert cond.scaling_limited(0, 1, 1, 10).reason == "TooFewReplicas"
    assert cond.scaling_limited(45, 10, 1, 10).status == "False"


def test_scaling_active_explains_why_not() -> None:
    assert cond.scaling_active(False, True).reason == "ScalingDisabled"
    assert cond.scaling_active(True, False).reason == "DatabaseUnreachable"
    assert cond.scaling_active(True, True).status == "True"


def test_transitions_report_status_or_reason_changes_once() -> None:
    before = cond.merge([], [cond.database_reachable(None)], 1, T0)
    after = cond.merge(before, [cond.database_reachable("down", reason="ConnectFailed")], 1, T1)
    assert [c["type"] for c in cond.transitions(before, after)] == ["DatabaseReachable"]
    again = cond.merge(after, [cond.database_reachable("still down", reason="ConnectFailed")], 1, T1)
    assert cond.transitions(after, again) == []
