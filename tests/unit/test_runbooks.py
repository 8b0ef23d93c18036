"""The names docs/runbooks.md tells an operator to type exist: resource names and label selectors, CRD fields,
chart values, condition and Event reasons, metric names and log lines. (Its SQL runs in
tests/integration/test_runbook_queries.py; its sections match the alerts in test_monitoring_rules.py.)"""

from __future__ import annotations

import functools
import importlib
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from charts import checks
from monitoring import config
from taskpool_operator import conditions, objects
from taskpool_operator.handlers.orphan_recovery import ERRORS_LABEL

ROOT = Path(__file__).resolve().parents[2]
TEXT = (ROOT / "docs/runbooks.md").read_text()
CRD = yaml.safe_load((ROOT / "operator/taskpool_operator/crd.yaml").read_text())
VALUES = yaml.safe_load((ROOT / "charts/taskpool/values.yaml").read_text())
POOL = "$POOL"


def section(alert: str) -> str:
    return TEXT.split(f"## {alert}\n", 1)[1].split("\n## ", 1)[0]


def mentioned(pattern: str) -> set[str]:
    return {m.rstrip(".") for m in re.findall(pattern, TEXT)}


def test_deployment_names_are_the_operators() -> None:
    assert f"the worker Deployment is `{objects.deployment_name(POOL)}`" in " ".join(TEXT.split())
    assert mentioned(r"deploy/(\$POOL-[a-z]+)") == {
        objects.deployment_name(POOL),
        objects.scheduler_deployment_name(POOL),
    }


@functools.cache
def _chart(kind: str) -> dict[str, Any]:
    """The chart's one object of `kind`, rendered with the default values."""
    try:
        documents = checks.documents(checks.template(set_values=(), release="t", namespace="ops"))
    except checks.ToolMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    (found,) = [d for d in documents if d["kind"] == kind]
    return found


def _operator_pod_labels() -> dict[str, str]:
    labels: dict[str, str] = _chart("Deployment")["spec"]["template"]["metadata"]["labels"]
    return labels


def test_the_operators_metrics_port_is_its_services() -> None:
    (port,) = [p["port"] for p in _chart("Service")["spec"]["ports"] if p["name"] == "metrics"]
    assert f"the Service on port {port}" in TEXT


def test_every_label_selector_selects_the_pods_it_means() -> None:
    pods = [objects.pod_labels(POOL), objects.scheduler_pod_labels(POOL), _operator_pod_labels()]
    selectors = mentioned(r"-l ([^\s`]+)")
    assert len(selectors) == 3, selectors
    for selector in selectors:
        wanted = dict(pair.split("=", 1) for pair in selector.split(","))
        assert any(wanted.items() <= labels.items() for labels in pods), selector


def _schema(path: str) -> Any:
    node = CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for name in path.split("."):
        assert name in node.get("properties", {}), path
        node = node["properties"][name]
    return node


def test_crd_fields_exist() -> None:
    assert "twp" in CRD["spec"]["names"]["shortNames"]
    fields = mentioned(r"\b((?:spec|status)\.[A-Za-z.]+)")
    assert "spec.orphans.action" in fields
    for path in fields:
        _schema(path)
    assert {"Report", "Fail", "Requeue"} <= set(_schema("spec.orphans.action")["enum"])
    assert f"`spec.orphans.gracePeriod` (default {_schema('spec.orphans.gracePeriod')['default']})" in TEXT


def test_chart_values_exist() -> None:
    for path in mentioned(r"`((?:alerts|networkPolicy|monitoring)\.[A-Za-z.]+)`"):
        node = VALUES
        for name in path.split("."):
            assert name in node, path
            node = node[name]


def test_condition_and_event_reasons_are_the_operators() -> None:
    known = {*conditions.Reason, *conditions.EventReason, *conditions.ConditionType}
    orphan_actions = set(_schema("spec.orphans.action")["enum"])
    alerts = {a.name for a in config.ALERTS}
    for name in mentioned(r"`([A-Z][A-Za-z]+)`") - orphan_actions - alerts:
        assert name in known, name


def test_probe_error_reasons_are_listed_in_full() -> None:
    listed = set(re.findall(r"`([a-z_]+)`\s+\(", section("TaskpoolDatabaseUnreachable")))
    assert listed == set(conditions.PROBE_ERROR_REASONS)


def test_metrics_and_handler_labels_exist() -> None:
    names = {
        v for k, v in vars(config).items() if k.isupper() and isinstance(v, str) and v.startswith("taskpool_")
    }
    metrics = mentioned(r"(?<!FROM )\b(taskpool_[a-z_]+)") - {"taskpool_schedule_fire"}
    assert metrics
    assert metrics <= names, metrics - names
    assert f'handler="{ERRORS_LABEL}"' in TEXT


def test_exception_paths_resolve() -> None:
    for path in mentioned(r"(django_taskpool\.exceptions\.[A-Za-z]+)"):
        module, name = path.rsplit(".", 1)
        assert isinstance(getattr(importlib.import_module(module), name), type), path


@pytest.mark.parametrize(
    ("quoted", "logged", "source"),
    [
        (
            '"cannot reach the database"',
            "cannot reach the database: %s",
            "django_app/django_taskpool/scheduler.py",
        ),
        (
            "`orphan recovery failed: ...`",
            "orphan recovery failed: %s",
            "operator/taskpool_operator/handlers/orphan_recovery.py",
        ),
        (
            "`outcome=time_limit_exceeded`",
            "outcome=time_limit_exceeded",
            "django_app/django_taskpool/supervisor.py",
        ),
        (
            "`waiting for it before starting`",
            "waiting for it before starting (retrying",
            "django_app/django_taskpool/outage.py",
        ),
        (
            "`cannot use database`",
            'f"cannot use {_describe(alias)}',
            "django_app/django_taskpool/database.py",
        ),
    ],
)
def test_quoted_log_lines_are_logged(quoted: str, logged: str, source: str) -> None:
    assert quoted in TEXT
    assert logged in (ROOT / source).read_text()
