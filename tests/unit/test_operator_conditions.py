"""Pool conditions follow the Kubernetes API conventions."""

from __future__ import annotations

from taskpool_operator import conditions as cond

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
        [cond.scaling_limited(1, 1, 0, 2), cond.ready(None, 0, 0), cond.database_reachable(None)],
        1,
        T1,
    )
    assert [c["type"] for c in merged] == ["Ready", "DatabaseReachable", "ScalingLimited", "Custom"]


def test_ready_reflects_database_and_pods() -> None:
    unreachable = cond.database_reachable("cannot connect to the database", reason="ConnectFailed")
    assert cond.ready(unreachable, 1, 1).status == "False"
    assert cond.ready(unreachable, 1, 1).reason == "DatabaseUnreachable"
    assert cond.ready(cond.database_reachable(None), 3, 1).reason == "WorkersStarting"
    assert cond.ready(cond.database_reachable(None), 3, 3).status == "True"
    assert cond.ready(None, 0, 0).status == "True"
    assert cond.ready(None, 0, 0, deployment_error="quota exceeded").reason == "DeploymentFailed"


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
