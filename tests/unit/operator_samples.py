"""Sample TaskWorkerPool bodies, and the CRD schema as JSON Schema, shared by the operator's unit tests."""

from __future__ import annotations

import copy
from typing import Any

BASE_BODY: dict[str, Any] = {
    "apiVersion": "taskpool.dev/v1alpha1",
    "kind": "TaskWorkerPool",
    "metadata": {
        "name": "emails",
        "namespace": "shop",
        "uid": "0b7c6d1e-1111-2222-3333-444455556666",
        "generation": 3,
    },
    "spec": {
        "queues": ["emails", "reports"],
        "database": {"secretName": "shop-db"},
        "worker": {"image": "registry.example/shop-worker:1.2.3"},
    },
}


def body(**spec_changes: Any) -> dict[str, Any]:
    """BASE_BODY with top-level spec keys replaced (nested dicts are merged one level deep)."""
    result = copy.deepcopy(BASE_BODY)
    for key, value in spec_changes.items():
        if isinstance(value, dict) and isinstance(result["spec"].get(key), dict):
            result["spec"][key] = {**result["spec"][key], **value}
        else:
            result["spec"][key] = value
    return result


def json_schema(schema: Any) -> Any:
    """A CRD schema as JSON Schema (Kubernetes' extensions and int formats removed), for jsonschema."""
    if isinstance(schema, dict):
        return {
            key: json_schema(value)
            for key, value in schema.items()
            if not key.startswith("x-kubernetes") and not (key == "format" and value in ("int32", "int64"))
        }
    if isinstance(schema, list):
        return [json_schema(item) for item in schema]
    return schema
