"""The operator's memory figures quoted in README.md and docs/operator.md are the committed measurement
(benchmarks/results/many_pools.json, one run of `make bench-many_pools`), and the budgets they claim held."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import yaml
from dockerfile_parse import DockerfileParser

ROOT = Path(__file__).resolve().parents[2]
# "<idle> MB with no pool, <a> MB at 200 pools and <b> MB at 1,000" (the maximum of each phase's samples).
FIGURES = re.compile(r"(\d+) MB with no pool, (\d+) MB at 200 pools and (\d+) MB at 1,000")


def result() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((ROOT / "benchmarks" / "results" / "many_pools.json").read_text())
    return loaded


def quoted(document: str) -> tuple[int, int, int]:
    found = FIGURES.search(" ".join((ROOT / document).read_text().split()))
    assert found is not None, f"{document} quotes no operator memory figures"
    return int(found[1]), int(found[2]), int(found[3])


def test_the_docs_quote_the_measured_resident_memory() -> None:
    operator = result()["operator_by_pools"]
    measured = [operator[pools]["rss_mb"]["max"] for pools in ("0", "200", "1000")]
    for document in ("README.md", "docs/operator.md"):
        rounded = all(abs(q - m) <= 0.5 for q, m in zip(quoted(document), measured, strict=True))
        assert rounded, f"{document} quotes {quoted(document)} MB, the measurement is {measured}"


def test_the_measurement_met_both_budgets_with_one_statement_per_tick() -> None:
    measured = result()
    assert {pools: b["budget_mb"] for pools, b in measured["memory_budgets"].items()} == {
        "200": 150,
        "1000": 300,
    }
    assert all(b["goal_met"] for b in measured["memory_budgets"].values())
    assert all(p["probe_queries_per_tick"] == 1 for p in measured["probe_by_pools"].values())
    assert measured["goal_met"] is True


def test_the_free_but_kept_heap_the_docs_quote_is_measured() -> None:
    kept = result()["operator_by_pools"]["1000"]["c_heap_free_kept_mb"]
    text = " ".join((ROOT / "docs" / "operator.md").read_text().split())
    found = re.search(r"free-but-kept heap \((\d+) MB of the (\d+) at 1,000 pools", text)
    assert found is not None
    assert abs(int(found[1]) - kept) <= 0.5
    assert abs(int(found[2]) - result()["operator_by_pools"]["1000"]["rss_mb"]["max"]) <= 0.5


def test_the_charts_default_memory_limit_holds_1000_pools() -> None:
    values = yaml.safe_load((ROOT / "charts" / "taskpool" / "values.yaml").read_text())
    limit = values["operator"]["resources"]["limits"]["memory"]
    assert limit == "256Mi"  # the figure docs/operator.md names
    assert result()["operator_by_pools"]["1000"]["rss_mb"]["max"] < 256  # MiB, as the figures are


def test_the_operator_does_not_depend_on_the_kubernetes_client() -> None:
    """kopf imports the client whenever it is installed (its generated models: tens of MB resident)."""
    project = tomllib.loads((ROOT / "operator" / "pyproject.toml").read_text())["project"]
    assert not [d for d in project["dependencies"] if d.startswith("kubernetes")]
    # Every operator module imports with the client made unimportable.
    code = (
        "import sys, pkgutil, importlib; sys.modules['kubernetes'] = None; import taskpool_operator as t; "
        "[importlib.import_module(m.name) for m in pkgutil.walk_packages(t.__path__, 'taskpool_operator.')]"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_measured_operator_ran_with_the_images_malloc_settings() -> None:
    image = DockerfileParser(path=str(ROOT / "Dockerfile")).envs
    assert image["MALLOC_ARENA_MAX"] == "2"  # docs/operator.md names it
    assert result()["operator_malloc_env"] == {"MALLOC_ARENA_MAX": image["MALLOC_ARENA_MAX"]}
