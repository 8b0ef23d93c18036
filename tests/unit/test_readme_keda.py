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
DASH = "\N{EN DASH}"  # between a min and a max, as the README writes ranges


def result() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(RESULT.read_text())
    return loaded


def flat(text: str) -> str:
    """Each run of whitespace as one space: README's prose is wrapped anywhere."""
    return re.sub(r"\s+", " ", text)


def readme() -> str:
    return flat((ROOT / "README.md").read_text())


def spread(figure: dict[str, float], bursts: int, unit: str, digits: int) -> str:
    """A figure's median with its min-max range over the bursts (one burst: its value alone)."""
    median = f"{figure['median']:.{digits}f}{unit}"
    if bursts == 1:
        return median
    return f"{median} ({figure['min']:.{digits}f}{DASH}{figure['max']:.{digits}f})"


def timing(run: dict[str, Any], name: str) -> str:
    """The cell of one timing: its spread over the bursts that reached it, and which did not."""
    unreached = "not reached"
    if name == "back_to_zero_s":
        unreached = f"not within {run['back_to_zero_cap_s']:g} s of the drain"
    missed = [str(b["burst"]) for b in run["incomplete_bursts"] if name in b["missing"]]
    if run[name] is None:
        return unreached
    cell = spread(run[name], len(run["bursts"]) - len(missed), " s", 1)
    if missed:
        cell += f"; {unreached} in burst {', '.join(missed)}"
    return cell


def per_burst_heading(document: dict[str, Any]) -> str:
    return "" if document["bursts_per_side"] == 1 else ", total (per burst)"


def per_burst(run: dict[str, Any]) -> str:
    """Busy pods deleted: the side's total, then each burst's."""
    each = [str(burst["busy_pods_deleted"]) for burst in run["bursts"]]
    total = str(run["busy_pods_deleted"])
    return total if len(each) == 1 else f"{total} ({', '.join(each)})"


def bursts(document: dict[str, Any]) -> str:
    count = document["bursts_per_side"]
    return "one burst" if count == 1 else f"median (min{DASH}max) of {count} bursts"


def bursts_in_a_row(document: dict[str, Any]) -> str:
    count = document["bursts_per_side"]
    return "one burst" if count == 1 else f"{count} bursts in a row"


def table(document: dict[str, Any]) -> str:
    runs = [document["runs"][side] for side in SIDES]
    burst = document["burst"]
    rows = [
        ("burst → first replica", [timing(r, "first_replica_s") for r in runs]),
        (
            f"burst → full capacity ({burst['max_replicas']} pods ready)",
            [timing(r, "full_capacity_s") for r in runs],
        ),
        ("burst → first task started", [timing(r, "first_task_started_s") for r in runs]),
        ("burst → drained (last task finished)", [timing(r, "drain_s") for r in runs]),
        ("burst → back to zero replicas", [timing(r, "back_to_zero_s") for r in runs]),
        ("busy pods deleted in scale-in" + per_burst_heading(document), [per_burst(r) for r in runs]),
        (
            "SQL statements per minute, idle at zero (once, before the bursts)",
            [f"{r['statements_per_min_idle']:.0f}" for r in runs],
        ),
        (
            "SQL statements per minute, under load",
            [spread(r["statements_per_min_under_load"], len(r["bursts"]), "", 0) for r in runs],
        ),
    ]
    lines = [
        f"| {bursts(document)} per side, one run | TaskWorkerPool | KEDA, defaults | KEDA, tuned |",
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
    assert f"Each side takes {bursts_in_a_row(document)}" in text


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


def test_the_readme_says_which_bursts_were_incomplete() -> None:
    document = result()
    incomplete = {side: document["runs"][side]["incomplete_bursts"] for side in SIDES}
    if not any(incomplete.values()):
        assert f"All {document['bursts_per_side']} bursts of every side completed" in readme()
    for side, missed in incomplete.items():
        for burst in missed:
            assert f"{side} burst {burst['burst']} missed {', '.join(burst['missing'])}" in readme()


def test_every_task_finished_as_the_readme_says() -> None:
    document = result()
    tasks = document["burst"]["tasks"] * document["bursts_per_side"]
    assert f"Every side finished all {tasks} tasks" in readme()
    for side in SIDES:
        assert document["runs"][side]["tasks_by_status"] == {"SUCCESSFUL": tasks}, side


def test_the_readme_states_the_goal_as_measured() -> None:
    document = result()
    verdict = "met" if document["goal_met"] else "missed"
    assert f"The benchmark's goal ({document['goal']}) was {verdict}" in readme()


def test_the_readme_says_whether_the_result_is_a_quick_run() -> None:
    quick = "a shortened (`QUICK=1`) run" in readme()
    assert quick == result()["quick"]
