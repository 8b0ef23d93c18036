"""README.md's comparison with KEDA quotes benchmarks/results/keda.json (`make bench-keda`).

A new result or an edited README that no longer match fail here: the figures are rendered from the JSON and
must appear verbatim in the README."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RESULT = ROOT / "benchmarks" / "results" / "keda.json"
SIDES = ("taskpool", "keda_defaults", "keda_tuned")


def result() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(RESULT.read_text())
    return loaded


def flat(text: str) -> str:
    """Each run of whitespace as one space: README's prose is wrapped anywhere."""
    return re.sub(r"\s+", " ", text)


def readme() -> str:
    return flat((ROOT / "README.md").read_text())


def seconds(value: float | None, cap: float | None = None) -> str:
    if value is None:
        return f"not within {cap:g} s of the drain" if cap is not None else "not reached"
    return f"{value:.1f} s"


def back_to_zero(run: dict[str, Any]) -> str:
    """The run's figure; without one, when its timeline shows zero replicas before the last task finished
    (the figure needs a sample after the drain, and sampling stops once the drain is seen at zero)."""
    if run["back_to_zero_s"] is not None:
        return seconds(run["back_to_zero_s"])
    scaled = [s for s in run["timeline"] if s["t"] >= 0 and s["replicas"] > 0]
    at_zero = [s["t"] for s in run["timeline"] if scaled and s["t"] > scaled[0]["t"] and s["replicas"] == 0]
    if at_zero and at_zero[0] < run["drain_s"]:
        return f"{at_zero[0]:.1f} s, before the drain (timeline)"
    return seconds(None, run["back_to_zero_cap_s"])


def per_minute(value: float) -> str:
    return f"{value:.0f}"


def table(document: dict[str, Any]) -> str:
    runs = [document["runs"][side] for side in SIDES]
    burst = document["burst"]
    rows = [
        ("burst → first replica", [seconds(r["first_replica_s"]) for r in runs]),
        (
            f"burst → full capacity ({burst['max_replicas']} pods ready)",
            [seconds(r["full_capacity_s"]) for r in runs],
        ),
        ("burst → first task started", [seconds(r["first_task_started_s"]) for r in runs]),
        ("burst → drained (last task finished)", [seconds(r["drain_s"]) for r in runs]),
        (
            "burst → back to zero replicas",
            [back_to_zero(r) for r in runs],
        ),
        ("busy pods deleted in scale-in", [str(r["busy_pods_deleted"]) for r in runs]),
        ("SQL statements per minute, idle at zero", [per_minute(r["statements_per_min_idle"]) for r in runs]),
        (
            "SQL statements per minute, under load",
            [per_minute(r["statements_per_min_under_load"]) for r in runs],
        ),
    ]
    lines = [
        "| measured in one run | TaskWorkerPool | KEDA, defaults | KEDA, tuned |",
        "|---|---|---|---|",
        *(f"| {name} | {' | '.join(cells)} |" for name, cells in rows),
    ]
    return "\n".join(lines)


def test_the_readme_quotes_the_measured_table() -> None:
    assert flat(table(result())) in readme()


def test_the_readme_describes_the_measured_setup() -> None:
    document = result()
    burst, tuned = document["burst"], document["tuned"]
    text = readme()
    assert f"KEDA v{document['keda_version'].removeprefix('v')} built from source" in text
    assert (
        f"the same burst: {burst['tasks']} tasks of {burst['task_s']:g} s on one queue, at most"
        f" {burst['max_replicas']} pods of one task each"
    ) in text
    poll, window, to_zero = tuned["poll_s"], tuned["scale_down_window_s"], tuned["to_zero_s"]
    assert (
        f"The TaskWorkerPool polls every {poll} s, scales down after a {window} s window and to zero after"
        f" {to_zero} s idle"
    ) in text
    # KEDA's order: pollingInterval, cooldownPeriod (to zero), the HPA's scale-down window.
    assert f"once tuned like our pool ({poll} s, {to_zero} s, {window} s)" in text


def test_the_readme_quotes_the_measured_query_cost() -> None:
    cost = result()["query_cost"]
    ours, theirs = cost["taskpool_probe"], cost["keda_query"]
    sentence = (
        f"at {cost['finished_rows']:,} finished and {cost['ready_rows']:,} ready rows our probe statement"
        f" runs in {ours['explain_analyze_ms']:.2f} ms and the KEDA query in"
        f" {theirs['explain_analyze_ms']:.2f} ms"
        f" (EXPLAIN ANALYZE; median wall time on a warm connection {ours['wall_ms']['median']:.2f} ms and"
        f" {theirs['wall_ms']['median']:.2f} ms)"
    )
    assert sentence in readme()


def test_every_task_finished_as_the_readme_says() -> None:
    document = result()
    tasks = document["burst"]["tasks"]
    assert f"Every run finished all {tasks} tasks" in readme()
    for side in SIDES:
        assert document["runs"][side]["tasks_by_status"] == {"SUCCESSFUL": tasks}, side


def test_the_readme_states_the_goal_as_measured() -> None:
    document = result()
    verdict = "met" if document["goal_met"] else "missed"
    assert f"The benchmark's goal ({document['goal']}) was {verdict}" in readme()


def test_the_readme_says_whether_the_result_is_a_quick_run() -> None:
    quick = "a shortened (`QUICK=1`) run" in readme()
    assert quick == result()["quick"]
