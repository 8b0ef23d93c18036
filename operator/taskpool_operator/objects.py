"""Every Kubernetes object shape the operator writes: pure builders returning plain dicts."""

from __future__ import annotations

import copy
import datetime
import math
from collections.abc import Mapping
from typing import Any

from taskpool_operator import crd
from taskpool_operator.pool import Pool, parse_duration

MANAGER = "taskpool-operator"
WORKER_CONTAINER = "worker"
METRICS_PORT_NAME = "metrics"
DEFAULT_COMMAND = ("python", "manage.py", "taskpool_worker")
POD_DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
# `kubectl rollout restart` stamps the pod template with this annotation (kubectl's own key).
ROLLOUT_RESTART = "kubectl.kubernetes.io/restartedAt"
POOL_LABEL = "taskpool.dev/pool"
# Deletion costs: busy pods are removed last, idle pods first (the ReplicaSet removes the lowest cost first).
BUSY_POD_COST = 1000
IDLE_POD_COST = -1000
# The taints the node lifecycle controller puts on a node that stopped answering; worker pods tolerate them
# for spec.worker.nodeLostTimeout instead of Kubernetes' default 300 s (DefaultTolerationSeconds admission).
NODE_LOST_TAINTS = ("node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready")


def deployment_name(pool_name: str) -> str:
    return f"{pool_name}-workers"


def selector_labels(pool_name: str) -> dict[str, str]:
    """The Deployment's selector (immutable once created, so never extended)."""
    return {"app.kubernetes.io/name": "taskpool-worker", POOL_LABEL: pool_name}


def pod_labels(pool_name: str) -> dict[str, str]:
    return {
        **selector_labels(pool_name),
        "app.kubernetes.io/instance": pool_name,
        "app.kubernetes.io/component": "worker",
        "app.kubernetes.io/managed-by": MANAGER,
    }


def selector_string(pool_name: str) -> str:
    """The pod selector as a string, for the pool's scale subresource (status.selector)."""
    return ",".join(f"{key}={value}" for key, value in sorted(selector_labels(pool_name).items()))


def owner_reference(pool: Pool) -> dict[str, Any]:
    return {
        "apiVersion": crd.API_VERSION,
        "kind": crd.KIND,
        "name": pool.name,
        "uid": pool.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def controller_uid(obj: Mapping[str, Any]) -> str | None:
    """The uid of the object's controlling owner (a pool's, for every object the operator builds)."""
    owners = obj.get("metadata", {}).get("ownerReferences") or []
    return next((owner.get("uid") for owner in owners if owner.get("controller")), None)


def _seconds_flag(seconds: float) -> str:
    return f"{seconds:g}"


def worker_command(pool: Pool) -> list[str]:
    """The worker's command line: the runtime command, the pool's flags, then the user's extra args."""
    command = list(pool.worker.get("command") or DEFAULT_COMMAND)
    flags = [
        "--no-reload",  # db_worker's --reload defaults to DEBUG; a reloading worker never exits cleanly
        "--backend",
        pool.backend,
        "--queue-name",
        ",".join(pool.queues),
    ]
    if pool.exclude_queues:
        flags += ["--exclude-queues", ",".join(pool.exclude_queues)]
    flags += [
        "--concurrency",
        str(pool.concurrency),
        "--threads",
        str(pool.threads),
        "--interval",
        _seconds_flag(parse_duration(pool.worker["interval"])),
        "--metrics-port",
        str(pool.metrics_port),
        "--shutdown-timeout",
        _seconds_flag(pool.shutdown_timeout_s),
        "--on-worker-lost",
        # A process that died inside a live pod is known dead: no grace period, and nothing to only report.
        "requeue" if pool.orphans.action == "Requeue" else "fail",
    ]
    if pool.time_limit_s is not None:
        flags += ["--time-limit", _seconds_flag(pool.time_limit_s)]
    if pool.scaling.notify:
        flags.append("--notify")
    return command + flags + list(pool.worker.get("args") or ())


def _env(pool: Pool) -> list[dict[str, Any]]:
    own = [
        {
            "name": "DATABASE_URL",
            "valueFrom": {"secretKeyRef": {"name": pool.secret_name, "key": pool.secret_key}},
        },
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
    ]
    return own + copy.deepcopy(list(pool.worker.get("env") or ()))


_RESTRICTED_POD_SECURITY: dict[str, Any] = {
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}
_RESTRICTED_CONTAINER_SECURITY: dict[str, Any] = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def _probe(path: str, period_s: int, failure_threshold: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": METRICS_PORT_NAME},
        "periodSeconds": period_s,
        "timeoutSeconds": 2,
        "failureThreshold": failure_threshold,
    }


def build_worker_container(pool: Pool) -> dict[str, Any]:
    worker = pool.worker
    container: dict[str, Any] = {
        "name": WORKER_CONTAINER,
        "image": worker["image"],
        "command": worker_command(pool),
        "env": _env(pool),
        "ports": [{"name": METRICS_PORT_NAME, "containerPort": pool.metrics_port, "protocol": "TCP"}],
        "livenessProbe": _probe("/healthz", period_s=10, failure_threshold=3),
        "readinessProbe": _probe("/readyz", period_s=5, failure_threshold=2),
        "securityContext": copy.deepcopy(worker.get("securityContext") or _RESTRICTED_CONTAINER_SECURITY),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108 - the pod's own emptyDir
    }
    optional = {
        "imagePullPolicy": worker.get("imagePullPolicy"),
        "workingDir": worker.get("workingDir"),
        "envFrom": worker.get("envFrom"),
        "resources": worker.get("resources"),
    }
    container.update({key: copy.deepcopy(value) for key, value in optional.items() if value})
    return container


def build_worker_tolerations(pool: Pool) -> list[dict[str, Any]]:
    """worker.tolerations, plus NoExecute tolerations of a lost node for worker.nodeLostTimeout (rounded up
    to whole seconds) for each lost-node taint the user's own tolerations do not mention."""
    own = [copy.deepcopy(dict(t)) for t in pool.worker.get("tolerations") or []]
    mentioned = {t.get("key") for t in own}
    seconds = math.ceil(parse_duration(pool.worker["nodeLostTimeout"]))
    lost = [
        {"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": seconds}
        for key in NODE_LOST_TAINTS
        if key not in mentioned
    ]
    return own + lost


def build_worker_pod_template(pool: Pool) -> dict[str, Any]:
    worker = pool.worker
    annotations = {
        **dict(worker.get("annotations") or {}),
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(pool.metrics_port),
        "prometheus.io/path": "/metrics",
        "kubectl.kubernetes.io/default-container": WORKER_CONTAINER,
    }
    pod_spec: dict[str, Any] = {
        "containers": [build_worker_container(pool)],
        "terminationGracePeriodSeconds": int(worker["terminationGracePeriodSeconds"]),
        "securityContext": copy.deepcopy(worker.get("podSecurityContext") or _RESTRICTED_POD_SECURITY),
        "volumes": [{"name": "tmp", "emptyDir": {}}],
        "enableServiceLinks": False,
        "automountServiceAccountToken": bool(worker["automountServiceAccountToken"]),
        "tolerations": build_worker_tolerations(pool),
    }
    optional = {
        "serviceAccountName": worker.get("serviceAccountName"),
        "priorityClassName": worker.get("priorityClassName"),
        "nodeSelector": worker.get("nodeSelector"),
        "affinity": worker.get("affinity"),
        "topologySpreadConstraints": worker.get("topologySpreadConstraints"),
        "imagePullSecrets": worker.get("imagePullSecrets"),
    }
    pod_spec.update({key: copy.deepcopy(value) for key, value in optional.items() if value})
    return {
        "metadata": {
            "labels": {**dict(worker.get("labels") or {}), **pod_labels(pool.name)},
            "annotations": annotations,
        },
        "spec": pod_spec,
    }


def build_worker_deployment_spec(pool: Pool, replicas: int) -> dict[str, Any]:
    """The Deployment's spec. `replicas` is the operator's current decision, never a default, so that a
    re-apply after a spec change does not undo scaling."""
    return {
        "replicas": replicas,
        "selector": {"matchLabels": selector_labels(pool.name)},
        "template": build_worker_pod_template(pool),
        # Workers finish their task on SIGTERM: new pods start before old ones stop, none is cut short.
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
        "revisionHistoryLimit": 3,
    }


def build_worker_deployment(pool: Pool, replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": deployment_name(pool.name),
            "namespace": pool.namespace,
            "labels": pod_labels(pool.name),
            "ownerReferences": [owner_reference(pool)],
        },
        "spec": build_worker_deployment_spec(pool, replicas),
    }


def keep_rollout_restart(spec: dict[str, Any], live: Mapping[str, Any]) -> dict[str, Any]:
    """The Deployment spec the operator built, with the live pod template's `kubectl rollout restart` stamp
    carried over: a restart the user asked for is neither undone nor run a second time by the rewrite."""
    live_template = (live.get("spec") or {}).get("template") or {}
    restarted = ((live_template.get("metadata") or {}).get("annotations") or {}).get(ROLLOUT_RESTART)
    if not restarted:
        return spec
    template = spec["template"]
    metadata = template.get("metadata") or {}
    annotations = {**(metadata.get("annotations") or {}), ROLLOUT_RESTART: restarted}
    return {**spec, "template": {**template, "metadata": {**metadata, "annotations": annotations}}}


def build_scale_patch(replicas: int) -> dict[str, Any]:
    return {"spec": {"replicas": replicas}}


def build_pod_deletion_cost_patch(busy: bool) -> dict[str, Any]:
    cost = BUSY_POD_COST if busy else IDLE_POD_COST
    return {"metadata": {"annotations": {POD_DELETION_COST: str(cost)}}}


def pod_deletion_cost(pod: Mapping[str, Any]) -> int | None:
    value = (pod.get("metadata", {}).get("annotations") or {}).get(POD_DELETION_COST)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def pod_deletion_deadline(meta: Mapping[str, Any]) -> float | None:
    """A pod's `metadata.deletionTimestamp` (RFC 3339, UTC) in epoch seconds; None when it has none."""
    stamp = meta.get("deletionTimestamp")
    return datetime.datetime.fromisoformat(stamp).timestamp() if stamp else None


def build_pool_status(
    pool: Pool,
    *,
    replicas: int,
    ready_replicas: int,
    desired_replicas: int,
    conditions: list[dict[str, Any]],
    observed_generation: int | None = None,
    ready_tasks: int | None = None,
    running_tasks: int | None = None,
    oldest_ready_age_s: float | None = None,
    orphaned_tasks: int | None = None,
    orphans_recovered: int | None = None,
    last_scale_time: str | None = None,
) -> dict[str, Any]:
    """The pool's status. Left-out figures keep their stored value (the status is merge-patched): queue
    figures when the queue was not measured, observedGeneration until a spec reached the Deployment."""
    status: dict[str, Any] = {
        "replicas": replicas,
        "readyReplicas": ready_replicas,
        "desiredReplicas": desired_replicas,
        "selector": selector_string(pool.name),
        "conditions": conditions,
    }
    optional: dict[str, Any] = {
        "observedGeneration": observed_generation,
        "readyTasks": ready_tasks,
        "runningTasks": running_tasks,
        "oldestReadyTaskAgeSeconds": None if oldest_ready_age_s is None else round(oldest_ready_age_s, 3),
        "orphanedTasks": orphaned_tasks,
        "orphansRecovered": orphans_recovered,
        "lastScaleTime": last_scale_time,
    }
    status.update({key: value for key, value in optional.items() if value is not None})
    return status


# -- the scheduler Deployment (spec.scheduler) ------------------------------------------------------------

SCHEDULER_CONTAINER = "scheduler"
DEFAULT_SCHEDULER_COMMAND = ("python", "manage.py", "taskpool_scheduler")
COMPONENT_LABEL = "app.kubernetes.io/component"
# Lets a stopping scheduler finish the fire or prune batch it is in (each is one short transaction).
SCHEDULER_TERMINATION_GRACE_S = 30


def scheduler_deployment_name(pool_name: str) -> str:
    return f"{pool_name}-scheduler"


def scheduler_selector_labels(pool_name: str) -> dict[str, str]:
    """The scheduler Deployment's selector (immutable once created); never matches worker pods."""
    return {"app.kubernetes.io/name": "taskpool-scheduler", POOL_LABEL: pool_name}


def scheduler_pod_labels(pool_name: str) -> dict[str, str]:
    return {
        **scheduler_selector_labels(pool_name),
        "app.kubernetes.io/instance": pool_name,
        COMPONENT_LABEL: "scheduler",
        "app.kubernetes.io/managed-by": MANAGER,
    }


def _exact_seconds(seconds: float) -> str:
    """Seconds to the millisecond without exponent (`:g` would round weeks to six digits)."""
    return f"{seconds:.3f}".rstrip("0").rstrip(".")


def scheduler_command(pool: Pool) -> list[str]:
    """`taskpool_scheduler` with the pool's backend and queues (whose finished rows retention prunes), the
    retention periods in seconds, then the user's extra args."""
    command = list(pool.scheduler.get("command") or DEFAULT_SCHEDULER_COMMAND)
    flags = ["--backend", pool.backend, "--queue-name", ",".join(pool.queues)]
    if pool.exclude_queues:
        flags += ["--exclude-queues", ",".join(pool.exclude_queues)]
    flags += ["--metrics-port", str(pool.metrics_port)]
    if pool.retention.successful_s is not None:
        flags += ["--retain-successful", _exact_seconds(pool.retention.successful_s)]
    if pool.retention.failed_s is not None:
        flags += ["--retain-failed", _exact_seconds(pool.retention.failed_s)]
    return command + flags + list(pool.scheduler.get("args") or ())


def build_scheduler_deployment(pool: Pool) -> dict[str, Any]:
    """One scheduler pod with the worker pods' image, environment, security and placement (the fires table
    keeps fires exactly-once even if two ever overlap; Recreate keeps that rare)."""
    template = build_worker_pod_template(pool)
    container = build_worker_container(pool)
    container.update(name=SCHEDULER_CONTAINER, command=scheduler_command(pool))
    container.pop("resources", None)
    if pool.scheduler.get("resources"):
        container["resources"] = copy.deepcopy(pool.scheduler["resources"])
    template["metadata"]["labels"] = {
        **dict(pool.worker.get("labels") or {}),
        **scheduler_pod_labels(pool.name),
    }
    template["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"] = SCHEDULER_CONTAINER
    template["spec"]["containers"] = [container]
    template["spec"]["terminationGracePeriodSeconds"] = SCHEDULER_TERMINATION_GRACE_S
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": scheduler_deployment_name(pool.name),
            "namespace": pool.namespace,
            "labels": scheduler_pod_labels(pool.name),
            "ownerReferences": [owner_reference(pool)],
        },
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": scheduler_selector_labels(pool.name)},
            "template": template,
            "strategy": {"type": "Recreate"},
            "revisionHistoryLimit": 3,
        },
    }


def build_scheduler_status(deployment: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """status.scheduler from the scheduler Deployment (None: no scheduler)."""
    if deployment is None:
        return None
    status = deployment.get("status") or {}
    return {
        "deployment": deployment["metadata"]["name"],
        "replicas": int(status.get("replicas") or 0),
        "readyReplicas": int(status.get("readyReplicas") or 0),
    }
