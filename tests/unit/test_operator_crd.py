"""Sanity of the TaskWorkerPool CRD: structural, defaults valid, every status field the operator writes kept.

The CEL rules are exercised against a real API server in tests/e2e/test_operator_validation.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest

from taskpool_operator import conditions as cond
from taskpool_operator import crd, objects
from taskpool_operator.pool import Pool
from tests.unit.operator_samples import BASE_BODY, body, json_schema

SCHEMA = crd.version_schema()


def walk(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for key, sub in schema.get("properties", {}).items():
        yield from walk(sub, f"{path}.{key}")
    if "items" in schema:
        yield from walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from walk(schema["additionalProperties"], f"{path}{{}}")


def test_names_match_the_contract() -> None:
    manifest = crd.crd_manifest()
    assert manifest["metadata"]["name"] == "taskworkerpools.taskpool.dev"
    names = manifest["spec"]["names"]
    assert (names["kind"], names["plural"], names["shortNames"]) == (
        "TaskWorkerPool",
        "taskworkerpools",
        ["twp"],
    )
    assert manifest["spec"]["scope"] == "Namespaced"


def test_schema_is_structural() -> None:
    for path, node in walk(SCHEMA):
        if node.get("x-kubernetes-int-or-string"):
            # Kubernetes' one exception: an int-or-string (quantities) has no type, and exactly this anyOf.
            assert "type" not in node, path
            assert node["anyOf"] == [{"type": "integer"}, {"type": "string"}], path
            continue
        assert node.get("type"), f"{path or 'root'} has no type"
        assert not ({"properties", "additionalProperties"} <= node.keys()), path
        for forbidden in ("$ref", "allOf", "oneOf", "anyOf", "not"):
            assert forbidden not in node, f"{path} uses {forbidden}"
        if node["type"] == "object" and not node.get("x-kubernetes-preserve-unknown-fields"):
            assert "properties" in node or "additionalProperties" in node, f"{path} would prune everything"


def test_every_field_is_described_except_standard_ones() -> None:
    undocumented = [
        path
        for path, node in walk(SCHEMA["properties"]["spec"], ".spec")
        if "description" not in node and not re.search(r"\[\]|\{\}|\.(name|value|valueFrom)$", path)
    ]
    assert undocumented == []


def test_defaults_satisfy_their_own_schema() -> None:
    for path, node in walk(SCHEMA):
        if "default" in node:
            jsonschema.validate(node["default"], json_schema(node))
            # Besides the spec's, only the status's observedGeneration 0 (kstatus: not yet acted on).
            assert path.startswith(".spec") or path in {".status", ".status.observedGeneration"}, path


def test_scale_and_status_subresources() -> None:
    (version,) = crd.crd_manifest()["spec"]["versions"]
    assert version["subresources"]["status"] == {}
    scale = version["subresources"]["scale"]
    assert scale == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    status = SCHEMA["properties"]["status"]["properties"]
    assert status["selector"]["type"] == "string"
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert {"Queues", "Ready", "Running", "Replicas", "Desired", "Age"} <= columns.keys()


def test_every_status_field_the_operator_writes_is_in_the_schema() -> None:
    pool = Pool.from_body(body())
    conditions = cond.merge(
        [],
        [
            cond.database_reachable(None),
            cond.scaling_active(True, True),
            cond.scaling_limited(3, 1, 0, 10),
            *cond.progress_conditions(cond.Progress(None, 1, 1)),
        ],
        generation=3,
        now="2026-01-01T00:00:00Z",
    )
    status = objects.build_pool_status(
        pool,
        replicas=1,
        ready_replicas=1,
        desired_replicas=1,
        conditions=conditions,
        observed_generation=3,
        ready_tasks=4,
        running_tasks=1,
        oldest_ready_age_s=1.5,
        orphaned_tasks=0,
        orphans_recovered=2,
        last_scale_time="2026-01-01T00:00:00Z",
    )
    status_schema = SCHEMA["properties"]["status"]
    assert status.keys() <= status_schema["properties"].keys()
    condition_fields = status_schema["properties"]["conditions"]["items"]["properties"].keys()
    for condition in conditions:
        assert condition.keys() <= condition_fields
    jsonschema.validate(status, json_schema(status_schema), format_checker=jsonschema.FormatChecker())


def test_a_full_sample_is_accepted() -> None:
    jsonschema.validate(_defaulted(BASE_BODY), json_schema(SCHEMA))


@pytest.mark.parametrize(
    "changes",
    [
        {"queues": []},
        {"queues": ["x" * 33]},
        {"scaling": {"pollInterval": "5"}},
        {"scaling": {"scaleDownStabilization": "one minute"}},
        {"scaling": {"minReplicas": -1}},
        {"worker": {"concurrency": 0}},
        {"worker": {"imagePullPolicy": "Sometimes"}},
        {"database": {"secretName": "Not_A_Name"}},
    ],
)
def test_schema_rejects(changes: dict[str, Any]) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(_defaulted(body(**changes)), json_schema(SCHEMA))


def test_cel_rules_have_messages() -> None:
    for path, node in walk(SCHEMA):
        for rule in node.get("x-kubernetes-validations", []):
            assert rule.get("message"), f"{path}: {rule['rule']} has no message"


def _defaulted(manifest: dict[str, Any]) -> dict[str, Any]:
    return {**manifest, "spec": crd.with_defaults(manifest["spec"])}


RESOURCES = SCHEMA["properties"]["spec"]["properties"]["worker"]["properties"]["resources"]


@pytest.mark.parametrize("quantity", ["250m", "1Gi", "512Mi", "0.5", "1e3", "2", 2, "+1k"])
def test_quantities_kubernetes_accepts_pass_the_crd(quantity: str | int) -> None:
    jsonschema.validate({"limits": {"cpu": quantity}}, RESOURCES)


@pytest.mark.parametrize("quantity", ["two", "1 Gi", "1GB", "1.5.5", "", "-"])
def test_malformed_quantities_fail_the_crd(quantity: str) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"requests": {"memory": quantity}}, RESOURCES)


def test_embedded_core_types_have_kubernetes_fields_not_free_form() -> None:
    worker = SCHEMA["properties"]["spec"]["properties"]["worker"]["properties"]
    embedded = {
        "resources": worker["resources"],
        "tolerations": worker["tolerations"]["items"],
        "affinity": worker["affinity"],
        "envFrom": worker["envFrom"]["items"],
        "podSecurityContext": worker["podSecurityContext"],
        "securityContext": worker["securityContext"],
        "topologySpreadConstraints": worker["topologySpreadConstraints"]["items"],
        "valueFrom": worker["env"]["items"]["properties"]["valueFrom"],
    }
    for name, schema in embedded.items():
        assert "x-kubernetes-preserve-unknown-fields" not in schema, name
        assert schema["properties"], name
    assert set(embedded["resources"]["properties"]) == {"claims", "limits", "requests"}
    assert {"key", "operator", "value", "effect", "tolerationSeconds"} <= set(
        embedded["tolerations"]["properties"]
    )
