"""The rules: promtool accepts them, the promtool unit tests pass and cover every alert both ways, every alert
has a runbook, and the chart's values and template carry every threshold."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from charts import checks
from monitoring import config, generate, rules

ROOT = Path(__file__).resolve().parents[2]
RULE_TESTS = sorted((ROOT / "monitoring/tests").glob("*.yaml"))
VALUES = ROOT / "charts/taskpool/values.yaml"


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert shutil.which("promtool"), "promtool is missing: run scripts/install-system-deps.sh"
    return subprocess.run(["promtool", *args], capture_output=True, text=True, check=False, cwd=ROOT)


def test_promtool_check_rules_accepts_the_rule_file() -> None:
    result = _promtool("check", "rules", str(generate.RULE_FILE))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(config.RECORDING_RULES) + len(config.ALERTS)} rules found" in result.stdout


@pytest.mark.parametrize("test_file", RULE_TESTS, ids=lambda p: p.name)
def test_promtool_unit_tests_pass(test_file: Path) -> None:
    result = _promtool("test", "rules", str(test_file.relative_to(ROOT)))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_catch_a_wrong_threshold(tmp_path: Path) -> None:
    """The unit tests are sharp: the same tests against rules with a changed threshold fail."""
    (tmp_path / "rules").mkdir()
    (tmp_path / "tests").mkdir()
    broken = (ROOT / generate.RULE_FILE).read_text().replace("> 600", "> 6000")
    assert broken != (ROOT / generate.RULE_FILE).read_text()
    (tmp_path / "rules/taskpool.rules.yaml").write_text(broken)
    shutil.copy(ROOT / "monitoring/tests/queue.test.yaml", tmp_path / "tests")
    result = subprocess.run(
        ["promtool", "test", "rules", "tests/queue.test.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "TaskpoolOldestReadyTaskTooOld" in result.stdout + result.stderr


def test_every_alert_has_a_firing_and_a_silent_unit_test() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for path in RULE_TESTS:
        document = yaml.safe_load(path.read_text())
        assert document["rule_files"] == ["../rules/taskpool.rules.yaml"], path
        for test in document["tests"]:
            for case in test.get("alert_rule_test", []):
                (firing if case["exp_alerts"] else silent).add(case["alertname"])
    names = {a.name for a in config.ALERTS}
    assert names - firing == set(), "alerts without a test that fires them"
    assert names - silent == set(), "alerts without a test that keeps them silent"


def test_scale_to_zero_is_tested_silent_for_every_alert() -> None:
    document = yaml.safe_load((ROOT / "monitoring/tests/scale_to_zero.test.yaml").read_text())
    cases = document["tests"][0]["alert_rule_test"]
    assert {c["alertname"] for c in cases if c["exp_alerts"] == []} == {a.name for a in config.ALERTS}


def test_no_alert_requires_workers_to_exist() -> None:
    """absent() on worker series would fire whenever a pool scales to zero."""
    for alert in config.ALERTS:
        for absent in re.findall(r"absent\w*\(([^)]*)\)", alert.expr):
            assert "taskpool_worker" not in absent, alert.name


def _slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    return re.sub(r"[^a-z0-9 _-]", "", heading.strip().lower()).replace(" ", "-")


def test_every_alert_has_one_runbook_section_and_nothing_else_does() -> None:
    text = (ROOT / "docs/runbooks.md").read_text()
    sections = [_slug(h) for h in re.findall(r"^## (.+)$", text, flags=re.MULTILINE)]
    assert sorted(sections) == sorted(a.runbook_anchor for a in config.ALERTS)
    for alert in config.ALERTS:
        assert alert.runbook_url.startswith(config.RUNBOOK_URL + "#")


def test_rule_file_alerts_carry_severity_summary_description_and_runbook() -> None:
    document = yaml.safe_load((ROOT / generate.RULE_FILE).read_text())
    alerts = [r for g in document["groups"] for r in g["rules"] if "alert" in r]
    assert [a["alert"] for a in alerts] == [a.name for a in config.ALERTS]
    for alert in alerts:
        assert alert["labels"]["severity"] in {"warning", "critical"}
        assert set(alert["annotations"]) == {"summary", "description", "runbook_url"}
        assert "${" not in alert["expr"] + alert["for"], alert["alert"]


def test_an_unknown_threshold_name_is_a_clear_error() -> None:
    alert = config.ALERTS[0]
    with pytest.raises(KeyError, match=r"unknown threshold \$\{nope\}"):
        rules.fill("x > ${nope}", alert, lambda p: "1")


def test_chart_values_carry_every_alert_threshold_with_the_config_default() -> None:
    values = yaml.safe_load(VALUES.read_text())
    alerts = values["alerts"]
    assert alerts["runbookBaseUrl"] == config.RUNBOOK_URL
    expected_keys = {"enabled", "runbookBaseUrl", "additionalLabels"} | {a.values_key for a in config.ALERTS}
    assert set(alerts) == expected_keys
    for alert in config.ALERTS:
        section = alerts[alert.values_key]
        assert section == {"enabled": True, **{p.name: p.default for p in alert.params}}, alert.values_key
    assert values["monitoring"]["prometheusRule"]["enabled"] is False
    assert values["monitoring"]["dashboards"]["labels"] == {"grafana_dashboard": "1"}


def test_chart_template_refers_to_every_threshold_value() -> None:
    template = (ROOT / generate.CHART_RULE_TEMPLATE).read_text()
    for alert in config.ALERTS:
        assert f"{{{{- if .Values.alerts.{alert.values_key}.enabled }}}}" in template
        for param in alert.params:
            assert f"{{{{ .Values.alerts.{alert.values_key}.{param.name} }}}}" in template
    # Prometheus' own templates survive Helm: every `{{ $labels` is escaped.
    assert "{{ $labels" not in template.replace('{{ "{{" }} $labels', "")


# --- rendered by Helm --------------------------------------------------------------------------------------


def _render(*set_values: str) -> list[dict[str, Any]]:
    """`helm template` of the chart (release `t`, namespace `ops`); values are JSON (0.25 stays a number)."""
    try:
        return checks.documents(checks.template(set_values=set_values, release="t", namespace="ops"))
    except checks.ToolMissing as exc:
        pytest.fail(str(exc), pytrace=False)


def _prometheus_rule(documents: list[dict[str, Any]]) -> dict[str, Any]:
    found = [d for d in documents if d["kind"] == "PrometheusRule"]
    assert len(found) == 1
    return found[0]


def test_helm_renders_the_same_rules_as_the_plain_file_by_default(tmp_path: Path) -> None:
    rule = _prometheus_rule(_render("monitoring.prometheusRule.enabled=true"))
    plain = yaml.safe_load((ROOT / generate.RULE_FILE).read_text())
    assert rule["spec"]["groups"] == plain["groups"]
    assert rule["metadata"]["namespace"] == "ops"
    (tmp_path / "rendered.yaml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    result = _promtool("check", "rules", str(tmp_path / "rendered.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_helm_substitutes_thresholds_labels_and_switches(tmp_path: Path) -> None:
    rule = _prometheus_rule(
        _render(
            "monitoring.prometheusRule.enabled=true",
            'monitoring.prometheusRule.labels.release="kube-prometheus"',
            "alerts.oldestReadyTask.ageSeconds=1800",
            'alerts.oldestReadyTask.for="30m"',
            "alerts.failureRatio.ratio=0.25",
            "alerts.workerRestarts.enabled=false",
            'alerts.additionalLabels.team="platform"',
            'alerts.runbookBaseUrl="https://wiki.example/taskpool"',
        )
    )
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus"
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r}
    assert "TaskpoolWorkerRestarts" not in alerts
    old = alerts["TaskpoolOldestReadyTaskTooOld"]
    assert old["expr"].endswith("> 1800")
    assert old["for"] == "30m"
    assert old["labels"] == {"severity": "warning", "team": "platform"}
    assert old["annotations"]["runbook_url"] == "https://wiki.example/taskpool#taskpoololdestreadytasktooold"
    assert "{{ $labels.queue }}" in old["annotations"]["summary"]
    assert "> 0.25\n" in alerts["TaskpoolHighFailureRatio"]["expr"]
    (tmp_path / "rendered.yaml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    result = _promtool("check", "rules", str(tmp_path / "rendered.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_helm_renders_no_rules_and_no_dashboards_by_default() -> None:
    documents = _render()
    assert [d for d in documents if d["kind"] == "PrometheusRule"] == []
    labels = [d["metadata"].get("labels", {}) for d in documents]
    assert [lbl for lbl in labels if lbl.get("app.kubernetes.io/component") == "monitoring"] == []


def test_helm_renders_one_dashboard_config_map_per_dashboard() -> None:
    documents = _render(
        "monitoring.dashboards.enabled=true",
        'monitoring.dashboards.annotations.grafana_folder="Taskpool"',
        'monitoring.dashboards.namespace="grafana"',
    )
    maps = [
        d
        for d in documents
        if d["kind"] == "ConfigMap" and d["metadata"].get("labels", {}).get("grafana_dashboard")
    ]
    assert len(maps) == len(config.DASHBOARDS)
    assert sorted(m["metadata"]["name"] for m in maps) == [
        "t-taskpool-dashboard-operator",
        "t-taskpool-dashboard-overview",
        "t-taskpool-dashboard-tasks",
    ]
    for config_map in maps:
        assert config_map["metadata"]["labels"]["app.kubernetes.io/component"] == "monitoring"
        assert config_map["metadata"]["namespace"] == "grafana"
        assert config_map["metadata"]["annotations"] == {"grafana_folder": "Taskpool"}
        ((name, text),) = config_map["data"].items()
        assert (ROOT / generate.DASHBOARD_DIR / name).read_text().rstrip("\n") == text.rstrip("\n")


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ('alerts.oldestReadyTask.for="soon"', "/alerts/oldestReadyTask/for"),
        ('alerts.failureRatio.ratio="high"', "/alerts/failureRatio/ratio"),
        ("alerts.failureRatio.ratio=1.5", "/alerts/failureRatio/ratio"),
        ("alerts.oldestReadyTask.ageSecond=60", "ageSecond"),
    ],
)
def test_helm_rejects_a_bad_threshold_naming_it(value: str, path: str) -> None:
    result = checks.helm("template", "t", str(checks.CHART), "--set-json", value, check=False)
    assert result.returncode != 0
    assert path in result.stderr, result.stderr
