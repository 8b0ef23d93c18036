"""The chart's metadata and derived files: versions, CRD copy, README values table, values schema coverage."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

import taskpool_operator
from charts import sync

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "taskpool"


def chart() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((CHART / "Chart.yaml").read_text())
    return loaded


def test_chart_is_helm_v2_with_kube_version_and_app_version_of_the_operator() -> None:
    meta = chart()
    assert meta["apiVersion"] == "v2"
    assert meta["kubeVersion"].startswith(">=1.30")
    assert meta["appVersion"] == taskpool_operator.__version__
    images = yaml.safe_load(meta["annotations"]["artifacthub.io/images"])
    assert [i["image"].rsplit(":", 1)[1] for i in images] == [taskpool_operator.__version__]
    crds = yaml.safe_load(meta["annotations"]["artifacthub.io/crds"])
    assert crds[0]["name"] == "taskworkerpools.taskpool.dev"
    for key in ("artifacthub.io/license", "artifacthub.io/operator", "artifacthub.io/links"):
        assert key in meta["annotations"]


def test_chart_crd_and_readme_are_generated_from_their_sources() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "charts.sync", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"run `make chart-sync`:\n{result.stdout}{result.stderr}"
    copy = yaml.safe_load((CHART / "crds" / "taskworkerpools.yaml").read_text())
    source = yaml.safe_load((ROOT / "operator" / "taskpool_operator" / "crd.yaml").read_text())
    assert copy == source


def leaves(values: Any, prefix: str = "") -> list[str]:
    if isinstance(values, dict) and values:
        return [leaf for key, value in values.items() for leaf in leaves(value, f"{prefix}{key}.")]
    return [prefix.rstrip(".")]


def test_every_value_is_documented_in_the_readme() -> None:
    text = (CHART / "values.yaml").read_text()
    documented = {key for key, _ in sync.documented_keys(text)}
    for leaf in leaves(yaml.safe_load(text)):
        parts = leaf.split(".")
        covered = any(".".join(parts[:n]) in documented for n in range(1, len(parts) + 1))
        assert covered, f"{leaf} has no `# --` comment in values.yaml"
    readme = (CHART / "README.md").read_text()
    for key in documented:
        assert f"| `{key}` |" in readme


def schema_node(schema: dict[str, Any], path: list[str]) -> dict[str, Any]:
    node = schema
    for part in path:
        assert node.get("type") == "object", f"{'.'.join(path)}: {part} is under a non-object"
        props = node.get("properties", {})
        if part in props:
            node = props[part]
        else:
            patterns = node.get("patternProperties") or {}
            extra = node.get("additionalProperties")
            assert patterns or isinstance(extra, dict), f"{'.'.join(path)} is not in values.schema.json"
            node = next(iter(patterns.values())) if patterns else extra
    return node


def test_values_schema_covers_every_value_and_closes_every_object() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for leaf in leaves(values):
        node = schema_node(schema, leaf.split("."))
        assert "type" in node or "enum" in node or "oneOf" in node, f"{leaf} has no type in the schema"

    def closed(node: dict[str, Any], where: str) -> None:
        if node.get("type") == "object" and "properties" in node:
            assert node.get("additionalProperties") is False, f"{where} accepts unknown keys"
            for key, sub in node["properties"].items():
                closed(sub, f"{where}.{key}")
        if isinstance(node.get("items"), dict):
            closed(node["items"], f"{where}[]")

    closed(schema, "values")
