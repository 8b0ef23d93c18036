"""Every generated file and its content; `python -m monitoring` writes them, `--check` compares."""

from __future__ import annotations

from pathlib import Path

from monitoring import config, dashboards, docs, rules

ROOT = Path(__file__).resolve().parent.parent
RULE_FILE = Path("monitoring/rules/taskpool.rules.yaml")
CHART_RULE_TEMPLATE = Path("charts/taskpool/templates/prometheusrule.yaml")
DASHBOARD_DIR = Path("charts/taskpool/dashboards")
DOCS = Path("docs/monitoring.md")


def outputs() -> dict[Path, str]:
    """Repository-relative path -> content of every generated file."""
    files = {
        RULE_FILE: rules.render_rule_file(),
        CHART_RULE_TEMPLATE: rules.render_chart_template(),
        DOCS: docs.render(),
    }
    for dashboard in config.DASHBOARDS:
        files[DASHBOARD_DIR / dashboard.file] = dashboards.render(dashboard)
    return files


def stale(root: Path = ROOT) -> list[Path]:
    """Generated files that are missing or differ from what the config produces."""
    return [
        path
        for path, text in outputs().items()
        if not (root / path).is_file() or (root / path).read_text(encoding="utf-8") != text
    ]


def write(root: Path = ROOT) -> list[Path]:
    """Write every generated file under `root`; returns the ones that changed."""
    changed = stale(root)
    for path, text in outputs().items():
        if path in changed:
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).write_text(text, encoding="utf-8")
    return changed
