"""Grafana dashboard JSON from `monitoring.config`, built with grafana-foundation-sdk."""

from __future__ import annotations

import json
from typing import Any

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus, stat, statetimeline, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models import prometheus as prometheus_model

from monitoring import config

# Every panel and variable reads from the dashboard's `$datasource` variable: no data source UID is baked in.
DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="${datasource}")
GRID_WIDTH = 24
REF_IDS = "ABCDEFGHIJ"


def _thresholds(steps: tuple[tuple[float, str], ...]) -> dash.ThresholdsConfig:
    return (
        dash.ThresholdsConfig()
        .mode(model.ThresholdsMode.ABSOLUTE)
        .steps([model.Threshold(None, "green"), *(model.Threshold(value, color) for value, color in steps)])
    )


def _target(query: config.Query, ref_id: str, *, instant: bool) -> prometheus.Dataquery:
    target = prometheus.Dataquery().expr(query.expr).ref_id(ref_id).datasource(DATASOURCE)
    if query.legend:
        target = target.legend_format(query.legend)
    if instant:
        target = target.instant().format(prometheus_model.PromQueryFormat.TABLE)
    return target


def _panel_builder(panel: config.Panel) -> Any:
    match panel.kind:
        case "timeseries" | "bars":
            builder: Any = (
                timeseries.Panel()
                .legend(
                    common_builders.VizLegendOptions()
                    .display_mode(common.LegendDisplayMode.LIST)
                    .placement(common.LegendPlacement.BOTTOM)
                    .show_legend(True)
                )
                .tooltip(
                    common_builders.VizTooltipOptions()
                    .mode(common.TooltipDisplayMode.MULTI)
                    .sort(common.SortOrder.DESCENDING)
                )
                .fill_opacity(10)
            )
            if panel.kind == "bars":
                builder = builder.draw_style(common.GraphDrawStyle.BARS).fill_opacity(80)
            if panel.thresholds:
                builder = builder.thresholds_style(
                    common_builders.GraphThresholdsStyleConfig().mode(common.GraphTresholdsStyleMode.DASHED)
                )
            return builder
        case "state":
            return statetimeline.Panel().show_value(common.VisibilityMode.NEVER).merge_values(True)
        case "stat":
            return stat.Panel().graph_mode(common.BigValueGraphMode.NONE)
        case "table":
            return table.Panel()


def build_panel(panel: config.Panel, panel_id: int) -> Any:
    """One panel: its queries against `$datasource`, unit, thresholds, mappings and size."""
    builder = (
        _panel_builder(panel)
        .id(panel_id)
        .title(panel.title)
        .description(panel.description)
        .datasource(DATASOURCE)
        .unit(panel.unit)
        .thresholds(_thresholds(panel.thresholds))
        .span(panel.width)
        .height(panel.height)
    )
    if panel.min is not None:
        builder = builder.min(panel.min)
    if panel.max is not None:
        builder = builder.max(panel.max)
    if panel.mappings:
        builder = builder.mappings(
            [
                model.ValueMap(
                    {
                        str(value): model.ValueMappingResult(text=text, color=color, index=index)
                        for index, (value, (text, color)) in enumerate(sorted(panel.mappings.items()))
                    }
                )
            ]
        )
    for suffix in panel.limits:
        builder = builder.override_by_regexp(
            f".* {suffix}$",
            [
                model.DynamicConfigValue("custom.lineStyle", {"fill": "dash", "dash": [10, 10]}),
                model.DynamicConfigValue("custom.fillOpacity", 0),
            ],
        )
    instant = panel.kind in {"table", "stat"}
    for ref_id, query in zip(REF_IDS, panel.queries, strict=False):
        builder = builder.with_target(_target(query, ref_id, instant=instant))
    return builder


def _variable(variable: config.Variable) -> dash.QueryVariable:
    return (
        dash.QueryVariable(variable.name)
        .label(variable.label)
        .datasource(DATASOURCE)
        .query({"query": variable.query, "refId": "PrometheusVariableQueryEditor-VariableQuery"})
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(model.VariableOption(selected=True, text="All", value="$__all"))
    )


def build_dashboard(spec: config.Dashboard) -> dict[str, Any]:
    """The dashboard as Grafana's JSON model (a plain dict, ready for `json.dumps`)."""
    builder = (
        dash.Dashboard(spec.title)
        .uid(spec.uid)
        .description(spec.description)
        .tags([*config.TAGS, *spec.tags])
        .editable()
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .time("now-1h", "now")
        .refresh("30s")
        .timezone("browser")
        .with_variable(
            dash.DatasourceVariable("datasource")
            .label("Data source")
            .type("prometheus")
            .current(model.VariableOption(selected=True, text="default", value="default"))
        )
    )
    for variable in spec.variables:
        builder = builder.with_variable(_variable(variable))
    panel_id = 1
    for row in spec.rows:
        builder = builder.with_row(dash.Row(row.title).id(panel_id))
        panel_id += 1
        for panel in row.panels:
            builder = builder.with_panel(build_panel(panel, panel_id))
            panel_id += 1
    built: dict[str, Any] = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
    return built


def render(spec: config.Dashboard) -> str:
    """Stable text of a dashboard file: sorted keys, two-space indent, trailing newline."""
    return json.dumps(build_dashboard(spec), indent=2, sort_keys=True) + "\n"
