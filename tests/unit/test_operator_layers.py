"""The operator's layers: only `taskpool_operator.probe` (not its pure `depth` and `rows`) loads psycopg."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit

PURE = (
    "taskpool_operator.pool",
    "taskpool_operator.metrics",
    "taskpool_operator.policy",
    "taskpool_operator.objects",
    "taskpool_operator.conditions",
    "taskpool_operator.orphans",
    "taskpool_operator.workers",
    "taskpool_operator.probe.depth",
    "taskpool_operator.probe.rows",
)


def loaded_after_import(module: str) -> set[str]:
    """Top-level packages in sys.modules after importing `module` in a fresh interpreter."""
    code = f"import sys, {module}; print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(result.stdout.split())


@pytest.mark.parametrize("module", PURE)
def test_pure_modules_do_not_load_psycopg_or_django(module: str) -> None:
    loaded = loaded_after_import(module)
    assert not loaded & {"psycopg", "psycopg_pool", "django", "kopf"}, module


def test_the_hub_is_what_loads_psycopg() -> None:
    """The check above can fail: importing the hub does load psycopg."""
    assert "psycopg" in loaded_after_import("taskpool_operator.probe.hub")
