"""The scaling policy: properties checked with hypothesis, then worked examples with their numbers."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from taskpool_operator.policy import Decision, Observation, PolicyState, Reason, ScalingSpec, decide

pytestmark = pytest.mark.unit
# No per-example deadline: the machine is shared, and time is not what these tests check.
relaxed = settings(deadline=None)


@st.composite
def specs(draw: st.DrawFn) -> ScalingSpec:
    max_replicas = draw(st.integers(1, 40))
    return ScalingSpec(
        min_replicas=draw(st.integers(0, max_replicas)),
        max_replicas=max_replicas,
        tasks_per_replica=draw(st.integers(1, 8)),
        activation_ready_tasks=draw(st.integers(0, 5)),
        max_scale_up_step=draw(st.none() | st.integers(1, 10)),
        max_scale_down_step=draw(st.none() | st.integers(1, 10)),
        scale_down_stabilization_seconds=draw(st.sampled_from([0.0, 15.0, 60.0, 300.0])),
        scale_to_zero_after_seconds=draw(st.sampled_from([0.0, 30.0, 300.0])),
    )


counts = st.integers(0, 400)
# (seconds since the previous decision, ready, running) steps driving the policy before the decision checked.
histories = st.lists(st.tuples(st.sampled_from([1.0, 5.0, 20.0, 120.0]), counts, counts), max_size=12)


def replay(
    spec: ScalingSpec, history: list[tuple[float, int, int]], current: int = 0, now: float = 1_000.0
) -> tuple[PolicyState, int, float]:
    """Runs the policy over a history, applying each decision, and returns (state, replicas, time)."""
    state = PolicyState()
    for elapsed, ready, running in history:
        now += elapsed
        decision = decide(spec, Observation(ready, running if current else 0, current, now), state)
        state, current = decision.state, decision.replicas
    return state, current, now


def recommendation(spec: ScalingSpec, ready: int, running: int) -> int:
    """The raw recommendation, restated from the rules: one slot per waiting or running task."""
    wanted = math.ceil((ready + running) / spec.tasks_per_replica)
    return max(spec.min_replicas, min(spec.max_replicas, wanted))


@given(specs(), histories, counts, counts, st.integers(0, 60), st.sampled_from([1.0, 5.0, 30.0]))
@relaxed
def test_replicas_stay_within_min_and_max(
    spec: ScalingSpec,
    history: list[tuple[float, int, int]],
    ready: int,
    running: int,
    current: int,
    step: float,
) -> None:
    state, _, now = replay(spec, history)
    decision = decide(spec, Observation(ready, running, current, now + step), state)
    assert spec.min_replicas <= decision.replicas <= spec.max_replicas


@given(specs(), histories, st.integers(0, 60))
@relaxed
def test_a_failed_probe_holds_the_current_count_and_keeps_the_state(
    spec: ScalingSpec, history: list[tuple[float, int, int]], current: int
) -> None:
    state, _, now = replay(spec, history)
    decision = decide(spec, Observation(None, 0, current, now + 5), state)
    assert decision.reason is Reason.PROBE_FAILED
    assert decision.replicas == max(spec.min_replicas, min(spec.max_replicas, current))
    assert decision.state == state


@given(specs(), histories, counts, counts, counts, st.integers(0, 60))
@relaxed
def test_more_backlog_never_means_fewer_replicas(
    spec: ScalingSpec,
    history: list[tuple[float, int, int]],
    ready: int,
    extra: int,
    running: int,
    current: int,
) -> None:
    state, _, now = replay(spec, history)
    smaller = decide(spec, Observation(ready, running, current, now + 5), state)
    larger = decide(spec, Observation(ready + extra, running, current, now + 5), state)
    assert larger.replicas >= smaller.replicas


@given(specs(), histories, counts, st.integers(1, 400), st.integers(1, 60))
@relaxed
def test_never_zero_while_tasks_run(
    spec: ScalingSpec, history: list[tuple[float, int, int]], ready: int, running: int, current: int
) -> None:
    state, _, now = replay(spec, history)
    decision = decide(spec, Observation(ready, running, current, now + 1_000), state)
    assert decision.replicas >= 1


@given(
    specs(), histories, counts, counts, st.integers(0, 60), st.integers(0, 60), st.sampled_from([1.0, 300.0])
)
@relaxed
def test_replicas_never_below_the_busy_pods_while_they_fit_under_max(
    spec: ScalingSpec,
    history: list[tuple[float, int, int]],
    ready: int,
    running: int,
    current: int,
    busy_pods: int,
    step: float,
) -> None:
    """Rule 7: the busy pods are a floor (scale-down steps, stabilization and scale-to-zero included), and
    maxReplicas is the only thing that wins over it."""
    state, _, now = replay(spec, history)
    decision = decide(spec, Observation(ready, running, current, now + step, busy_pods=busy_pods), state)
    if busy_pods <= spec.max_replicas:
        assert decision.replicas >= busy_pods
    else:
        assert decision.replicas == spec.max_replicas


@given(specs(), histories, counts, counts, st.integers(0, 60), st.integers(0, 60))
@relaxed
def test_busy_pods_never_raise_a_decision_that_already_keeps_them(
    spec: ScalingSpec,
    history: list[tuple[float, int, int]],
    ready: int,
    running: int,
    current: int,
    busy_pods: int,
) -> None:
    """The floor only ever holds pods: with no busy pods, or fewer than the policy keeps anyway, the
    decision is the one without the floor."""
    state, _, now = replay(spec, history)
    without = decide(spec, Observation(ready, running, current, now + 5), state)
    assume(busy_pods <= without.replicas)
    with_busy = decide(spec, Observation(ready, running, current, now + 5, busy_pods=busy_pods), state)
    assert with_busy.replicas == without.replicas


@given(specs(), st.integers(0, 60), counts, counts, st.sampled_from([1.0, 5.0, 15.0]))
@settings(relaxed, max_examples=200)
def test_a_steady_queue_settles_without_flapping(
    spec: ScalingSpec, start: int, ready: int, running: int, interval: float
) -> None:
    """Same queue every tick: the count moves in one direction only, then stays put."""
    current, state, now = start, PolicyState(), 0.0
    seen = [current]
    for _ in range(200):
        now += interval
        decision = decide(spec, Observation(ready, running if current else 0, current, now), state)
        state, current = decision.state, decision.replicas
        seen.append(current)
    moves = {(b > a) - (b < a) for a, b in itertools.pairwise(seen)} - {0}
    assert len(moves) <= 1, f"flapped: {seen}"
    settled = decide(spec, Observation(ready, running if current else 0, current, now + interval), state)
    assert settled.replicas == current


@given(specs(), histories, st.integers(0, 60))
@settings(relaxed, max_examples=300)
def test_scale_down_waits_for_the_whole_window(
    spec: ScalingSpec, history: list[tuple[float, int, int]], start: int
) -> None:
    """A scale-down to n happens only if no recommendation above n was made within the window, and never
    before a full window has passed since the policy started (a restart must not shed pods)."""
    assume(spec.scale_down_stabilization_seconds > 0)
    window = spec.scale_down_stabilization_seconds
    current, state, now = min(start, spec.max_replicas), PolicyState(), 0.0  # above max comes down at once
    made: list[tuple[float, int]] = []
    for elapsed, ready, running in history:
        now += elapsed
        run = running if current else 0
        dormant = current == 0 and ready <= spec.activation_ready_tasks
        made.append((now, spec.min_replicas if dormant else recommendation(spec, ready, run)))
        decision = decide(spec, Observation(ready, run, current, now), state)
        if decision.replicas < current:
            assert now >= window, "scaled down before one window had passed since the start"
            recent = [value for at, value in made if now - at < window]
            assert decision.replicas >= min(current, max(recent)), (made, decision)
        state, current = decision.state, decision.replicas


@given(specs(), histories, counts, counts, st.integers(0, 60))
@relaxed
def test_scale_up_is_immediate_and_within_the_step(
    spec: ScalingSpec, history: list[tuple[float, int, int]], ready: int, running: int, current: int
) -> None:
    assume(current < spec.max_replicas)
    assume(ready > spec.activation_ready_tasks or current > 0)
    state, _, now = replay(spec, history)
    wanted = recommendation(spec, ready, running)
    decision = decide(spec, Observation(ready, running, current, now + 5), state)
    if wanted > current:
        assert decision.reason is Reason.SCALE_UP
        assert decision.replicas > current
        if spec.max_scale_up_step is not None and current >= spec.min_replicas:
            assert decision.replicas - current <= spec.max_scale_up_step


@given(specs(), histories)
@relaxed
def test_state_stays_small(spec: ScalingSpec, history: list[tuple[float, int, int]]) -> None:
    state, _, _ = replay(spec, history * 5)
    values = [value for _, value in state.recommendations]
    assert values == sorted(values, reverse=True)
    assert len(values) <= spec.max_replicas + 2


@given(specs(), st.integers(0, 5))
@relaxed
def test_no_pods_start_until_the_backlog_passes_the_activation_threshold(
    spec: ScalingSpec, ready: int
) -> None:
    assume(spec.min_replicas == 0)
    decision = decide(spec, Observation(ready, 0, 0, 10.0), PolicyState())
    if ready <= spec.activation_ready_tasks:
        assert (decision.replicas, decision.reason) == (0, Reason.IDLE)
    else:
        assert decision.replicas >= 1


@given(specs(), st.integers(1, 40), st.sampled_from([1.0, 5.0, 10.0]))
@relaxed
def test_zero_only_after_the_idle_period(spec: ScalingSpec, start: int, interval: float) -> None:
    assume(spec.min_replicas == 0)
    current, state, now = min(start, spec.max_replicas), PolicyState(), 0.0
    idle_from = now + interval
    for _ in range(400):
        now += interval
        decision = decide(spec, Observation(0, 0, current, now), state)
        state, current = decision.state, decision.replicas
        if current == 0:
            assert now - idle_from >= spec.scale_to_zero_after_seconds
            assert now - idle_from >= spec.scale_down_stabilization_seconds - interval
            break
    assert current == 0, "an idle pool with minReplicas 0 must reach zero"


# Worked examples.

SPEC = ScalingSpec(
    min_replicas=0,
    max_replicas=10,
    tasks_per_replica=2,
    scale_down_stabilization_seconds=60,
    scale_to_zero_after_seconds=300,
)


def step(
    spec: ScalingSpec, ready: int | None, running: int, current: int, now: float, state: PolicyState
) -> Decision:
    return decide(spec, Observation(ready, running, current, now), state)


def test_from_zero_to_the_backlog_in_one_decision() -> None:
    decision = step(SPEC, 7, 0, 0, 0.0, PolicyState())
    assert (decision.replicas, decision.reason) == (4, Reason.SCALE_UP)
    assert decision.message == "ready=7 running=0 tasksPerReplica=2: scaling up from 0 to 4 replicas"


def test_scale_up_step_limit() -> None:
    spec = ScalingSpec(min_replicas=0, max_replicas=10, tasks_per_replica=1, max_scale_up_step=3)
    first = step(spec, 50, 0, 1, 0.0, PolicyState())
    assert (first.replicas, first.reason) == (4, Reason.SCALE_UP)
    assert "(maxReplicas 10), at most +3 per decision" in first.message
    assert step(spec, 50, 0, 4, 5.0, first.state).replicas == 7


def test_at_max() -> None:
    decision = step(SPEC, 100, 5, 10, 0.0, PolicyState())
    assert (decision.replicas, decision.reason) == (10, Reason.AT_MAX)
    assert "53 wanted; holding at maxReplicas 10" in decision.message


def test_at_min() -> None:
    spec = ScalingSpec(min_replicas=2, max_replicas=10, tasks_per_replica=2)
    decision = step(spec, 1, 0, 2, 0.0, PolicyState())
    assert (decision.replicas, decision.reason) == (2, Reason.AT_MIN)


def test_scale_down_after_the_window_to_the_highest_recent_recommendation() -> None:
    state = PolicyState()
    held = step(SPEC, 0, 4, 5, 0.0, state)  # 2 pods would do; 5 run
    assert (held.replicas, held.reason) == (5, Reason.STABILIZING)
    dip = step(SPEC, 2, 4, 5, 30.0, held.state)  # 3 pods would do
    assert dip.reason is Reason.STABILIZING
    still = step(SPEC, 0, 4, 5, 59.0, dip.state)
    assert still.replicas == 5
    down = step(SPEC, 0, 4, 5, 61.0, still.state)  # the start (5) left the window; 3 (at 30 s) is highest
    assert (down.replicas, down.reason) == (3, Reason.SCALE_DOWN)
    later = step(SPEC, 0, 4, 3, 91.0, down.state)
    assert (later.replicas, later.reason) == (2, Reason.SCALE_DOWN)


def test_idle_pool_goes_to_one_then_zero_after_the_idle_period() -> None:
    state, current = PolicyState(), 3
    timeline: list[tuple[float, int, Reason]] = []
    for now in range(0, 400, 30):
        decision = step(SPEC, 0, 0, current, float(now), state)
        state, current = decision.state, decision.replicas
        timeline.append((float(now), current, decision.reason))
    assert timeline[0] == (0.0, 3, Reason.STABILIZING)
    assert (60.0, 1, Reason.SCALE_DOWN) in timeline
    assert (270.0, 1, Reason.IDLE) in timeline
    assert (300.0, 0, Reason.SCALE_DOWN) in timeline
    assert timeline[-1][1:] == (0, Reason.IDLE)


def test_work_arriving_resets_the_idle_clock() -> None:
    idle = step(SPEC, 0, 0, 1, 0.0, PolicyState())
    busy = step(SPEC, 1, 0, 1, 200.0, idle.state)
    assert busy.state.idle_since is None
    idle_again = step(SPEC, 0, 0, 1, 250.0, busy.state)
    assert step(SPEC, 0, 0, 1, 400.0, idle_again.state).replicas == 1
    assert step(SPEC, 0, 0, 1, 550.0, idle_again.state).replicas == 0


def test_probe_failure_holds() -> None:
    decision = step(SPEC, None, 0, 4, 0.0, PolicyState())
    assert (decision.replicas, decision.reason) == (4, Reason.PROBE_FAILED)
    assert decision.message == "queue probe failed; keeping 4 replicas until the queue can be read"


def test_lowering_max_replicas_takes_effect_at_once() -> None:
    decision = step(SPEC, 100, 0, 14, 0.0, PolicyState())
    assert (decision.replicas, decision.reason) == (10, Reason.SCALE_DOWN)


def test_busy_pods_hold_a_scale_down_the_queue_alone_would_make() -> None:
    """The issue's case: 3 tasks running on 3 pods with tasksPerReplica 4 asks for 1 pod; all 3 stay."""
    spec = ScalingSpec(
        min_replicas=0, max_replicas=5, tasks_per_replica=4, scale_down_stabilization_seconds=0
    )
    decision = decide(spec, Observation(0, 3, 3, 100.0, busy_pods=3), PolicyState())
    assert (decision.replicas, decision.reason) == (3, Reason.BUSY_PODS)
    assert decision.message == (
        "ready=0 running=3 busyPods=3 tasksPerReplica=4: "
        "3 pods are running tasks; holding 3 until they finish"
    )
    # One finishes: its pod may go, the two busy ones stay.
    decision = decide(spec, Observation(0, 2, 3, 105.0, busy_pods=2), decision.state)
    assert (decision.replicas, decision.reason) == (2, Reason.BUSY_PODS)
    assert decision.message.endswith(
        "scaling down from 3 to 2 replicas (highest recommendation in the last 0s); "
        "2 pods are running tasks and stay"
    )


def test_pods_held_only_while_busy_go_once_idle_without_another_window() -> None:
    spec = ScalingSpec(
        min_replicas=0, max_replicas=5, tasks_per_replica=4, scale_down_stabilization_seconds=60
    )
    state = PolicyState()
    for now in range(0, 150, 10):  # 3 long tasks on 3 pods for 150 s: the queue alone asks for 1 pod
        decision = decide(spec, Observation(0, 3, 3, float(now), busy_pods=3), state)
        assert decision.replicas == 3
        state = decision.state
    # Two finish: their pods are idle, and the window (which saw 1 for 60 s) lets them go at once.
    decision = decide(spec, Observation(0, 1, 3, 150.0, busy_pods=1), state)
    assert (decision.replicas, decision.reason) == (1, Reason.SCALE_DOWN)


def test_a_lowered_max_replicas_removes_busy_pods() -> None:
    spec = ScalingSpec(min_replicas=0, max_replicas=2, tasks_per_replica=4)
    decision = decide(spec, Observation(0, 4, 4, 100.0, busy_pods=4), PolicyState())
    assert (decision.replicas, decision.reason) == (2, Reason.SCALE_DOWN)


def test_scale_down_step_limit() -> None:
    spec = ScalingSpec(
        min_replicas=0, max_replicas=20, max_scale_down_step=2, scale_down_stabilization_seconds=0
    )
    decision = step(spec, 1, 0, 10, 0.0, PolicyState())
    assert (decision.replicas, decision.reason) == (8, Reason.SCALE_DOWN)
    assert "at most -2 per decision" in decision.message


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_replicas": 3, "max_replicas": 2}, "minReplicas <= maxReplicas"),
        ({"min_replicas": 0, "max_replicas": 0}, "maxReplicas must be at least 1"),
        ({"min_replicas": 0, "max_replicas": 2, "tasks_per_replica": 0}, "tasksPerReplica"),
        ({"min_replicas": 0, "max_replicas": 2, "max_scale_up_step": 0}, "scale steps"),
    ],
)
def test_invalid_specs_are_refused(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ScalingSpec(**kwargs)
