"""The scaling policy: how many worker pods a pool should run. Pure: no I/O and no clock reads.

One call, `decide(spec, observation, state)`, turns the latest probe reading into a replica count, a machine
reason, a human message with the numbers, and the next `PolicyState` (a few numbers the caller keeps and
passes back; a fresh `PolicyState()` after a restart is safe, see below).

The rules, in order:

1. Probe failed (`observation.ready is None`): keep the current count (clamped into [min, max]) — never act
   on data we do not have. Reason `ProbeFailed`.
2. The raw recommendation is `ceil((ready + running) / tasks_per_replica)`: one slot per task, waiting or
   running, so a pod busy with a task is never counted as spare. Clamped into [min, max]; while any task
   runs (and the pool has pods) it is at least 1.
3. Activation: from zero pods, scale only when `ready > activation_ready_tasks`.
4. Scale-up is immediate, at most `max_scale_up_step` pods per decision when set (raising the count to
   minReplicas is never limited).
5. Scale-down is stabilized: the result is the highest recommendation over the last
   `scale_down_stabilization_seconds` (state keeps that history), at most `max_scale_down_step` pods per
   decision when set. A fresh state is seeded with the current count, so an operator restart never scales
   down before a full window has been observed. Counts above maxReplicas come down at once.
6. To zero only after `scale_to_zero_after_seconds` with no ready and no running task (and min 0).
7. Busy pods stay: the result is never below `busy_pods` (the live pods running a task), whatever rules 2-6
   say (steps and stabilization included), except that maxReplicas still wins: pods above a lowered
   maxReplicas go even when busy, and the caller says so in an Event (they drain: their tasks get the
   worker's shutdown timeout). Reason `BusyPods` when this floor is what holds or limits a scale-down. The
   stabilization window remembers what the queue asked for, not the floor: pods held only because they were
   busy go once they are idle, without another window.

Times are plain seconds on any one clock the caller chooses (e.g. wall-clock epoch seconds, which survive a
restart if the caller persists the state).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum


class Reason(StrEnum):
    """Why a decision came out as it did (stable strings: used in events, conditions and logs)."""

    SCALE_UP = "ScaleUp"
    SCALE_DOWN = "ScaleDown"
    HOLD = "Hold"
    AT_MAX = "AtMax"
    AT_MIN = "AtMin"
    STABILIZING = "Stabilizing"
    IDLE = "Idle"
    PROBE_FAILED = "ProbeFailed"
    BUSY_PODS = "BusyPods"


@dataclass(frozen=True)
class ScalingSpec:
    """The pool's scaling settings (from its TaskWorkerPool spec)."""

    min_replicas: int
    max_replicas: int
    tasks_per_replica: int = 1
    activation_ready_tasks: int = 0
    max_scale_up_step: int | None = None
    max_scale_down_step: int | None = None
    scale_down_stabilization_seconds: float = 60.0
    scale_to_zero_after_seconds: float = 300.0

    def __post_init__(self) -> None:
        if not 0 <= self.min_replicas <= self.max_replicas:
            raise ValueError(
                f"need 0 <= minReplicas <= maxReplicas, got {self.min_replicas} and {self.max_replicas}"
            )
        if self.max_replicas < 1:
            raise ValueError("maxReplicas must be at least 1")
        if self.tasks_per_replica < 1:
            raise ValueError("tasksPerReplica must be at least 1")
        if self.activation_ready_tasks < 0:
            raise ValueError("the activation threshold cannot be negative")
        for step in (self.max_scale_up_step, self.max_scale_down_step):
            if step is not None and step < 1:
                raise ValueError(f"scale steps must be at least 1 pod, got {step}")
        if self.scale_down_stabilization_seconds < 0 or self.scale_to_zero_after_seconds < 0:
            raise ValueError("durations cannot be negative")


@dataclass(frozen=True)
class Observation:
    """What the caller saw. `ready` is None when the probe failed (then `running` and `busy_pods` are
    ignored). `running` should count only tasks on this pool's live pods (orphaned rows excluded);
    `busy_pods` is how many of those pods (not being deleted) run at least one task. `current_replicas` is
    the Deployment's spec.replicas; `now` is in seconds on the caller's clock."""

    ready: int | None
    running: int
    current_replicas: int
    now: float
    busy_pods: int = 0


@dataclass(frozen=True)
class PolicyState:
    """What the policy remembers between decisions: recent (time, recommendation) pairs inside the
    stabilization window, and since when the pool has been idle (None when it is not)."""

    recommendations: tuple[tuple[float, int], ...] = field(default=())
    idle_since: float | None = None


@dataclass(frozen=True)
class Decision:
    replicas: int
    reason: Reason
    message: str
    state: PolicyState


def pods_for(tasks: int, tasks_per_replica: int) -> int:
    """The raw recommendation: one slot per task, ready or running (before bounds and stabilization)."""
    return math.ceil(tasks / tasks_per_replica)


def decide(spec: ScalingSpec, observation: Observation, state: PolicyState) -> Decision:
    """The next replica count for a pool; see the module docstring for the rules."""
    current = observation.current_replicas
    now = observation.now
    if observation.ready is None:
        held = _clamp(current, spec.min_replicas, spec.max_replicas)
        return Decision(
            held,
            Reason.PROBE_FAILED,
            f"queue probe failed; keeping {held} replicas until the queue can be read",
            state,
        )

    ready = max(0, observation.ready)
    running = max(0, observation.running)
    tasks = ready + running
    # Rule 7: never below the busy pods, but never above maxReplicas for them.
    busy_floor = min(max(0, observation.busy_pods), spec.max_replicas)
    idle_since = (now if state.idle_since is None else state.idle_since) if tasks == 0 else None
    busy_pods = f" busyPods={busy_floor}" if busy_floor else ""
    numbers = f"ready={ready} running={running}{busy_pods} tasksPerReplica={spec.tasks_per_replica}"

    wanted = pods_for(tasks, spec.tasks_per_replica)
    dormant = current == 0 and ready <= spec.activation_ready_tasks
    bounded = _clamp(0 if dormant else wanted, spec.min_replicas, spec.max_replicas)
    recommendation = max(bounded, busy_floor)
    held_for_busy = bounded < busy_floor == observation.busy_pods  # every busy pod kept, none capped

    window = spec.scale_down_stabilization_seconds
    history = state.recommendations or ((now, current),)
    # The window remembers what the queue asked for: pods held only while busy go once they are idle.
    recommendations = _remember(history, now, bounded, window)
    next_state = PolicyState(recommendations=recommendations, idle_since=idle_since)
    stabilized = max(_clamp(recommendations[0][1], spec.min_replicas, spec.max_replicas), busy_floor)

    if recommendation > current:
        step = spec.max_scale_up_step or recommendation
        replicas = max(min(recommendation, current + step), spec.min_replicas, busy_floor)
        limited = f", at most +{step} per decision" if replicas < recommendation else ""
        capped = f" (maxReplicas {spec.max_replicas})" if wanted > spec.max_replicas else ""
        return Decision(
            replicas,
            Reason.SCALE_UP,
            f"{numbers}: scaling up from {current} to {replicas} replicas{capped}{limited}",
            next_state,
        )

    if stabilized < current:
        replicas, reason, why = _scale_down(spec, current, stabilized, now, idle_since)
        if held_for_busy and replicas == busy_floor:
            reason, why = Reason.BUSY_PODS, f"{why}; {busy_floor} pods are running tasks and stay"
        return Decision(replicas, reason, f"{numbers}: {why}", next_state)

    # Holding at the current count: say why.
    if held_for_busy and busy_floor == current:
        reason = Reason.BUSY_PODS
        why = f"{busy_floor} pods are running tasks; holding {current} until they finish"
    elif recommendation < current:
        reason = Reason.STABILIZING
        why = f"{recommendation} would do; holding {current} for the {window:.0f}s stabilization window"
    elif wanted > spec.max_replicas and current == spec.max_replicas:
        reason, why = Reason.AT_MAX, f"{wanted} wanted; holding at maxReplicas {spec.max_replicas}"
    elif dormant:
        reason = Reason.IDLE
        why = f"no pods and {ready} ready (activation above {spec.activation_ready_tasks}); staying at zero"
    elif wanted < spec.min_replicas and current == spec.min_replicas:
        reason, why = Reason.AT_MIN, f"{wanted} wanted; holding at minReplicas {spec.min_replicas}"
    else:
        reason, why = Reason.HOLD, f"{current} replicas match the queue"
    return Decision(current, reason, f"{numbers}: {why}", next_state)


def _scale_down(
    spec: ScalingSpec, current: int, stabilized: int, now: float, idle_since: float | None
) -> tuple[int, Reason, str]:
    floor = 0
    if spec.max_scale_down_step is not None and current <= spec.max_replicas:
        floor = current - spec.max_scale_down_step
    replicas = max(stabilized, floor)
    if replicas > 0:
        window = spec.scale_down_stabilization_seconds
        limited = f", at most -{spec.max_scale_down_step} per decision" if replicas > stabilized else ""
        return (
            replicas,
            Reason.SCALE_DOWN,
            f"scaling down from {current} to {replicas} replicas (highest recommendation in the last "
            f"{window:.0f}s{limited})",
        )
    idle_for = 0.0 if idle_since is None else now - idle_since
    if idle_for >= spec.scale_to_zero_after_seconds:
        return 0, Reason.SCALE_DOWN, f"idle for {idle_for:.0f}s; scaling down from {current} to zero"
    waiting = f"idle for {idle_for:.0f}s; zero after {spec.scale_to_zero_after_seconds:.0f}s idle"
    if current == 1:
        return 1, Reason.IDLE, waiting
    return 1, Reason.SCALE_DOWN, f"scaling down from {current} to 1 ({waiting})"


def _remember(
    history: tuple[tuple[float, int], ...], now: float, recommendation: int, window: float
) -> tuple[tuple[float, int], ...]:
    """Appends a recommendation and keeps only what can still be the window's maximum: entries younger
    than the window and higher than every later one (so the first entry is the maximum, and the state stays
    a handful of pairs however often the caller decides)."""
    kept = [(at, value) for at, value in history if now - at < window and value > recommendation]
    return (*kept, (now, recommendation))


def _clamp(value: int, lowest: int, highest: int) -> int:
    return max(lowest, min(highest, value))
