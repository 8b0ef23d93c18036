"""Every dashboard query and every rule returns data in a real Prometheus scraping a real operator and worker.

Debian's Prometheus (2.42) scrapes, every second:
- the operator, `taskpool-operator run` against the local cluster (devcluster), watching a namespace
  with two pools: `shop` on a real PostgreSQL with a workload (successes, failures, a backlog) and
  `broken`, whose Secret names a database that does not exist (probe errors, an unreachable database);
- a worker runtime, `manage.py taskpool_worker` on the same database as a local process, with the labels a
  PodMonitor would add (`namespace`, `pool`, `pod`) set by the scrape config;
- a scheduler, `manage.py taskpool_scheduler` (a 2-second schedule, retention on) on the same database as a
  local process, labelled the same way;
- the pool's own worker pods, found through the scrape job the chart's PodMonitor stands for (its selector,
  port and relabelings, applied to the pods of the cluster's API).
It loads monitoring/rules/taskpool.rules.yaml. Then every panel query (Grafana variables substituted), every
variable query, every recording rule and every alert's expression (in its `bool` form, see `alert_inputs`)
goes through Prometheus' HTTP API, and each must return data. Both expositions must pass `promtool check
metrics`.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from charts import checks
from devcluster import operator_harness as harness
from devcluster.control_plane import LocalCluster
from devdb import postgres
from devdb.demo_project import MigratedDatabase, enqueue, free_port, stop_process, task_rows, wait_until
from devdb.scheduler import SchedulerRun, schedules_env
from monitoring import config, generate, rules
from tests.support.django_db import WorkerRun

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
RATE_INTERVAL = "15s"
POOL = "shop"
BROKEN_POOL = "broken"
# Not a name of the pool's Deployment pods: the operator must not take its tasks for orphans.
WORKER_POD = "monitoring-e2e-worker"
SCHEDULER_POD = "monitoring-e2e-scheduler"
COMPARISON = re.compile(r"(==|!=|>=|<=|>|<)")


# --- Prometheus -----------------------------------------------------------------------------------------


@dataclass
class Prometheus:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def api(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=30) as response:
            body = json.loads(response.read())
        assert body["status"] == "success", body
        return body["data"]

    def range_query(self, expr: str, start: float, end: float) -> list[dict[str, Any]]:
        data = self.api("query_range", query=expr, start=f"{start:.3f}", end=f"{end:.3f}", step="1s")
        return list(data["result"])

    def instant_query(self, expr: str, at: float) -> list[dict[str, Any]]:
        return list(self.api("query", query=expr, time=f"{at:.3f}")["result"])

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _snake(key: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", key).lower()


def pod_discovery(cluster: LocalCluster, namespace: str, path: Path, stop: threading.Event) -> None:
    """What Prometheus' kubernetes_sd (role pod) finds, written as a file_sd file every half second: one
    target per container port with the `__meta_kubernetes_*` labels the Prometheus Operator relabels. Debian
    builds Prometheus without kubernetes_sd, so the test discovers the pods itself from the same API."""
    while not stop.is_set():
        groups = []
        for pod in cluster.rest.get(f"/api/v1/namespaces/{namespace}/pods")["items"]:
            ip = pod.get("status", {}).get("podIP")
            if not ip or pod["metadata"].get("deletionTimestamp"):
                continue
            meta = {
                "__meta_kubernetes_namespace": namespace,
                "__meta_kubernetes_pod_name": pod["metadata"]["name"],
                **{
                    "__meta_kubernetes_pod_label_" + re.sub(r"\W", "_", k): v
                    for k, v in pod["metadata"].get("labels", {}).items()
                },
            }
            for container in pod["spec"]["containers"]:
                for port in container.get("ports", []):
                    labels = {**meta, "__meta_kubernetes_pod_container_port_name": port.get("name", "")}
                    groups.append({"targets": [f"{ip}:{port['containerPort']}"], "labels": labels})
        path.with_suffix(".tmp").write_text(json.dumps(groups))
        path.with_suffix(".tmp").replace(path)
        stop.wait(0.5)


def podmonitor_scrape_config(targets_file: Path, namespace: str) -> dict[str, Any]:
    """The scrape job the Prometheus Operator would generate from the chart's PodMonitor (as rendered with
    `monitoring.podMonitor.enabled` and the operator watching `namespace`): pods selected by the monitor's
    labels and port name, then the monitor's own relabelings (pool, namespace, pod)."""
    documents = checks.documents(
        checks.template(
            set_values=["monitoring.podMonitor.enabled=true", f'operator.watchNamespaces=["{namespace}"]']
        )
    )
    # The workers' monitor (the chart also renders one for the scheduler pods).
    (monitor,) = [
        d for d in documents if d["kind"] == "PodMonitor" and d["metadata"]["name"].endswith("-workers")
    ]
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [namespace]
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    relabel: list[dict[str, Any]] = [
        {
            "action": "keep",
            "source_labels": ["__meta_kubernetes_pod_label_" + re.sub(r"\W", "_", label)],
            "regex": value,
        }
        for label, value in monitor["spec"]["selector"]["matchLabels"].items()
    ]
    port_name = "__meta_kubernetes_pod_container_port_name"
    relabel.append({"action": "keep", "source_labels": [port_name], "regex": endpoint["port"]})
    relabel += [{_snake(k): v for k, v in rule.items()} for rule in endpoint["relabelings"]]
    return {
        "job_name": "taskpool-worker-pods",
        "metrics_path": endpoint["path"],
        "file_sd_configs": [{"files": [str(targets_file)], "refresh_interval": "1s"}],
        "relabel_configs": relabel,
    }


def prometheus_config(
    operator_port: int, worker_port: int, scheduler_port: int, namespace: str, pod_job: dict[str, Any]
) -> dict[str, Any]:
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ROOT / generate.RULE_FILE)],
        "scrape_configs": [
            {
                # As the chart's ServiceMonitor: the operator sets `namespace` itself (honorLabels).
                "job_name": "taskpool-operator",
                "honor_labels": True,
                "static_configs": [{"targets": [f"127.0.0.1:{operator_port}"]}],
            },
            {
                # Our own worker process, labelled as the chart's PodMonitor labels worker pods.
                "job_name": "taskpool-workers",
                "static_configs": [
                    {
                        "targets": [f"127.0.0.1:{worker_port}"],
                        "labels": {"namespace": namespace, "pool": POOL, "pod": WORKER_POD},
                    }
                ],
            },
            {
                # Our own scheduler process, labelled as the chart's scheduler PodMonitor labels its pods.
                "job_name": "taskpool-schedulers",
                "static_configs": [
                    {
                        "targets": [f"127.0.0.1:{scheduler_port}"],
                        "labels": {"namespace": namespace, "pool": POOL, "pod": SCHEDULER_POD},
                    }
                ],
            },
            pod_job,
        ],
    }


@pytest.fixture
def start_prometheus(tmp_path: Path) -> Iterator[Callable[[dict[str, Any]], Prometheus]]:
    """Starts Debian's Prometheus on a free loopback port with a throwaway storage folder."""
    started: list[Prometheus] = []
    binary = shutil.which("prometheus")
    assert binary, "prometheus is missing: run scripts/install-system-deps.sh"

    def start(configuration: dict[str, Any]) -> Prometheus:
        config_path = tmp_path / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(configuration))
        port = free_port()
        log_path = tmp_path / "prometheus.log"
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--storage.tsdb.retention.time=1h",
            ],
            stdout=log_path.open("wb"),
            stderr=subprocess.STDOUT,
        )
        prometheus = Prometheus(f"http://127.0.0.1:{port}", process, log_path)
        started.append(prometheus)

        def ready() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"prometheus exited ({process.returncode}):\n{prometheus.log()}")
            try:
                with urllib.request.urlopen(f"{prometheus.url}/-/ready", timeout=2) as response:
                    return response.status == 200
            except OSError:
                return False

        wait_until(ready, 60, "prometheus to be ready", interval=0.2)
        return prometheus

    yield start
    for prometheus in started:
        stop_process(prometheus.process)


def create_pool(cluster: LocalCluster, namespace: str, name: str, database_url: str) -> None:
    harness.create_dsn_secret(cluster, namespace, f"{name}-db", database_url)
    manifest = harness.pool_manifest(
        name,
        f"{name}-db",
        queues=["*"],
        scaling={"minReplicas": 0, "maxReplicas": 1, "pollInterval": "1s"},
    )
    harness.create_pool(cluster, namespace, manifest)


# --- the queries ---------------------------------------------------------------------------------------


def substitute(expr: str, namespace: str, range_seconds: int) -> str:
    """A panel query as Grafana would send it: variables and interval macros replaced."""
    concrete = expr.replace("$__rate_interval", RATE_INTERVAL).replace("$__range", f"{range_seconds}s")
    concrete = concrete.replace("$namespace", namespace)  # [a-z0-9-]: nothing to escape
    return re.sub(r"\$(pool|queue|task)\b", ".*", concrete)


def alert_inputs(expr: str) -> str:
    """An alert expression that returns every series it looks at, firing or not: each comparison gets the
    `bool` modifier (0/1 instead of a filter) and `absent(x)` becomes `count(x)`. Data here means every input
    of the alert exists under a real workload, so the alert can fire when its condition holds."""
    parts = re.split(r"(\{[^}]*\})", expr.replace("absent(", "count("))  # label matchers stay as they are
    return "".join(part if part.startswith("{") else COMPARISON.sub(r"\1 bool", part) for part in parts)


def has_data(result: list[dict[str, Any]]) -> bool:
    values = [v for series in result for _, v in series.get("values", [series.get("value", (0, "NaN"))])]
    return any(math.isfinite(float(v)) for v in values)


def test_alert_inputs_keeps_matchers_and_turns_every_comparison_into_bool() -> None:
    assert alert_inputs('x{a="b", c!="d", e=~"f"} > 3') == 'x{a="b", c!="d", e=~"f"} > bool 3'
    assert alert_inputs("a >= 1 and b == 0") == "a >= bool 1 and b == bool 0"
    assert alert_inputs("absent(up)") == "count(up)"


def test_every_dashboard_query_and_rule_returns_data_in_prometheus(
    cluster: LocalCluster,
    namespace: str,
    operator: harness.OperatorProcess,
    migrated_database: MigratedDatabase,
    postgres_admin_dsn: str,
    worker_runs: Callable[..., WorkerRun],
    start_prometheus: Callable[[dict[str, Any]], Prometheus],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    db = migrated_database
    missing_db = postgres.to_url(postgres.with_database(postgres_admin_dsn, "taskpool_does_not_exist"))

    worker = worker_runs(
        db.url, "--queue-name=*", "--concurrency=2", "--time-limit=3", env={"POD_NAME": WORKER_POD}
    )
    worker.wait_ready(processes=2)
    scheduler = SchedulerRun(
        db.url,
        "--queue-name=*",
        "--retain-successful=3600",
        log_path=tmp_path / "scheduler.log",
        env=schedules_env({"e2e-tick": {"task": "taskpool_demo.tasks.noop", "every": 2}}),
    )
    request.addfinalizer(scheduler.close)
    wait_until(scheduler.serving, 60, "the scheduler's endpoints")
    targets_file = tmp_path / "pods.json"
    stop_discovery = threading.Event()
    discovery = threading.Thread(
        target=pod_discovery, args=(cluster, namespace, targets_file, stop_discovery)
    )
    discovery.start()
    request.addfinalizer(lambda: (stop_discovery.set(), discovery.join()))
    pod_job = podmonitor_scrape_config(targets_file, namespace)
    prometheus = start_prometheus(
        prometheus_config(operator.metrics_port, worker.port, scheduler.port, namespace, pod_job)
    )
    start = time.time()
    # Lost and time-limited tasks, on the local worker before the pool has a pod to take them: a task whose
    # process is killed, one past its hard limit (--time-limit=3), one past its soft limit (`bounded`); and
    # retries: `fails_first` retried once then successful, and retried until its 3 attempts are exhausted.
    faults = enqueue(db.url, "slow", count=1, duration=2.5)
    busy = wait_until(
        lambda: next((p for p in worker.health()["processes"] if p["busy"]), None), 30, "a busy process"
    )
    os.kill(busy["pid"], signal.SIGKILL)
    faults += enqueue(db.url, "slow", count=1, duration=30) + enqueue(db.url, "bounded", count=1, duration=5)
    faults += enqueue(db.url, "fails_first", failures=1) + enqueue(db.url, "fails_first", failures=5)
    wait_until(
        lambda: all(task_rows(db.dsn)[i]["status"] in {"SUCCESSFUL", "FAILED"} for i in faults),
        60,
        "the lost and time-limited tasks to be resolved",
    )
    create_pool(cluster, namespace, POOL, db.url)
    create_pool(cluster, namespace, BROKEN_POOL, missing_db)
    wait_until(
        lambda: prometheus.instant_query(config.MAX_REPLICAS, time.time()),
        60,
        "the pools' series in Prometheus",
    )

    # A backlog of several seconds for our two worker processes (and the pool's own pod, once the operator
    # has scaled it up), in rounds so that failures and successes happen over time: a counter that only
    # appears with its final value has no rate, and a dashboard would show nothing for it.
    ids = enqueue(db.url, "email", count=10)
    for _ in range(3):
        ids += enqueue(db.url, "slow", count=30, duration=0.3)
        ids += enqueue(db.url, "flaky", count=4, failure_rate=1.0)
        ids += enqueue(db.url, "flaky", count=4, failure_rate=0.0)
    wait_until(
        lambda: all(task_rows(db.dsn)[i]["status"] in {"SUCCESSFUL", "FAILED"} for i in ids),
        180,
        "the workload to finish",
    )
    # The pool's own pod (the operator scaled it up for the backlog) found through the PodMonitor and scraped:
    # on a loaded machine it may start only after our two local processes have finished the workload.
    wait_until(
        lambda: prometheus.instant_query(f'up{{job="{pod_job["job_name"]}"}}', time.time()),
        120,
        "the pool's worker pod to be scraped",
    )
    # Enough scrapes and rule evaluations after the last task for rates and recorded series.
    time.sleep(20)
    end = time.time()
    window = math.ceil(end - start)

    # Both expositions are clean.
    expositions = (
        ("operator", operator.metrics()),
        ("worker", worker.get("/metrics")[1]),
        ("scheduler", scheduler.exposition()),
    )
    for name, exposition in expositions:
        checked = subprocess.run(
            ["promtool", "check", "metrics"], input=exposition, capture_output=True, text=True, check=False
        )
        assert checked.returncode == 0, f"{name}: {checked.stdout}{checked.stderr}"
        assert checked.stdout.strip() == "", f"{name}: {checked.stdout}"  # no lint findings either

    targets = prometheus.api("targets")["activeTargets"]
    static = {t["labels"]["job"]: t["health"] for t in targets if t["labels"]["job"] != pod_job["job_name"]}
    assert static == {"taskpool-operator": "up", "taskpool-workers": "up", "taskpool-schedulers": "up"}, (
        targets
    )
    # The pool's own worker pods, found through the chart's PodMonitor, carry the labels the dashboards select
    # by. (Whether a pod answered is the operator's and the cluster's business, tested there: `up` exists for
    # every target, answering or not.)
    pod_targets = prometheus.range_query(f'up{{job="{pod_job["job_name"]}"}}', start, end)
    assert pod_targets, f"the operator's worker pods were never discovered; targets: {targets}"
    for series in pod_targets:
        assert series["metric"]["namespace"] == namespace
        assert series["metric"]["pool"] == POOL
        assert series["metric"]["pod"].startswith(f"{POOL}-workers-"), series["metric"]
    groups = prometheus.api("rules")["groups"]
    loaded = [r for g in groups for r in g["rules"]]
    assert len(loaded) == len(config.RECORDING_RULES) + len(config.ALERTS)
    assert [r["name"] for r in loaded if r["health"] != "ok"] == [], loaded

    empty: list[str] = []
    for dashboard in config.DASHBOARDS:
        for variable in dashboard.variables:
            match = re.fullmatch(r"label_values\((.+), (\w+)\)", variable.query)
            assert match, variable.query
            selector, label = substitute(match.group(1), namespace, window), match.group(2)
            values = prometheus.api(f"label/{label}/values", **{"match[]": selector})
            if not values:
                empty.append(f"{dashboard.uid} variable {variable.name}: {variable.query}")
        for panel in dashboard.panels:
            for query in panel.queries:
                expr = substitute(query.expr, namespace, window)
                if panel.kind in {"table", "stat"}:
                    result = prometheus.instant_query(expr, end)
                else:
                    result = prometheus.range_query(expr, start, end)
                if not has_data(result):
                    empty.append(f"{dashboard.uid} / {panel.title}: {expr}")
    for recording in config.RECORDING_RULES:
        for expr in (recording.expr, recording.record):
            if not has_data(prometheus.range_query(expr, start, end)):
                empty.append(f"recording rule {recording.record}: {expr}")
    for alert_rule in (r for r in rules.rule_groups()[0]["rules"] if "alert" in r):
        expr = alert_inputs(alert_rule["expr"])
        if not has_data(prometheus.range_query(expr, start, end)):
            empty.append(f"alert {alert_rule['alert']}: {expr}")
    finished = prometheus.range_query(config.FINISHED, start, end)
    assert empty == [], (
        "queries without data:\n"
        + "\n".join(empty)
        + "\nfinished series:\n"
        + "\n".join(f"{s['metric']} {s['values'][0]}..{s['values'][-1]}" for s in finished)
    )

    # The workload is what the dashboards say: the broken pool is unreachable, the shop pool saw failures.
    reachable = prometheus.instant_query(f"{config.DATABASE_REACHABLE}", end)
    assert {r["metric"]["pool"]: r["value"][1] for r in reachable} == {POOL: "1", BROKEN_POOL: "0"}
    failed = prometheus.instant_query(f'sum({config.FINISHED}{{outcome="failed"}})', end)
    stored = sum(1 for row in task_rows(db.dsn).values() if row["status"] == "FAILED")
    assert 0 < float(failed[0]["value"][1]) <= stored
