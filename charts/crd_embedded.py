"""The CRD's schemas of embedded Kubernetes core types, generated from Kubernetes' own schemas.

A field of `operator/taskpool_operator/crd.yaml` that holds a core type (ResourceRequirements, Toleration...)
carries a generated block between two marker comments:

    resources:
      description: ...
      # generated: io.k8s.api.core.v1.ResourceRequirements
      ...the structural schema...
      # end generated

`render` rewrites each block from the JSON schemas `kubernetes-validate` ships, converted to a structural
schema the API server accepts: references resolved, nullable types made plain, quantities and
int-or-strings as Kubernetes' own CRDs declare them, list/map annotations dropped (the API server
re-checks all of it when the operator writes the Deployment). Unknown keys are then rejected at
`kubectl apply` (strict field validation) and bad quantities by the pattern, instead of being pruned or
passed on to a Deployment write that fails.

The schema is the oldest Kubernetes release the chart supports: a field the CRD accepts is one every
supported API server knows.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

KUBERNETES_VERSION = "1.30.0"
# Kubernetes' own pattern for resource.Quantity (as controller-gen writes it into CRDs).
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)"
    r"|(\.[0-9]+))))?$"
)
QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
KEPT_FORMATS = {"int32", "int64", "double", "float"}
BLOCK = re.compile(
    r"^(?P<indent> *)# generated: (?P<definition>\S+)\n.*?^(?P=indent)# end generated\n",
    re.MULTILINE | re.DOTALL,
)


@functools.cache
def _definitions() -> dict[str, Any]:
    folder = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    path = folder / f"v{KUBERNETES_VERSION}-local-strict" / "_definitions.json"
    definitions: dict[str, Any] = json.loads(path.read_text())["$defs"]
    return definitions


def _plain_type(value: Any) -> str | None:
    types = [t for t in (value if isinstance(value, list) else [value]) if t != "null"]
    return types[0] if len(types) == 1 else None


def structural(node: dict[str, Any], seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """A structural (CRD) schema for one node of Kubernetes' JSON schema."""
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        if name == QUANTITY:
            return {
                "anyOf": [{"type": "integer"}, {"type": "string"}],
                "pattern": QUANTITY_PATTERN,
                "x-kubernetes-int-or-string": True,
            }
        if name == INT_OR_STRING:
            return {"anyOf": [{"type": "integer"}, {"type": "string"}], "x-kubernetes-int-or-string": True}
        if name in seen:
            raise ValueError(f"{name} refers to itself; embed it by hand")
        return structural(_definitions()[name], (*seen, name))
    result: dict[str, Any] = {}
    if node.get("description"):
        result["description"] = node["description"]
    kind = _plain_type(node.get("type"))
    if kind is not None:
        result["type"] = kind
    if node.get("format") in KEPT_FORMATS:
        result["format"] = node["format"]
    if "enum" in node:
        result["enum"] = [value for value in node["enum"] if value is not None]
    if node.get("required"):
        result["required"] = list(node["required"])
    if "properties" in node:
        result["properties"] = {k: structural(v, seen) for k, v in sorted(node["properties"].items())}
    if isinstance(node.get("additionalProperties"), dict):
        result["additionalProperties"] = structural(node["additionalProperties"], seen)
    if "items" in node:
        result["items"] = structural(node["items"], seen)
    return result


def schema_of(definition: str) -> dict[str, Any]:
    return structural({"$ref": f"#/$defs/{definition}"})


def _block(match: re.Match[str]) -> str:
    indent, definition = match["indent"], match["definition"]
    schema = schema_of(definition)
    schema.pop("description", None)  # the field's own description stays above the block
    text = yaml.safe_dump(schema, sort_keys=False, width=110 - len(indent))
    body = "".join(f"{indent}{line}\n" for line in text.splitlines())
    return f"{indent}# generated: {definition}\n{body}{indent}# end generated\n"


def render(crd_text: str) -> str:
    """`crd_text` with every generated block rewritten from Kubernetes' schema."""
    return BLOCK.sub(_block, crd_text)
