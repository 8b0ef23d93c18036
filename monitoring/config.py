"""The one source of taskpool's dashboards, recording rules and alerts.

Metric names come from docs/contracts.md. Dashboards select with the Grafana variables `$namespace`, `$pool`,
`$queue` and `$task` (multi-value, so always `=~`); rules aggregate over every series. Alert thresholds are
`Param`s: the chart exposes each as `alerts.<alert.values_key>.<param.name>`, the plain rule file and the
dashboards' threshold lines use the defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

RUNBOOK_URL = "https://github.com/taskpool/taskpool/blob/main/docs/runbooks.md"
TAGS = ("taskpool",)

# Operator metrics (one series per pool or queue, labels set by the operator).
READY = "taskpool_queue_ready_tasks"
RUNNING = "taskpool_queue_running_tasks"
OLDEST_READY_AGE = "taskpool_queue_oldest_ready_age_seconds"
ORPHANED = "taskpool_pool_orphaned_tasks"
ORPHANS_RECOVERED = "taskpool_orphaned_tasks_recovered_total"
DESIRED_REPLICAS = "taskpool_pool_desired_replicas"
CURRENT_REPLICAS = "taskpool_pool_current_replicas"
READY_REPLICAS = "taskpool_pool_ready_replicas"
MIN_REPLICAS = "taskpool_pool_min_replicas"
MAX_REPLICAS = "taskpool_pool_max_replicas"
DATABASE_REACHABLE = "taskpool_pool_database_reachable"
POOL_CONDITION = "taskpool_pool_condition"
SCALE_EVENTS = "taskpool_scale_events_total"
PROBE_DURATION = "taskpool_probe_duration_seconds"
PROBE_ERRORS = "taskpool_probe_errors_total"
RECONCILE_ERRORS = "taskpool_reconcile_errors_total"
OPERATOR_BUILD_INFO = "taskpool_operator_build_info"
SCHEDULER_READY_REPLICAS = "taskpool_pool_scheduler_ready_replicas"

# Worker runtime metrics (per pod; the PodMonitor adds namespace, pool and pod).
STARTED = "taskpool_worker_tasks_started_total"
FINISHED = "taskpool_worker_tasks_finished_total"
DURATION = "taskpool_worker_task_duration_seconds"
QUEUE_WAIT = "taskpool_worker_task_queue_wait_seconds"
IN_PROGRESS = "taskpool_worker_tasks_in_progress"
PROCESS_RESTARTS = "taskpool_worker_process_restarts_total"
PROCESSES = "taskpool_worker_processes"
TASKS_LOST = "taskpool_worker_tasks_lost_total"
TIME_LIMIT_KILLS = "taskpool_worker_time_limit_kills_total"
SOFT_TIME_LIMITS = "taskpool_worker_soft_time_limits_total"
RETRIES = "taskpool_worker_task_retries_total"

# Scheduler metrics (per scheduler pod; the scheduler PodMonitor adds namespace, pool and pod).
SCHEDULE_LAST_FIRE = "taskpool_schedule_last_fire_timestamp_seconds"
SCHEDULE_NEXT_FIRE = "taskpool_schedule_next_fire_timestamp_seconds"
SCHEDULE_PERIOD = "taskpool_schedule_period_seconds"
SCHEDULE_FIRES = "taskpool_schedule_fires_total"
SCHEDULE_MISFIRES = "taskpool_schedule_misfires_total"
SCHEDULER_LAST_TICK = "taskpool_scheduler_last_tick_timestamp_seconds"
RETENTION_PRUNED = "taskpool_retention_rows_pruned_total"
RETENTION_OLDEST_FINISHED_AGE = "taskpool_retention_oldest_finished_age_seconds"

# Recorded series (level:metric:operations).
READY_BY_POOL = "namespace_pool:taskpool_queue_ready_tasks:sum"
FINISHED_BY_OUTCOME = "namespace_pool_queue_outcome:taskpool_worker_tasks_finished:rate5m"
FINISHED_BY_QUEUE = "namespace_pool_queue:taskpool_worker_tasks_finished:rate5m"
FAILURE_RATIO = "namespace_pool_queue:taskpool_worker_tasks_failed:ratio_rate5m"
DURATION_QUANTILES = "namespace_pool_queue:taskpool_worker_task_duration_seconds:histogram_quantile"
QUEUE_WAIT_QUANTILES = "namespace_pool_queue:taskpool_worker_task_queue_wait_seconds:histogram_quantile"

QUANTILES = ("0.5", "0.95", "0.99")
QUEUE_LABELS = "namespace, pool, queue"
SCHEDULE_LABELS = "namespace, pool, schedule"


def selector(metric: str, *matchers: str) -> str:
    """`metric{m1, m2}`; PromQL braces kept out of f-strings."""
    return metric + "{" + ", ".join(matchers) + "}" if matchers else metric


# ---------------------------------------------------------------------------------------------------------
# Alerts


@dataclass(frozen=True)
class Param:
    """A threshold of one alert, set in the chart as `alerts.<values_key>.<name>`."""

    name: str
    default: float | int | str
    help: str
    kind: Literal["number", "duration"] = "number"


@dataclass(frozen=True)
class Alert:
    """An alerting rule. `expr` and `for_` may use `${param}`; `for_` defaults to the param named `for`."""

    name: str
    values_key: str
    severity: Literal["warning", "critical"]
    expr: str
    summary: str
    description: str
    params: tuple[Param, ...]
    for_: str = "${for}"

    @property
    def runbook_anchor(self) -> str:
        return self.name.lower()

    @property
    def runbook_url(self) -> str:
        return f"{RUNBOOK_URL}#{self.runbook_anchor}"

    def defaults(self) -> dict[str, str]:
        return {p.name: str(p.default) for p in self.params}


def _for(default: str) -> Param:
    return Param("for", default, "How long the condition must hold before the alert fires.", "duration")


FAILURE_RATIO_THRESHOLD = Param("ratio", 0.1, "Failed / finished tasks over 5 minutes above which it fires.")
OLDEST_READY_AGE_THRESHOLD = Param("ageSeconds", 600, "Age in seconds of the oldest ready task.")

ALERTS: tuple[Alert, ...] = (
    Alert(
        name="TaskpoolBacklogGrowingAtMaxReplicas",
        values_key="backlogGrowingAtMaxReplicas",
        severity="warning",
        expr=(
            f"(\n  {READY_BY_POOL} >= ${{minReadyTasks}}\n"
            f"  and deriv({READY_BY_POOL}[10m]) > 0\n)\n"
            f"and on (namespace, pool)\n"
            f"(max by (namespace, pool) ({CURRENT_REPLICAS}) >= max by (namespace, pool) ({MAX_REPLICAS}))"
        ),
        summary="Backlog of pool {{ $labels.namespace }}/{{ $labels.pool }} grows at its replica limit.",
        description=(
            "Pool {{ $labels.namespace }}/{{ $labels.pool }} runs at maxReplicas and its ready tasks "
            "({{ $value }}) kept growing over the last 10 minutes: the workers cannot keep up."
        ),
        params=(
            Param("minReadyTasks", 1, "Ready tasks below which a growing backlog is ignored."),
            _for("15m"),
        ),
    ),
    Alert(
        name="TaskpoolOldestReadyTaskTooOld",
        values_key="oldestReadyTask",
        severity="warning",
        expr=f"max by ({QUEUE_LABELS}) ({OLDEST_READY_AGE}) > ${{ageSeconds}}",
        summary=(
            "Tasks wait too long in {{ $labels.namespace }}/{{ $labels.pool }} queue {{ $labels.queue }}."
        ),
        description=(
            "The oldest ready task of queue {{ $labels.queue }} in pool {{ $labels.namespace }}/"
            "{{ $labels.pool }} has waited {{ $value | humanizeDuration }}."
        ),
        params=(OLDEST_READY_AGE_THRESHOLD, _for("5m")),
    ),
    Alert(
        name="TaskpoolHighFailureRatio",
        values_key="failureRatio",
        severity="warning",
        expr=(
            f"{FAILURE_RATIO} > ${{ratio}}\n"
            f"and on ({QUEUE_LABELS}) {FINISHED_BY_QUEUE} * 300 >= ${{minFinishedTasks}}"
        ),
        summary="Many tasks fail in {{ $labels.namespace }}/{{ $labels.pool }} queue {{ $labels.queue }}.",
        description=(
            "{{ $value | humanizePercentage }} of the tasks that finished in queue {{ $labels.queue }} "
            "of pool {{ $labels.namespace }}/{{ $labels.pool }} over the last 5 minutes failed."
        ),
        params=(
            FAILURE_RATIO_THRESHOLD,
            Param("minFinishedTasks", 10, "Tasks that must finish in 5 minutes before the ratio counts."),
            _for("10m"),
        ),
    ),
    Alert(
        name="TaskpoolOrphanedTasks",
        values_key="orphanedTasks",
        severity="warning",
        expr=f"max by (namespace, pool) ({ORPHANED}) >= ${{minTasks}}",
        summary="Tasks of pool {{ $labels.namespace }}/{{ $labels.pool }} are stuck RUNNING.",
        description=(
            "{{ $value }} tasks of pool {{ $labels.namespace }}/{{ $labels.pool }} are RUNNING on worker "
            "pods that no longer exist, and were not recovered (spec.orphans.action is Report, or the "
            "recovery fails: see the operator's log)."
        ),
        params=(Param("minTasks", 1, "Orphaned tasks from which it fires."), _for("15m")),
    ),
    Alert(
        name="TaskpoolDatabaseUnreachable",
        values_key="databaseUnreachable",
        severity="critical",
        expr=f"max by (namespace, pool) ({DATABASE_REACHABLE}) == 0",
        summary="The operator cannot reach the database of pool {{ $labels.namespace }}/{{ $labels.pool }}.",
        description=(
            "The operator's queue probe for pool {{ $labels.namespace }}/{{ $labels.pool }} fails: the pool "
            "is not scaled and its queue is not observed."
        ),
        params=(_for("5m"),),
    ),
    Alert(
        name="TaskpoolOperatorDown",
        values_key="operatorDown",
        severity="critical",
        expr=f"absent({OPERATOR_BUILD_INFO})",
        summary="The taskpool operator exposes no metrics.",
        description=(
            "No taskpool operator has been scraped: pools are neither scaled nor observed, and every other "
            "taskpool alert is blind."
        ),
        params=(_for("10m"),),
    ),
    Alert(
        name="TaskpoolWorkerRestarts",
        values_key="workerRestarts",
        severity="warning",
        expr=(f"sum by (namespace, pool, pod) (increase({PROCESS_RESTARTS}[15m])) >= ${{restarts}}"),
        summary="Worker processes of {{ $labels.namespace }}/{{ $labels.pool }} keep restarting.",
        description=(
            "Pod {{ $labels.pod }} of pool {{ $labels.namespace }}/{{ $labels.pool }} restarted "
            "{{ $value | humanize }} worker processes in 15 minutes."
        ),
        params=(
            Param("restarts", 3, "Worker process restarts in 15 minutes from which it fires."),
            _for("5m"),
        ),
    ),
    Alert(
        name="TaskpoolTaskTimeLimitKills",
        values_key="taskTimeLimitKills",
        severity="warning",
        expr=f"sum by (namespace, pool, task) (increase({TIME_LIMIT_KILLS}[30m])) >= ${{kills}}",
        summary="Task {{ $labels.task }} of {{ $labels.namespace }}/{{ $labels.pool }} keeps timing out.",
        description=(
            "{{ $value | humanize }} runs of task {{ $labels.task }} in pool {{ $labels.namespace }}/"
            "{{ $labels.pool }} were killed at their hard time limit in 30 minutes (stored FAILED with "
            "TimeLimitExceeded)."
        ),
        params=(
            Param("kills", 3, "Hard time-limit kills of one task in 30 minutes from which it fires."),
            _for("1m"),
        ),
    ),
    Alert(
        name="TaskpoolTaskRetriesExhausted",
        values_key="taskRetriesExhausted",
        severity="warning",
        expr=(
            f"sum by (namespace, pool, task) (increase({selector(RETRIES, 'outcome="exhausted"')}[30m]))"
            " >= ${exhausted}"
        ),
        summary="Task {{ $labels.task }} of {{ $labels.namespace }}/{{ $labels.pool }} runs out of retries.",
        description=(
            "{{ $value | humanize }} runs of task {{ $labels.task }} in pool {{ $labels.namespace }}/"
            "{{ $labels.pool }} failed their last attempt in 30 minutes and are stored FAILED."
        ),
        params=(
            Param("exhausted", 1, "Tasks of one path out of attempts in 30 minutes from which it fires."),
            _for("0m"),
        ),
    ),
    Alert(
        name="TaskpoolScheduleNotFiring",
        values_key="scheduleNotFiring",
        severity="warning",
        # Schedule names come from each pool's settings, so only (namespace, pool, schedule) is one schedule.
        # Its age is taken at the scrape (timestamp(), not time()): a sample up to one scrape interval old
        # would otherwise add that interval to every age and fire for schedules shorter than the interval.
        expr=(
            f"min by ({SCHEDULE_LABELS}) (timestamp({SCHEDULE_LAST_FIRE}) - {SCHEDULE_LAST_FIRE})\n"
            f"  > ${{periods}} * max by ({SCHEDULE_LABELS}) ({SCHEDULE_PERIOD})\n"
            f"and max by ({SCHEDULE_LABELS}) ({SCHEDULE_LAST_FIRE}) > 0"
        ),
        summary=(
            "Schedule {{ $labels.schedule }} of {{ $labels.namespace }}/{{ $labels.pool }} "
            "has stopped firing."
        ),
        description=(
            "Periodic task schedule {{ $labels.schedule }} of pool "
            "{{ $labels.namespace }}/{{ $labels.pool }} last fired {{ $value | humanizeDuration }} ago, "
            "more than its periods allow: the scheduler is stuck or cannot write to the database."
        ),
        params=(
            Param("periods", 2, "Periods of the schedule without a fire from which it fires."),
            _for("1m"),
        ),
    ),
    Alert(
        name="TaskpoolSchedulerDown",
        values_key="schedulerDown",
        severity="critical",
        # The operator's gauge outlives the scheduler pod (whose own series vanish with it); the heartbeat
        # catches a scheduler that runs but no longer looks at its schedules.
        expr=(
            f"max by (namespace, pool) ({SCHEDULER_READY_REPLICAS}) < 1\n"
            f"or\ntime() - max by (namespace, pool) ({SCHEDULER_LAST_TICK}) > ${{staleSeconds}}"
        ),
        summary="The scheduler of pool {{ $labels.namespace }}/{{ $labels.pool }} is down.",
        description=(
            "Pool {{ $labels.namespace }}/{{ $labels.pool }} has spec.scheduler enabled but no ready "
            "scheduler pod, or its scheduler stopped looking at its schedules: no periodic task of the pool "
            "is enqueued and retention prunes nothing."
        ),
        params=(
            Param("staleSeconds", 120, "Seconds without a scheduler heartbeat from which it counts as down."),
            _for("5m"),
        ),
    ),
)


# ---------------------------------------------------------------------------------------------------------
# Recording rules


@dataclass(frozen=True)
class RecordingRule:
    record: str
    expr: str
    labels: dict[str, str] = field(default_factory=dict)


def _quantile_rules(record: str, histogram: str) -> list[RecordingRule]:
    return [
        RecordingRule(
            record,
            f"histogram_quantile({q}, sum by ({QUEUE_LABELS}, le) (rate({histogram}_bucket[5m])))",
            {"quantile": q},
        )
        for q in QUANTILES
    ]


RECORDING_RULES: tuple[RecordingRule, ...] = (
    RecordingRule(READY_BY_POOL, f"sum by (namespace, pool) ({READY})"),
    RecordingRule(FINISHED_BY_OUTCOME, f"sum by ({QUEUE_LABELS}, outcome) (rate({FINISHED}[5m]))"),
    RecordingRule(FINISHED_BY_QUEUE, f"sum by ({QUEUE_LABELS}) ({FINISHED_BY_OUTCOME})"),
    RecordingRule(
        FAILURE_RATIO,
        f'sum by ({QUEUE_LABELS}) ({FINISHED_BY_OUTCOME}{{outcome="failed"}})\n/ {FINISHED_BY_QUEUE}',
    ),
    *_quantile_rules(DURATION_QUANTILES, DURATION),
    *_quantile_rules(QUEUE_WAIT_QUANTILES, QUEUE_WAIT),
)


# ---------------------------------------------------------------------------------------------------------
# Dashboards

PanelKind = Literal["timeseries", "bars", "stat", "table", "state"]


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    title: str
    description: str
    kind: PanelKind
    unit: str
    queries: tuple[Query, ...]
    # (value, colour) steps above the base colour; also drawn as lines on time series.
    thresholds: tuple[tuple[float, str], ...] = ()
    min: float | None = 0
    max: float | None = None
    width: int = 8
    height: int = 8
    # Value -> text mappings, e.g. {0: ("unreachable", "red")}.
    mappings: dict[int, tuple[str, str]] = field(default_factory=dict)
    # Series whose legend ends with one of these are limits: drawn dashed, without fill.
    limits: tuple[str, ...] = ()


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


@dataclass(frozen=True)
class Variable:
    """A multi-value query variable with "All" (`.*`), chained by using earlier variables in `query`."""

    name: str
    label: str
    query: str


@dataclass(frozen=True)
class Dashboard:
    uid: str
    file: str
    title: str
    description: str
    variables: tuple[Variable, ...]
    rows: tuple[Row, ...]
    tags: tuple[str, ...] = ()

    @property
    def panels(self) -> tuple[Panel, ...]:
        return tuple(p for row in self.rows for p in row.panels)


RATE = "$__rate_interval"
NS = 'namespace=~"$namespace"'
POOL = 'pool=~"$pool"'
QUEUE = 'queue=~"$queue"'
TASK = 'task=~"$task"'
FAILED = 'outcome="failed"'
POOL_LEGEND = "{{namespace}}/{{pool}}"
QUEUE_LEGEND = "{{namespace}}/{{pool}} {{queue}}"
RED_AT_ZERO = {0: ("unreachable", "red"), 1: ("reachable", "green")}


def _percentiles(histogram: str, matchers: tuple[str, ...], by: str = "") -> tuple[Query, ...]:
    """p50/p95/p99 of a histogram over the selection, optionally split by `by` labels."""
    group = f"{by}, le" if by else "le"
    legend_prefix = "".join("{{" + label.strip() + "}} " for label in by.split(",") if label.strip())
    return tuple(
        Query(
            f"histogram_quantile({q}, sum by ({group}) "
            f"(rate({selector(histogram + '_bucket', *matchers)}[{RATE}])))",
            f"{legend_prefix}p{round(float(q) * 100)}",
        )
        for q in QUANTILES
    )


def _failure_ratio(by: str, matchers: tuple[str, ...]) -> str:
    return (
        f"sum by ({by}) (rate({selector(FINISHED, *matchers, FAILED)}[{RATE}]))\n"
        f"/ sum by ({by}) (rate({selector(FINISHED, *matchers)}[{RATE}]))"
    )


_Q = (NS, POOL, QUEUE)
_P = (NS, POOL)
SCHEDULE_LEGEND = "{{namespace}}/{{pool}} {{schedule}}"
_RATIO_STEPS = ((float(FAILURE_RATIO_THRESHOLD.default), "red"),)

OVERVIEW = Dashboard(
    uid="taskpool-overview",
    file="taskpool-overview.json",
    title="Taskpool / Overview",
    description="Queues, throughput, latency and scaling of taskpool worker pools.",
    variables=(
        Variable("namespace", "Namespace", f"label_values({MAX_REPLICAS}, namespace)"),
        Variable("pool", "Pool", f"label_values({selector(MAX_REPLICAS, NS)}, pool)"),
        Variable("queue", "Queue", f"label_values({selector(READY, NS, POOL)}, queue)"),
    ),
    rows=(
        Row(
            "Queue",
            (
                Panel(
                    "Ready tasks",
                    "Tasks that a worker could claim now, per queue (the operator's probe caps the count).",
                    "timeseries",
                    "short",
                    (Query(f"sum by ({QUEUE_LABELS}) ({selector(READY, *_Q)})", QUEUE_LEGEND),),
                ),
                Panel(
                    "Running tasks",
                    "Tasks in status RUNNING in the task table, per queue.",
                    "timeseries",
                    "short",
                    (Query(f"sum by ({QUEUE_LABELS}) ({selector(RUNNING, *_Q)})", QUEUE_LEGEND),),
                ),
                Panel(
                    "Oldest ready task age",
                    "How long the oldest claimable task has waited; 0 when the queue is empty.",
                    "timeseries",
                    "s",
                    (Query(f"max by ({QUEUE_LABELS}) ({selector(OLDEST_READY_AGE, *_Q)})", QUEUE_LEGEND),),
                    thresholds=((float(OLDEST_READY_AGE_THRESHOLD.default), "red"),),
                ),
            ),
        ),
        Row(
            "Throughput",
            (
                Panel(
                    "Finished tasks by outcome",
                    "Tasks finished per second by the workers, successful and failed.",
                    "timeseries",
                    "ops",
                    (
                        Query(
                            f"sum by (outcome) (rate({selector(FINISHED, *_Q)}[{RATE}]))",
                            "{{outcome}}",
                        ),
                    ),
                ),
                Panel(
                    "Failure ratio",
                    "Failed / finished tasks, per queue.",
                    "timeseries",
                    "percentunit",
                    (Query(_failure_ratio(QUEUE_LABELS, _Q), QUEUE_LEGEND),),
                    thresholds=_RATIO_STEPS,
                    max=1,
                ),
                Panel(
                    "Tasks in progress (workers)",
                    "Tasks the worker processes are running now, as the workers report it.",
                    "timeseries",
                    "short",
                    (Query(f"sum by ({QUEUE_LABELS}) ({selector(IN_PROGRESS, *_Q)})", QUEUE_LEGEND),),
                ),
            ),
        ),
        Row(
            "Latency",
            (
                Panel(
                    "Run time",
                    "Time from a task's start to its result, percentiles over the selection.",
                    "timeseries",
                    "s",
                    _percentiles(DURATION, _Q),
                    width=12,
                ),
                Panel(
                    "Queue wait",
                    "Time from enqueue (or run_after) to start, percentiles over the selection.",
                    "timeseries",
                    "s",
                    _percentiles(QUEUE_WAIT, _Q),
                    width=12,
                ),
            ),
        ),
        Row(
            "Scaling",
            (
                Panel(
                    "Replicas: desired, current, min, max",
                    "The operator's desired replicas against the Deployment's current and ready replicas and "
                    "the pool's limits.",
                    "timeseries",
                    "short",
                    tuple(
                        Query(f"sum by (namespace, pool) ({selector(metric, *_P)})", f"{POOL_LEGEND} {name}")
                        for name, metric in (
                            ("desired", DESIRED_REPLICAS),
                            ("current", CURRENT_REPLICAS),
                            ("ready", READY_REPLICAS),
                            ("min", MIN_REPLICAS),
                            ("max", MAX_REPLICAS),
                        )
                    ),
                    limits=("min", "max"),
                ),
                Panel(
                    "Scale events",
                    "Scale-ups and scale-downs the operator made.",
                    "bars",
                    "short",
                    (
                        Query(
                            f"sum by (namespace, pool, direction) "
                            f"(increase({selector(SCALE_EVENTS, *_P)}[{RATE}]))",
                            f"{POOL_LEGEND} {{{{direction}}}}",
                        ),
                    ),
                ),
                Panel(
                    "Database reachability",
                    "Whether the operator's last queue probe reached the pool's database.",
                    "state",
                    "none",
                    (Query(f"min by (namespace, pool) ({selector(DATABASE_REACHABLE, *_P)})", POOL_LEGEND),),
                    mappings=RED_AT_ZERO,
                    max=1,
                ),
            ),
        ),
        Row(
            "Workers",
            (
                Panel(
                    "Orphaned tasks",
                    "RUNNING tasks whose worker pod no longer exists and the operator has not recovered yet, "
                    "and those it marked FAILED or made READY again (spec.orphans.action).",
                    "timeseries",
                    "short",
                    (
                        Query(f"max by (namespace, pool) ({selector(ORPHANED, *_P)})", POOL_LEGEND),
                        Query(
                            f"sum by (namespace, pool, action) "
                            f"(increase({selector(ORPHANS_RECOVERED, *_P)}[{RATE}]))",
                            POOL_LEGEND + " recovered ({{action}})",
                        ),
                    ),
                    thresholds=((1, "red"),),
                ),
                Panel(
                    "Worker processes",
                    "Worker child processes alive, summed over the pool's pods.",
                    "timeseries",
                    "short",
                    (Query(f"sum by (namespace, pool) ({selector(PROCESSES, *_P)})", POOL_LEGEND),),
                ),
                Panel(
                    "Worker process restarts",
                    "Worker child processes the supervisors restarted.",
                    "bars",
                    "short",
                    (
                        Query(
                            f"sum by (namespace, pool) (increase({selector(PROCESS_RESTARTS, *_P)}[{RATE}]))",
                            POOL_LEGEND,
                        ),
                    ),
                ),
            ),
        ),
        Row(
            "Schedules and retention",
            (
                Panel(
                    "Schedule fires",
                    "Periodic tasks enqueued by the pools' schedulers (each fire once, whichever scheduler "
                    "won it), and fires given up because no scheduler ran at their instant.",
                    "bars",
                    "short",
                    (
                        Query(
                            f"sum by ({SCHEDULE_LABELS}) (increase({selector(SCHEDULE_FIRES, *_P)}[{RATE}]))",
                            SCHEDULE_LEGEND,
                        ),
                        Query(
                            f"sum by ({SCHEDULE_LABELS}) "
                            f"(increase({selector(SCHEDULE_MISFIRES, *_P)}[{RATE}]))",
                            SCHEDULE_LEGEND + " missed",
                        ),
                    ),
                    width=6,
                ),
                Panel(
                    "Time since last fire",
                    "Since the latest recorded fire of each schedule (left out before its first), until its "
                    "next fire, and its period; TaskpoolScheduleNotFiring fires past two periods.",
                    "timeseries",
                    "s",
                    (
                        Query(
                            f"time() - max by ({SCHEDULE_LABELS}) ({selector(SCHEDULE_LAST_FIRE, *_P)} > 0)",
                            SCHEDULE_LEGEND,
                        ),
                        Query(
                            f"max by ({SCHEDULE_LABELS}) ({selector(SCHEDULE_NEXT_FIRE, *_P)}) - time()",
                            SCHEDULE_LEGEND + " next in",
                        ),
                        Query(
                            f"max by ({SCHEDULE_LABELS}) ({selector(SCHEDULE_PERIOD, *_P)})",
                            SCHEDULE_LEGEND + " period",
                        ),
                    ),
                    limits=("period",),
                    width=6,
                ),
                Panel(
                    "Rows pruned",
                    "Finished task rows the schedulers deleted past their retention period (spec.retention).",
                    "bars",
                    "short",
                    (
                        Query(
                            f"sum by (namespace, pool, status) "
                            f"(increase({selector(RETENTION_PRUNED, *_P)}[{RATE}]))",
                            POOL_LEGEND + " {{status}}",
                        ),
                    ),
                    width=6,
                ),
                Panel(
                    "Oldest finished row",
                    "Age of the oldest finished row in the pool's queues: stays near the retention period "
                    "while retention keeps up.",
                    "timeseries",
                    "s",
                    (
                        Query(
                            f"max by (namespace, pool, status) "
                            f"({selector(RETENTION_OLDEST_FINISHED_AGE, *_P)})",
                            POOL_LEGEND + " {{status}}",
                        ),
                    ),
                    width=6,
                ),
            ),
        ),
    ),
)

_T = (NS, POOL, TASK)

TASKS = Dashboard(
    uid="taskpool-tasks",
    file="taskpool-tasks.json",
    title="Taskpool / Tasks",
    description="Rate, failures and run time of each task path.",
    variables=(
        Variable("namespace", "Namespace", f"label_values({STARTED}, namespace)"),
        Variable("pool", "Pool", f"label_values({selector(STARTED, NS)}, pool)"),
        Variable("task", "Task", f"label_values({selector(STARTED, NS, POOL)}, task)"),
    ),
    rows=(
        Row(
            "Rate",
            (
                Panel(
                    "Finished tasks per task",
                    "Tasks finished per second, by task path.",
                    "timeseries",
                    "ops",
                    (Query(f"sum by (task) (rate({selector(FINISHED, *_T)}[{RATE}]))", "{{task}}"),),
                    width=12,
                ),
                Panel(
                    "Failed tasks per task",
                    "Tasks failed per second, by task path.",
                    "timeseries",
                    "ops",
                    (Query(f"sum by (task) (rate({selector(FINISHED, *_T, FAILED)}[{RATE}]))", "{{task}}"),),
                    width=12,
                ),
            ),
        ),
        Row(
            "Run time",
            (
                Panel(
                    "Run time p95 per task",
                    "95th percentile of the run time, by task path.",
                    "timeseries",
                    "s",
                    (_percentiles(DURATION, _T, by="task")[1],),
                    width=12,
                ),
                Panel(
                    "Run time p50 / p95 / p99",
                    "Run time percentiles over the selected tasks.",
                    "timeseries",
                    "s",
                    _percentiles(DURATION, _T),
                    width=12,
                ),
                Panel(
                    "Queue wait p95 per task",
                    "95th percentile of the time tasks waited before they started, by task path.",
                    "timeseries",
                    "s",
                    (_percentiles(QUEUE_WAIT, _T, by="task")[1],),
                    width=12,
                ),
                Panel(
                    "Failure ratio per task",
                    "Failed / finished tasks, by task path.",
                    "timeseries",
                    "percentunit",
                    (Query(_failure_ratio("task", _T), "{{task}}"),),
                    thresholds=_RATIO_STEPS,
                    max=1,
                    width=12,
                ),
            ),
        ),
        Row(
            "Lost and time-limited tasks",
            (
                Panel(
                    "Tasks lost with their worker process",
                    "Tasks whose worker process died while running them (crash, OOM kill, SIGKILL), resolved "
                    "by its supervisor per second, by task path and action (fail or requeue).",
                    "timeseries",
                    "ops",
                    (
                        Query(
                            f"sum by (task, action) (rate({selector(TASKS_LOST, *_T)}[{RATE}]))",
                            "{{task}} {{action}}",
                        ),
                    ),
                    width=8,
                ),
                Panel(
                    "Hard time-limit kills per task",
                    "Tasks stopped at their hard time limit per second (process killed, task FAILED with "
                    "TimeLimitExceeded), by task path.",
                    "timeseries",
                    "ops",
                    (Query(f"sum by (task) (rate({selector(TIME_LIMIT_KILLS, *_T)}[{RATE}]))", "{{task}}"),),
                    width=8,
                ),
                Panel(
                    "Soft time limits per task",
                    "Tasks that ran past their soft time limit (SoftTimeLimitExceeded raised inside them), "
                    "per second, by task path.",
                    "timeseries",
                    "ops",
                    (Query(f"sum by (task) (rate({selector(SOFT_TIME_LIMITS, *_T)}[{RATE}]))", "{{task}}"),),
                    width=8,
                ),
            ),
        ),
        Row(
            "Retries",
            (
                Panel(
                    "Retries per task",
                    "Failed attempts of tasks with a retry policy per second, by task path and outcome: "
                    "retried (READY again after a backoff) or exhausted (no attempt left: stored FAILED).",
                    "timeseries",
                    "ops",
                    (
                        Query(
                            f"sum by (task, outcome) (rate({selector(RETRIES, *_T)}[{RATE}]))",
                            "{{task}} {{outcome}}",
                        ),
                    ),
                    width=24,
                ),
            ),
        ),
        Row(
            "Top failing tasks",
            (
                Panel(
                    "Top failing tasks",
                    "The ten task paths with the most failures over the dashboard's time range.",
                    "table",
                    "short",
                    (
                        Query(
                            f"topk(10, sum by (namespace, pool, task) "
                            f"(increase({selector(FINISHED, *_T, FAILED)}[$__range])) > 0)",
                        ),
                    ),
                    width=24,
                ),
            ),
        ),
    ),
)

OPERATOR = Dashboard(
    uid="taskpool-operator",
    file="taskpool-operator.json",
    title="Taskpool / Operator",
    description="Health of the taskpool operator: queue probes, reconcile errors and pool conditions.",
    variables=(
        Variable("namespace", "Namespace", f"label_values({MAX_REPLICAS}, namespace)"),
        Variable("pool", "Pool", f"label_values({selector(MAX_REPLICAS, NS)}, pool)"),
    ),
    rows=(
        Row(
            "Probes",
            (
                Panel(
                    "Probe latency",
                    "Time of one queue probe (the SQL against the task table), percentiles.",
                    "timeseries",
                    "s",
                    _percentiles(PROBE_DURATION, ()),
                ),
                Panel(
                    "Probes per second",
                    "Queue probes the operator ran per second.",
                    "timeseries",
                    "ops",
                    (Query(f"sum(rate({PROBE_DURATION}_count[{RATE}]))", "probes"),),
                ),
                Panel(
                    "Probe errors by reason",
                    "Failed probes per second by reason: connect, timeout, missing_table, missing_index "
                    "or query.",
                    "timeseries",
                    "ops",
                    (Query(f"sum by (reason) (rate({PROBE_ERRORS}[{RATE}]))", "{{reason}}"),),
                    thresholds=((0.001, "red"),),
                ),
            ),
        ),
        Row(
            "Reconciliation",
            (
                Panel(
                    "Reconcile errors by handler",
                    "Handler failures per second.",
                    "timeseries",
                    "ops",
                    (Query(f"sum by (handler) (rate({RECONCILE_ERRORS}[{RATE}]))", "{{handler}}"),),
                    thresholds=((0.001, "red"),),
                ),
                Panel(
                    "Pools by condition",
                    "Number of pools in each condition status.",
                    "timeseries",
                    "short",
                    (
                        Query(
                            f"sum by (condition, status) ({selector(POOL_CONDITION, *_P)})",
                            "{{condition}}={{status}}",
                        ),
                    ),
                ),
                Panel(
                    "Database reachability",
                    "Whether the operator's last queue probe reached each pool's database.",
                    "state",
                    "none",
                    (Query(f"min by (namespace, pool) ({selector(DATABASE_REACHABLE, *_P)})", POOL_LEGEND),),
                    mappings=RED_AT_ZERO,
                    max=1,
                ),
            ),
        ),
        Row(
            "Operator",
            (
                Panel(
                    "Pool conditions",
                    "Current status of every condition of every pool.",
                    "table",
                    "none",
                    (
                        Query(
                            f"max by (namespace, pool, condition, status) "
                            f"({selector(POOL_CONDITION, *_P)}) == 1"
                        ),
                    ),
                    width=16,
                ),
                Panel(
                    "Operator versions",
                    "Operator processes exposing metrics, by version.",
                    "stat",
                    "short",
                    (Query(f"count by (version) ({OPERATOR_BUILD_INFO})", "{{version}}"),),
                    width=8,
                ),
            ),
        ),
    ),
)

DASHBOARDS: tuple[Dashboard, ...] = (OVERVIEW, TASKS, OPERATOR)
