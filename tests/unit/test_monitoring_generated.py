"""The generated dashboards, rules and docs: up to date, and following our dashboard and naming rules."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitoring import config, generate

ROOT = Path(__file__).resolve().parents[2]
# A metric name, not the middle of a recorded series name (level:metric:operations).
METRIC = re.compile(r"(?<![:\w])(taskpool_[a-z_]+)(?![:\w])")
HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")
RANGE = re.compile(r"\[([^\]]+)\]")
OPERATOR_WIDE = (
    config.PROBE_DURATION,
    config.PROBE_ERRORS,
    config.RECONCILE_ERRORS,
    config.OPERATOR_BUILD_INFO,
)


def _dashboards() -> list[tuple[config.Dashboard, dict[str, Any]]]:
    return [
        (spec, json.loads((ROOT / generate.DASHBOARD_DIR / spec.file).read_text()))
        for spec in config.DASHBOARDS
    ]


def _panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in board["panels"] if p["type"] != "row"]


def _all_exprs() -> list[str]:
    exprs = [q.expr for d in config.DASHBOARDS for p in d.panels for q in p.queries]
    exprs += [v.query for d in config.DASHBOARDS for v in d.variables]
    exprs += [r.expr for r in config.RECORDING_RULES]
    exprs += [a.expr for a in config.ALERTS]
    return exprs


def test_committed_files_equal_a_fresh_generation(tmp_path: Path) -> None:
    written = generate.write(tmp_path)
    assert sorted(written) == sorted(generate.outputs())
    for path in written:
        assert (tmp_path / path).read_text() == (ROOT / path).read_text(), (
            f"{path}: run `python -m monitoring`"
        )


def test_check_mode_reports_a_hand_edit(tmp_path: Path) -> None:
    generate.write(tmp_path)
    assert generate.stale(tmp_path) == []
    edited = tmp_path / generate.RULE_FILE
    edited.write_text(edited.read_text().replace("> 600", "> 60"))
    assert generate.stale(tmp_path) == [generate.RULE_FILE]


def test_python_dash_m_monitoring_check_passes_on_the_repository() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "monitoring", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def _base(metric: str) -> str:
    return next((metric.removesuffix(s) for s in HISTOGRAM_SUFFIXES if metric.endswith(s)), metric)


def test_every_metric_used_is_in_the_contract_and_every_contract_metric_is_used() -> None:
    rows = [
        line.split("|")[1]
        for line in (ROOT / "docs/contracts.md").read_text().splitlines()
        if line.startswith("| `taskpool_")
    ]
    contract = {m for cell in rows for m in METRIC.findall(cell)}
    assert len(contract) > 20
    used = {_base(m) for expr in _all_exprs() for m in METRIC.findall(expr)}
    assert used - contract == set(), "metrics missing from docs/contracts.md"
    # Build info of the worker and its poll timestamps are for people debugging a pod, not for dashboards.
    assert contract - used == {"taskpool_worker_build_info", "taskpool_worker_last_poll_timestamp_seconds"}


@pytest.mark.parametrize("spec", config.DASHBOARDS, ids=lambda d: d.uid)
def test_dashboard_identity_tags_and_time(spec: config.Dashboard) -> None:
    board = json.loads((ROOT / generate.DASHBOARD_DIR / spec.file).read_text())
    assert board["uid"] == spec.uid
    assert len(board["uid"]) <= 40  # Grafana's limit
    assert board["title"].startswith("Taskpool / ")
    assert "taskpool" in board["tags"]
    assert "id" not in board or board["id"] is None  # an id would clash on import into another Grafana


def test_dashboard_uids_titles_and_files_are_unique() -> None:
    for attribute in ("uid", "title", "file"):
        values = [getattr(d, attribute) for d in config.DASHBOARDS]
        assert len(values) == len(set(values)), attribute
    assert {p.name for p in (ROOT / generate.DASHBOARD_DIR).glob("*.json")} == {
        d.file for d in config.DASHBOARDS
    }


@pytest.mark.parametrize("spec", config.DASHBOARDS, ids=lambda d: d.uid)
def test_datasource_is_a_variable_and_no_uid_is_hard_coded(spec: config.Dashboard) -> None:
    board = json.loads((ROOT / generate.DASHBOARD_DIR / spec.file).read_text())
    variables = board["templating"]["list"]
    assert variables[0]["type"] == "datasource"
    assert variables[0]["name"] == "datasource"
    assert variables[0]["query"] == "prometheus"

    uids: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("datasource"), dict):
                uids.append(node["datasource"]["uid"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(board)
    assert uids, "no data source references at all"
    assert set(uids) == {"${datasource}"}
    for panel in _panels(board):
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]


@pytest.mark.parametrize("spec", config.DASHBOARDS, ids=lambda d: d.uid)
def test_variables_are_chained(spec: config.Dashboard) -> None:
    """Each variable's query narrows by every variable before it (namespace -> pool -> queue/task)."""
    board = json.loads((ROOT / generate.DASHBOARD_DIR / spec.file).read_text())
    query_vars = [v for v in board["templating"]["list"] if v["type"] == "query"]
    assert [v["name"] for v in query_vars][:2] == ["namespace", "pool"]
    for index, variable in enumerate(query_vars):
        assert variable["datasource"]["uid"] == "${datasource}"
        assert variable["multi"]
        assert variable["includeAll"]
        assert variable["allValue"] == ".*"
        for earlier in query_vars[:index]:
            assert f'=~"${earlier["name"]}"' in variable["query"]["query"], (
                variable["name"],
                earlier["name"],
            )


@pytest.mark.parametrize("spec", config.DASHBOARDS, ids=lambda d: d.uid)
def test_panels_have_units_descriptions_unique_ids_and_fit_the_grid(spec: config.Dashboard) -> None:
    board = json.loads((ROOT / generate.DASHBOARD_DIR / spec.file).read_text())
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in _panels(board):
        assert panel["fieldConfig"]["defaults"]["unit"], panel["title"]
        assert panel["description"], panel["title"]
        assert panel["targets"], panel["title"]
        assert [t["refId"] for t in panel["targets"]] == list("ABCDEFGHIJ"[: len(panel["targets"])])
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
        assert panel["fieldConfig"]["defaults"]["thresholds"]["steps"][0]["value"] is None


@pytest.mark.parametrize("spec", config.DASHBOARDS, ids=lambda d: d.uid)
def test_panel_queries_use_rate_interval_and_filter_by_the_variables(spec: config.Dashboard) -> None:
    names = {v.name for v in spec.variables}
    for panel in spec.panels:
        for query in panel.queries:
            for window in RANGE.findall(query.expr):
                assert window in {"$__rate_interval", "$__range"}, (panel.title, query.expr)
            if any(metric in query.expr for metric in OPERATOR_WIDE):
                continue  # series of the operator process itself carry no pool labels
            assert 'namespace=~"$namespace"' in query.expr, (panel.title, query.expr)
            assert 'pool=~"$pool"' in query.expr, (panel.title, query.expr)
            labels = set(re.findall(r'(\w+)=~"\$', query.expr))
            assert labels <= names


def test_threshold_lines_follow_the_alert_defaults() -> None:
    by_title = {p.title: p for p in config.OVERVIEW.panels}
    assert by_title["Oldest ready task age"].thresholds == ((600.0, "red"),)
    assert by_title["Failure ratio"].thresholds == ((0.1, "red"),)
    assert float(config.OLDEST_READY_AGE_THRESHOLD.default) == 600
    assert float(config.FAILURE_RATIO_THRESHOLD.default) == 0.1


def test_every_panel_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses each panel and variable query (Grafana variables replaced the way Grafana would)."""
    rules = []
    for index, expr in enumerate(q.expr for d in config.DASHBOARDS for p in d.panels for q in p.queries):
        concrete = expr.replace("$__rate_interval", "1m").replace("$__range", "1h")
        concrete = re.sub(r"\$(namespace|pool|queue|task)", ".*", concrete)
        rules.append({"record": f"panel:query_{index}:check", "expr": concrete})
    path = tmp_path / "panels.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    result = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_monitoring_doc_lists_every_panel_and_alert_with_its_query() -> None:
    doc = (ROOT / generate.DOCS).read_text()
    for spec in config.DASHBOARDS:
        assert spec.uid in doc
        for panel in spec.panels:
            assert f"| {panel.title} |" in doc
    for alert in config.ALERTS:
        assert f"[{alert.name}](runbooks.md#{alert.runbook_anchor})" in doc
    for rule in config.RECORDING_RULES:
        assert f"`{rule.record}`" in doc
