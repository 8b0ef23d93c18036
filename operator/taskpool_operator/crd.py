"""The TaskWorkerPool CRD (from crd.yaml, the single source) and the defaults its schema declares."""

from __future__ import annotations

import copy
import functools
from importlib import resources
from typing import Any

import yaml

GROUP = "taskpool.dev"
VERSION = "v1alpha1"
KIND = "TaskWorkerPool"
PLURAL = "taskworkerpools"
API_VERSION = f"{GROUP}/{VERSION}"


def crd_text() -> str:
    return resources.files(__package__).joinpath("crd.yaml").read_text(encoding="utf-8")


@functools.cache
def _crd() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(crd_text())
    return loaded


def crd_manifest() -> dict[str, Any]:
    return copy.deepcopy(_crd())


def version_schema() -> dict[str, Any]:
    """The openAPIV3Schema of the served version."""
    (version,) = (v for v in _crd()["spec"]["versions"] if v["name"] == VERSION)
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def with_defaults(spec: dict[str, Any]) -> dict[str, Any]:
    """A copy of `spec` with the schema's defaults filled in, as the API server stores it.

    The API server defaults every stored object; the operator applies the same defaults so that it never
    keeps a second copy of them and still reads objects written before a default was added.
    """
    defaulted: dict[str, Any] = _defaulted(version_schema()["properties"]["spec"], copy.deepcopy(spec))
    return defaulted


def _defaulted(schema: dict[str, Any], value: Any) -> Any:
    if isinstance(value, dict) and schema.get("type") == "object":
        for key, sub in schema.get("properties", {}).items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                value[key] = _defaulted(sub, value[key])
    elif isinstance(value, list) and "items" in schema:
        return [_defaulted(schema["items"], item) for item in value]
    return value
