"""The pure builders of the worker Deployment, its pods and the pool's status."""

from __future__ import annotations

import kubernetes_validate
import pytest

from taskpool_operator import objects
from taskpool_operator.pool import InvalidPool, Pool, parse_duration
from tests.unit.operator_samples import body

KUBERNETES_VERSION = "1.33"


def container(deployment_spec: dict) -> dict:
    (worker,) = deployment_spec["template"]["spec"]["containers"]
    return worker


def test_deployment_is_a_valid_kubernetes_object() -> None:
    pool = Pool.from_body(
        body(
            worker={
                "env": [{"name": "DJANGO_SETTINGS_MODULE", "value": "shop.settings"}],
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                "tolerations": [{"key": "batch", "operator": "Exists", "effect": "NoSchedule"}],
                "nodeSelector": {"pool": "batch"},
                "imagePullSecrets": [{"name": "registry"}],
            }
        )
    )
    manifest = objects.build_worker_deployment(pool, replicas=2)
    kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def test_deployment_names_labels_and_owner() -> None:
    pool = Pool.from_body(body())
    manifest = objects.build_worker_deployment(pool, replicas=0)
    assert manifest["metadata"]["name"] == "emails-workers"
    assert manifest["metadata"]["namespace"] == "shop"
    (owner,) = manifest["metadata"]["ownerReferences"]
    assert owner == {
        "apiVersion": "taskpool.dev/v1alpha1",
        "kind": "TaskWorkerPool",
        "name": "emails",
        "uid": pool.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }
    labels = manifest["spec"]["template"]["metadata"]["labels"]
    assert labels == {
        "app.kubernetes.io/name": "taskpool-worker",
        "app.kubernetes.io/instance": "emails",
        "app.kubernetes.io/component": "worker",
        "app.kubernetes.io/managed-by": "taskpool-operator",
        "taskpool.dev/pool": "emails",
    }
    selector = manifest["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    assert (
        objects.selector_string("emails") == "app.kubernetes.io/name=taskpool-worker,taskpool.dev/pool=emails"
    )


def test_user_labels_cannot_override_the_selector() -> None:
    pool = Pool.from_body(body(worker={"labels": {"taskpool.dev/pool": "other", "team": "shop"}}))
    labels = objects.build_worker_pod_template(pool)["metadata"]["labels"]
    assert labels["taskpool.dev/pool"] == "emails"
    assert labels["team"] == "shop"


def test_worker_command_carries_the_pool_flags() -> None:
    pool = Pool.from_body(
        body(
            backend="bulk",
            worker={
                "concurrency": 4,
                "threads": 8,
                "interval": "500ms",
                "shutdownTimeout": "45s",
                "args": ["--verbosity", "2"],
            },
        )
    )
    assert container(objects.build_worker_deployment_spec(pool, 1))["command"] == [
        "python", "manage.py", "taskpool_worker",
        "--no-reload",
        "--backend", "bulk",
        "--queue-name", "emails,reports",
        "--concurrency", "4",
        "--threads", "8",
        "--interval", "0.5",
        "--metrics-port", "9100",
        "--shutdown-timeout", "45",
        "--on-worker-lost", "fail",
        "--verbosity", "2",
    ]  # fmt: skip


@pytest.mark.parametrize(("action", "flag"), [("Fail", "fail"), ("Requeue", "requeue"), ("Report", "fail")])
def test_worker_lost_action_follows_the_orphan_action(action: str, flag: str) -> None:
    pool = Pool.from_body(body(orphans={"action": action}))
    command = container(objects.build_worker_deployment_spec(pool, 1))["command"]
    assert command[command.index("--on-worker-lost") + 1] == flag


def test_time_limit_is_passed_only_when_set() -> None:
    unlimited = container(objects.build_worker_deployment_spec(Pool.from_body(body()), 1))["command"]
    assert "--time-limit" not in unlimited
    pool = Pool.from_body(body(worker={"timeLimit": "2m30s", "shutdownTimeout": "5m"}))
    command = container(objects.build_worker_deployment_spec(pool, 1))["command"]
    assert command[command.index("--time-limit") + 1] == "150"


def test_notify_is_passed_to_the_workers_only_when_the_pool_opts_in() -> None:
    polling = container(objects.build_worker_deployment_spec(Pool.from_body(body()), 1))["command"]
    assert "--notify" not in polling
    pool = Pool.from_body(body(scaling={"notify": True}))
    assert pool.scaling.notify is True
    assert "--notify" in container(objects.build_worker_deployment_spec(pool, 1))["command"]


def test_time_limit_above_the_shutdown_timeout_is_invalid() -> None:
    with pytest.raises(InvalidPool, match=r"timeLimit must not exceed worker\.shutdownTimeout"):
        Pool.from_body(body(worker={"timeLimit": "10m", "shutdownTimeout": "5m"}))


def test_command_override_keeps_the_flags_and_excludes_go_with_star() -> None:
    pool = Pool.from_body(body(queues=["*"], excludeQueues=["slow"], worker={"command": ["/app/bin/worker"]}))
    command = container(objects.build_worker_deployment_spec(pool, 1))["command"]
    assert command[:2] == ["/app/bin/worker", "--no-reload"]
    assert command[command.index("--queue-name") + 1] == "*"
    assert command[command.index("--exclude-queues") + 1] == "slow"


def test_database_url_comes_from_the_secret_and_pod_identity_from_the_downward_api() -> None:
    pool = Pool.from_body(body(database={"secretName": "shop-db", "key": "dsn"}))
    env = {e["name"]: e for e in container(objects.build_worker_deployment_spec(pool, 1))["env"]}
    assert env["DATABASE_URL"] == {
        "name": "DATABASE_URL",
        "valueFrom": {"secretKeyRef": {"name": "shop-db", "key": "dsn"}},
    }
    assert "value" not in env["DATABASE_URL"]
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"


def test_restricted_security_defaults_with_writable_tmp() -> None:
    pool = Pool.from_body(body())
    spec = objects.build_worker_deployment_spec(pool, 1)
    pod = spec["template"]["spec"]
    worker = container(spec)
    assert pod["securityContext"] == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    security = worker["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["runAsNonRoot"] is True
    assert {"name": "tmp", "mountPath": "/tmp"} in worker["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {}} in pod["volumes"]


def test_probes_and_metrics_port() -> None:
    pool = Pool.from_body(body(worker={"metricsPort": 9200}))
    spec = objects.build_worker_deployment_spec(pool, 1)
    worker = container(spec)
    assert worker["ports"] == [{"name": "metrics", "containerPort": 9200, "protocol": "TCP"}]
    assert worker["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert worker["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    annotations = spec["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == "9200"
    assert annotations["prometheus.io/scrape"] == "true"


def test_grace_period_exceeds_shutdown_timeout() -> None:
    pool = Pool.from_body(body())
    spec = objects.build_worker_deployment_spec(pool, 1)
    assert spec["template"]["spec"]["terminationGracePeriodSeconds"] >= pool.shutdown_timeout_s + 5
    with pytest.raises(InvalidPool, match="terminationGracePeriodSeconds"):
        Pool.from_body(body(worker={"shutdownTimeout": "2m", "terminationGracePeriodSeconds": 124}))
    Pool.from_body(body(worker={"shutdownTimeout": "2m", "terminationGracePeriodSeconds": 125}))


def test_replicas_are_the_callers_decision() -> None:
    pool = Pool.from_body(body())
    assert objects.build_worker_deployment_spec(pool, 7)["replicas"] == 7
    assert objects.build_scale_patch(3) == {"spec": {"replicas": 3}}


def test_optional_pod_fields_are_omitted_when_unset() -> None:
    pod = objects.build_worker_pod_template(Pool.from_body(body()))["spec"]
    for field in ("nodeSelector", "affinity", "serviceAccountName", "imagePullSecrets"):
        assert field not in pod
    assert "resources" not in pod["containers"][0]


def test_worker_pods_leave_a_lost_node_after_node_lost_timeout() -> None:
    lost = [
        {"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30}
        for key in ("node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready")
    ]
    default = objects.build_worker_pod_template(Pool.from_body(body()))["spec"]["tolerations"]
    assert default == lost
    batch = {"key": "batch", "operator": "Exists", "effect": "NoSchedule"}
    custom = Pool.from_body(body(worker={"nodeLostTimeout": "1m30.5s", "tolerations": [batch]}))
    assert objects.build_worker_pod_template(custom)["spec"]["tolerations"] == [
        batch,
        *({**t, "tolerationSeconds": 91} for t in lost),
    ]
    # The user's own toleration of a lost-node taint wins (here: stay forever on an unreachable node).
    stay = {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"}
    pinned = Pool.from_body(body(worker={"tolerations": [stay]}))
    assert objects.build_worker_pod_template(pinned)["spec"]["tolerations"] == [stay, lost[1]]


def test_pod_deletion_cost_puts_idle_pods_first() -> None:
    busy = objects.build_pod_deletion_cost_patch(busy=True)
    idle = objects.build_pod_deletion_cost_patch(busy=False)
    assert objects.pod_deletion_cost(idle) is not None
    assert objects.pod_deletion_cost(busy) is not None
    assert objects.pod_deletion_cost(idle) < objects.pod_deletion_cost(busy)  # type: ignore[operator]
    assert objects.pod_deletion_cost({"metadata": {}}) is None


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("5m", 300), ("1h30m", 5400), ("250ms", 0.25), ("1.5s", 1.5)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "30", "s", "5 m", "1d", "-1s", "1s2"])
def test_parse_duration_rejects_malformed(text: str) -> None:
    with pytest.raises(InvalidPool, match="not a duration"):
        parse_duration(text)


def test_pool_defaults_come_from_the_crd() -> None:
    pool = Pool.from_body(body())
    assert pool.backend == "default"
    assert pool.secret_key == "DATABASE_URL"
    assert pool.scaling.enabled is True
    assert pool.scaling.min_replicas == 0
    assert pool.scaling.max_replicas == 10
    assert pool.scaling.tasks_per_replica == pool.concurrency == pool.threads == 1
    assert pool.scaling.poll_interval_s == 5
    assert pool.scaling.notify is False
    assert pool.manual_replicas is None


def test_slots_per_pod_default_to_processes_times_threads() -> None:
    pool = Pool.from_body(body(worker={"concurrency": 3, "threads": 8}))
    assert pool.scaling.tasks_per_replica == 24
    pool = Pool.from_body(body(worker={"concurrency": 3, "threads": 8}, scaling={"tasksPerReplica": 5}))
    assert pool.scaling.tasks_per_replica == 5


def test_pool_rejects_inconsistent_specs() -> None:
    with pytest.raises(InvalidPool, match="minReplicas"):
        Pool.from_body(body(scaling={"minReplicas": 5, "maxReplicas": 2}))
    with pytest.raises(InvalidPool, match="excludeQueues"):
        Pool.from_body(body(excludeQueues=["slow"]))
    with pytest.raises(InvalidPool, match="missing"):
        Pool.from_body({"metadata": {"name": "x", "namespace": "y"}, "spec": {"queues": ["a"]}})


def test_status_leaves_out_unmeasured_queue_figures() -> None:
    pool = Pool.from_body(body())
    status = objects.build_pool_status(pool, replicas=1, ready_replicas=1, desired_replicas=2, conditions=[])
    assert "observedGeneration" not in status
    assert status["selector"] == objects.selector_string("emails")
    assert "readyTasks" not in status
    measured = objects.build_pool_status(
        pool,
        replicas=1,
        ready_replicas=1,
        desired_replicas=2,
        conditions=[],
        observed_generation=3,
        ready_tasks=0,
        oldest_ready_age_s=0.0,
    )
    assert measured["readyTasks"] == 0
    assert measured["observedGeneration"] == 3
    assert measured["oldestReadyTaskAgeSeconds"] == 0.0
