"""Sample TaskWorkerPool bodies shared by the operator's unit tests."""

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
