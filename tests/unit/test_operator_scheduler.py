"""The scheduler Deployment builder (spec.scheduler, spec.retention) and its place in the CRD."""

from __future__ import annotations

from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from taskpool_operator import crd, objects
from taskpool_operator.handlers import WORKERS
from taskpool_operator.pool import InvalidPool, Pool
from tests.unit.operator_samples import body, json_schema

ENABLED: dict[str, Any] = {"scheduler": {"enabled": True}}


def scheduler_pool(**changes: Any) -> Pool:
    return Pool.from_body(body(**{**ENABLED, **changes}))


def test_scheduler_is_off_by_default() -> None:
    pool = Pool.from_body(body())
    assert not pool.scheduler_enabled
    assert not pool.retention.enabled


def test_scheduler_deployment_is_a_valid_one_replica_object_of_the_workers_image() -> None:
    pool = scheduler_pool(
        worker={"imagePullSecrets": [{"name": "registry"}], "nodeSelector": {"pool": "batch"}}
    )
    manifest = objects.build_scheduler_deployment(pool)
    kubernetes_validate.validate(manifest, "1.33", strict=True)
    assert manifest["metadata"]["name"] == "emails-scheduler"
    assert manifest["metadata"]["ownerReferences"] == [objects.owner_reference(pool)]
    spec = manifest["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    (container,) = spec["template"]["spec"]["containers"]
    assert container["name"] == "scheduler"
    assert container["image"] == "registry.example/shop-worker:1.2.3"
    assert container["env"] == objects.build_worker_container(pool)["env"]  # DATABASE_URL from the Secret
    assert spec["template"]["spec"]["imagePullSecrets"] == [{"name": "registry"}]
    assert spec["template"]["spec"]["nodeSelector"] == {"pool": "batch"}


def test_scheduler_pods_are_pod_security_restricted() -> None:
    template = objects.build_scheduler_deployment(scheduler_pool())["spec"]["template"]
    (container,) = template["spec"]["containers"]
    assert template["spec"]["securityContext"] == {
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert container["securityContext"] == {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert template["spec"]["automountServiceAccountToken"] is False


def test_scheduler_labels_follow_the_conventions_and_never_match_worker_pods() -> None:
    manifest = objects.build_scheduler_deployment(scheduler_pool())
    labels = manifest["spec"]["template"]["metadata"]["labels"]
    assert labels == {
        "app.kubernetes.io/name": "taskpool-scheduler",
        "app.kubernetes.io/instance": "emails",
        "app.kubernetes.io/component": "scheduler",
        "app.kubernetes.io/managed-by": "taskpool-operator",
        "taskpool.dev/pool": "emails",
    }
    selector = manifest["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    worker_labels = objects.pod_labels("emails")
    assert not selector.items() <= worker_labels.items()
    assert not objects.selector_labels("emails").items() <= labels.items()
    # The operator's worker indexes and restore handler filter on these labels: the scheduler is not a worker.
    assert not WORKERS.items() <= labels.items()
    assert WORKERS.items() <= worker_labels.items()


def test_scheduler_command_carries_the_pool_queues_and_retention_in_seconds() -> None:
    pool = scheduler_pool(
        queues=["*"], excludeQueues=["reports"], retention={"successful": "336h", "failed": "90m"}
    )
    assert objects.scheduler_command(pool) == [
        "python", "manage.py", "taskpool_scheduler",
        "--backend", "default", "--queue-name", "*", "--exclude-queues", "reports",
        "--metrics-port", "9100",
        "--retain-successful", "1209600", "--retain-failed", "5400",
    ]  # fmt: skip
    custom = scheduler_pool(scheduler={"enabled": True, "command": ["shop-scheduler"], "args": ["-v", "2"]})
    assert objects.scheduler_command(custom) == [
        "shop-scheduler", "--backend", "default", "--queue-name", "emails,reports", "--metrics-port", "9100",
        "-v", "2",
    ]  # fmt: skip


def test_scheduler_resources_are_its_own() -> None:
    pool = scheduler_pool(
        worker={"resources": {"requests": {"cpu": "2"}}},
        scheduler={"enabled": True, "resources": {"requests": {"cpu": "50m"}}},
    )
    (container,) = objects.build_scheduler_deployment(pool)["spec"]["template"]["spec"]["containers"]
    assert container["resources"] == {"requests": {"cpu": "50m"}}
    (plain,) = objects.build_scheduler_deployment(scheduler_pool())["spec"]["template"]["spec"]["containers"]
    assert "resources" not in plain


def test_retention_without_the_scheduler_is_rejected() -> None:
    with pytest.raises(InvalidPool, match=r"retention needs scheduler\.enabled"):
        Pool.from_body(body(retention={"successful": "24h"}))


def test_scheduler_status_from_the_deployment() -> None:
    assert objects.build_scheduler_status(None) is None
    deployment = {"metadata": {"name": "emails-scheduler"}, "status": {"replicas": 1, "readyReplicas": 1}}
    status = objects.build_scheduler_status(deployment)
    assert status == {"deployment": "emails-scheduler", "replicas": 1, "readyReplicas": 1}
    schema = crd.version_schema()["properties"]["status"]["properties"]["scheduler"]
    jsonschema.validate(status, {k: v for k, v in schema.items() if k != "format"})


@pytest.mark.parametrize(
    "changes",
    [
        {"retention": {"successful": "14d"}},
        {"retention": {"failed": "soon"}},
        {"scheduler": {"enabled": "yes"}},
    ],
)
def test_schema_rejects_bad_scheduler_and_retention(changes: dict[str, Any]) -> None:
    manifest = body(**changes)
    manifest["spec"] = crd.with_defaults(manifest["spec"])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(manifest["spec"], json_schema(crd.version_schema()["properties"]["spec"]))


def test_retention_rule_needs_the_scheduler_in_cel() -> None:
    rules = crd.version_schema()["properties"]["spec"]["x-kubernetes-validations"]
    assert any(
        rule.get("fieldPath") == ".retention" and "scheduler.enabled" in rule["rule"] for rule in rules
    )
